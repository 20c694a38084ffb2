"""Distillation configuration: plain data, recorded in checkpoints and logs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

TEACHER_WEIGHTINGS = ("uniform", "confidence")


@dataclass
class KDConfig:
    """Options of the SRMS / KD objective (see srkd_ext.fused_kd_loss for the exact math).

    temperature: softening tau > 0 of the teachers' and the student's distributions.
    top_k: each teacher keeps probability mass only on its top_k items (None: all items; plain KD).
    gate_rank: a teacher whose rank of the true next item exceeds gate_rank is dropped for that
        position (None: never).
    teacher_weights: None (uniform), a list of T static weights, or "confidence" (each teacher's
        probability of the true next item).
    alpha: weight of the ground-truth cross-entropy; 1 - alpha weighs the KD term.
    cache_dir: None runs the teachers on every batch; a directory stores their top items and
        logits for every training position once (memory-mapped), reused while the teachers'
        checksums and the data match. Needs top_k. The cache holds max(top_k, gate_rank) items per
        teacher (cache_k): the gate needs the rank of the true item up to gate_rank, which a
        cache of only top_k items cannot tell. "confidence" weights are computed over the cached
        items only, since the teachers' full distributions are no longer available.
    """

    temperature: float = 2.0
    top_k: int | None = None
    gate_rank: int | None = None
    teacher_weights: str | list | None = None
    alpha: float = 0.5
    cache_dir: str | None = None

    def __post_init__(self):
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(f"KDConfig.temperature must be > 0, got {self.temperature!r}")
        for name in ("top_k", "gate_rank"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"KDConfig.{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"KDConfig.alpha must be in [0, 1], got {self.alpha!r}")
        weights = self.teacher_weights
        if weights == "uniform":
            self.teacher_weights = None
        elif isinstance(weights, str) and weights != "confidence":
            raise ValueError(f"KDConfig.teacher_weights must be None, a list of floats or 'confidence', got {weights!r}")
        elif isinstance(weights, (list, tuple)):
            if not weights or any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"KDConfig.teacher_weights must be non-negative with a positive sum, got {weights!r}")
            self.teacher_weights = [float(w) for w in weights]
        elif weights is not None and not isinstance(weights, str):
            raise ValueError(f"KDConfig.teacher_weights must be None, a list of floats or 'confidence', got {weights!r}")
        if self.cache_dir is not None:
            self.cache_dir = str(self.cache_dir)
            if self.top_k is None:
                raise ValueError("KDConfig.cache_dir needs KDConfig.top_k: a cache stores each teacher's top-k items")

    @property
    def cache_k(self) -> int | None:
        """Items per teacher and position a TeacherTopK cache must hold for these options."""
        if self.top_k is None:
            return None
        return max(self.top_k, self.gate_rank or 0)

    def to_dict(self) -> dict:
        return asdict(self)

    def loss_options(self) -> dict:
        """The settings that define the objective (the cache location does not)."""
        options = self.to_dict()
        options.pop("cache_dir")
        return options
