"""A tiny dataset and experiment configuration: a whole `srkd run` in seconds."""

from pathlib import Path

import numpy as np

TINY_CONFIG = """\
seed: 0
max_len: 8
train: {epochs: 2, batch_size: 16, lr: 0.01, patience: 2}
kd: {temperature: 2.0, alpha: 0.5}
srms: {top_k: 5, gate_rank: null, weights: uniform}
profile: {repeats: 2, warmup: 1}
teachers:
  - {name: t-sasrec, arch: sasrec, hparams: {hidden_dim: 16, num_layers: 1, num_heads: 1, dropout: 0.0}}
  - {name: t-sasrec-small, arch: sasrec, hparams: {hidden_dim: 8, num_layers: 1, num_heads: 1, dropout: 0.0}}
  - {name: t-gru, arch: gru4rec, hparams: {hidden_dim: 16, dropout: 0.0}}
# Mappings merge with the preset's, so the students' own epochs are set here too.
student: {arch: sasrec, hparams: {hidden_dim: 4, num_layers: 1, num_heads: 1, dropout: 0.0}, train: {epochs: 2, patience: 2}}
srcd: {arch: srcd, hparams: {hidden_dim: 4, num_heads: 1, dropout: 0.0}, train: {epochs: 2, patience: 2}}
"""

MODEL_NAMES = ["t-sasrec", "t-sasrec-small", "t-gru", "student", "student-kd", "student-srms", "srcd-srms", "srcd"]


def write_tiny_dataset(path: Path, users: int = 60, items: int = 30, length: int = 9, seed: int = 0) -> Path:
    """A user-seq file (`user item item ...`) whose sequences mostly step through the catalogue,
    so a model can learn something in two epochs."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, users + 1):
        start = int(rng.integers(items))
        seq = [(start + j) % items + 1 for j in range(length)]
        seq[int(rng.integers(length))] = int(rng.integers(1, items + 1))  # a little noise
        lines.append(" ".join(str(x) for x in [u, *seq]))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tiny_config(path: Path, extra: str = "") -> Path:
    path.write_text(TINY_CONFIG + extra)
    return path
