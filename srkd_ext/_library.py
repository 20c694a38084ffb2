"""Loads the compiled kernels (srkd_ext._C) and says whether they are available.

When the extension was not built (or failed to load) every op falls back to its plain
PyTorch reference, with one warning; `srkd run` records which path ran.
"""

import warnings

import torch

try:
    from srkd_ext import _C  # noqa: F401  (registers torch.ops.srkd_ext.*)

    KERNELS_AVAILABLE = True
    LOAD_ERROR = None
except ImportError as exc:  # the package imported from a source tree that was never built
    KERNELS_AVAILABLE = False
    LOAD_ERROR = str(exc)


def kernels_available() -> bool:
    return KERNELS_AVAILABLE


def cuda_kernels_available() -> bool:
    return KERNELS_AVAILABLE and bool(torch.ops.srkd_ext.compiled_with_cuda())


_warned = False


def warn_fallback(op_name: str) -> None:
    global _warned
    if not _warned:
        warnings.warn(
            f"srkd_ext: compiled kernels are not available ({LOAD_ERROR}); {op_name} and the other "
            "ops run their plain-PyTorch reference. Build with `pip install --no-build-isolation .`.",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned = True
