"""What an experiment records about each model, and the comparisons derived from the records.

A model record is a plain dict (it goes into results.json as is):

    name            "sasrec-d64", "student-srms", ...
    role            one of ROLES
    arch            "sasrec" | "gru4rec" | "caser" | "srcd"
    hparams         the model options given to build_model
    kd              null, or the distillation options (teachers, temperature, alpha, top_k, ...)
    valid, test     {"HR@10": ..., "NDCG@10": ..., "MRR@10": ..., ...} (fractions, not percent)
    best_epoch, epochs_run, train_seconds
    history         [{"epoch": 1, "loss": 7.1, "valid_NDCG@10": 0.02}, ...] one per epoch
    profile         {"params", "size_mb", "latency_ms_batch1", "throughput_batch256"}
    checkpoint      path of the best checkpoint, relative to the experiment folder

`derive_comparisons` adds, against the best teacher (highest validation NDCG@10, the same
teacher the single-teacher KD student learns from): compression_ratio (teacher parameters /
model parameters) and ndcg10_kept (model test NDCG@10 / teacher test NDCG@10).
"""

from __future__ import annotations

ROLE_TEACHER = "teacher"
ROLE_STUDENT = "student, no KD"
ROLE_STUDENT_KD = "student, single-teacher KD"
ROLE_STUDENT_SRMS = "student, SRMS"
ROLE_SRCD_KD = "SRCD student, SRMS KD"
ROLE_SRCD = "SRCD student, no KD"
ROLES = (ROLE_TEACHER, ROLE_STUDENT, ROLE_STUDENT_KD, ROLE_STUDENT_SRMS, ROLE_SRCD_KD, ROLE_SRCD)

MAIN_METRIC = "NDCG@10"


def best_teacher(records: list[dict]) -> dict | None:
    """The teacher with the highest validation NDCG@10 (ties: the one listed first)."""
    teachers = [r for r in records if r["role"] == ROLE_TEACHER and r.get("valid")]
    if not teachers:
        return None
    return max(teachers, key=lambda r: r["valid"][MAIN_METRIC])


def derive_comparisons(records: list[dict]) -> dict | None:
    """Adds compression_ratio and ndcg10_kept to every record (in place); returns the best teacher."""
    teacher = best_teacher(records)
    for r in records:
        params = r.get("profile", {}).get("params")
        if teacher is None or not params:
            r["compression_ratio"] = None
            r["ndcg10_kept"] = None
            continue
        r["compression_ratio"] = teacher["profile"]["params"] / params
        t_ndcg = teacher["test"][MAIN_METRIC]
        r["ndcg10_kept"] = r["test"][MAIN_METRIC] / t_ndcg if t_ndcg > 0 else None
    return teacher
