"""The SRMS / KD training objective: the student's logits at every non-padded position, the
teachers' logits (or cached top-k) at the same positions, and srkd_ext.fused_kd_loss.

Plain single-teacher KD is the same objective with one teacher and top_k = None.
"""

from __future__ import annotations

import torch

import srkd_ext
from srkd_ext.distill.config import KDConfig
from srkd_ext.distill.teacher_cache import CachedTeachers
from srkd_ext.models.base import PADDING_ID, SequentialRecommender
from srkd_ext.models.serialization import model_checksum


def check_teachers(teachers, num_items: int, max_len: int) -> list[SequentialRecommender]:
    """Teachers must score the same catalogue and accept the student's windows."""
    teachers = list(teachers)
    if not teachers:
        raise ValueError("teachers must hold at least one model")
    for i, teacher in enumerate(teachers):
        if not isinstance(teacher, SequentialRecommender):
            raise TypeError(f"teachers[{i}] must be a SequentialRecommender, got {type(teacher).__name__}")
        if teacher.num_items != num_items:
            raise ValueError(f"teachers[{i}] scores {teacher.num_items} items, the data has {num_items}")
        if teacher.max_len < max_len:
            raise ValueError(
                f"teachers[{i}] was built with max_len={teacher.max_len}, shorter than the training windows ({max_len})"
            )
    return teachers


class OnTheFlyTeachers:
    """Runs frozen teachers (eval mode, no grad) on the student's batch.

    logits(batch, valid) -> list of T tensors [M, num_items] at the positions `valid` [B, L].
    """

    description = "on_the_fly"

    def __init__(self, teachers: list[SequentialRecommender], device):
        self.teachers = [t.to(device).eval() for t in teachers]

    def logits(self, batch, valid: torch.Tensor) -> list[torch.Tensor]:
        out = []
        with torch.no_grad():
            for teacher in self.teachers:
                teacher.eval()  # a caller may have switched it back to training mode
                out.append(teacher.score_items(teacher(batch.inputs)[valid]))
        return out


class DistillationObjective:
    """(student, batch) -> scalar loss: alpha * CE + (1 - alpha) * tau^2 * KL(mixed teachers || student)."""

    def __init__(self, teacher_source, kd: KDConfig, checksums: list[str], device):
        self.source = teacher_source
        self.kd = kd
        weights = kd.teacher_weights
        self.teacher_weights = (
            torch.tensor(weights, dtype=torch.float32, device=device) if isinstance(weights, list) else weights
        )
        if isinstance(weights, list) and len(weights) != len(checksums):
            raise ValueError(f"KDConfig.teacher_weights has {len(weights)} entries for {len(checksums)} teachers")
        self.description = {
            "objective": "distillation",
            "kd": kd.loss_options(),
            "teachers": list(checksums),
            "teacher_source": teacher_source.description,
        }
        self._sums = None
        self._steps = 0

    def __call__(self, model: SequentialRecommender, batch) -> torch.Tensor:
        valid = batch.targets != PADDING_ID
        student_logits = model.score_items(model(batch.inputs)[valid])
        target_columns = batch.targets[valid] - 1
        teacher = self.source.logits(batch, valid)
        loss, stats = srkd_ext.fused_kd_loss(
            student_logits,
            teacher,
            target_columns,
            temperature=self.kd.temperature,
            top_k=self.kd.top_k,
            gate_rank=self.kd.gate_rank,
            teacher_weights=self.teacher_weights,
            alpha=self.kd.alpha,
            reduction="mean",
            return_stats=True,
        )
        step = torch.cat([stats.ce.reshape(1), stats.kd.reshape(1), stats.active_fraction.reshape(-1)]).double()
        self._sums = step if self._sums is None else self._sums + step
        self._steps += 1
        return loss

    def epoch_summary(self) -> dict:
        """Means over the steps since the last call: CE term, KD term, per-teacher active fraction."""
        if self._sums is None:
            return {}
        means = (self._sums / self._steps).tolist()
        self._sums, self._steps = None, 0
        return {"ce": means[0], "kd": means[1], "teacher_active": means[2:]}


def make_distillation_objective(
    teachers, kd: KDConfig, *, train, num_items: int, max_len: int, batch_size: int, device, progress: bool = True
) -> DistillationObjective:
    """The objective `train` uses when given teachers: on the fly, or through a TeacherTopK cache
    in kd.cache_dir (built on first use, reused while teachers and data match).

    train: the SequenceSet the training batches are drawn from (batch.users are its rows).
    """
    teachers = check_teachers(teachers, num_items, max_len)
    checksums = [model_checksum(t) for t in teachers]
    if kd.cache_dir is None:
        source = OnTheFlyTeachers(teachers, device)
    else:
        source = CachedTeachers.open_or_build(
            kd.cache_dir, teachers, checksums, train=train, num_items=num_items, max_len=max_len, top_k=kd.cache_k,
            batch_size=batch_size, device=device, progress=progress,
        )
    return DistillationObjective(source, kd, checksums, device)
