"""Knowledge distillation of sequential recommenders: SRMS (multi-teacher, top-k probability
selection, rank gating, teacher weighting) and plain single-teacher KD, on top of
srkd_ext.fused_kd_loss; teachers run on the fly or through a memory-mapped top-k cache."""

from srkd_ext.distill.config import KDConfig
from srkd_ext.distill.objective import (
    DistillationObjective,
    OnTheFlyTeachers,
    check_teachers,
    make_distillation_objective,
)
from srkd_ext.distill.teacher_cache import CachedTeachers, StaleTeacherCacheError, TeacherTopKCache

__all__ = [
    "KDConfig",
    "DistillationObjective",
    "OnTheFlyTeachers",
    "check_teachers",
    "make_distillation_objective",
    "TeacherTopKCache",
    "CachedTeachers",
    "StaleTeacherCacheError",
]
