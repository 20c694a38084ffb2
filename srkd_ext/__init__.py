"""srkd_ext: knowledge distillation for sequential recommenders (SRMS, SRCD).

Public API:
    srkd_ext.fused_kd_loss(...)            multi-teacher probability-selection KD loss (SRMS)
    srkd_ext.cross_self_attention(...)     fused two-way attention between two branches (SRCD)
    srkd_ext.TeacherTopK                   a sparse teacher cache (indices + logits of the top-k)
"""

import os

# OpenMP workers that sleep instead of spinning while they wait: on a machine shared with other
# processes, spinning workers burned 4x the CPU per SASRec training step (3.7 s vs 0.67 s wall,
# 2 threads, 2-core machine at load 7). Only effective when torch is not imported yet; an
# explicit OMP_WAIT_POLICY (e.g. ACTIVE on a dedicated machine) wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from srkd_ext._library import cuda_kernels_available, kernels_available  # noqa: E402

__version__ = "0.1.0"

__all__ = ["__version__", "kernels_available", "cuda_kernels_available"]

# The ops are imported here once their modules exist (see srkd_ext/ops/).
try:
    from srkd_ext.ops.fused_kd_loss import TeacherTopK, fused_kd_loss  # noqa: F401

    __all__ += ["fused_kd_loss", "TeacherTopK"]
except ImportError as _exc:  # pragma: no cover - only while the op is being written
    if "srkd_ext.ops.fused_kd_loss" not in str(_exc):
        raise
try:
    from srkd_ext.ops.cross_self_attention import cross_self_attention  # noqa: F401

    __all__ += ["cross_self_attention"]
except ImportError as _exc:  # pragma: no cover
    if "srkd_ext.ops.cross_self_attention" not in str(_exc):
        raise
