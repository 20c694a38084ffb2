"""Synthetic experiment records for testing the report writer and plots without training."""

from srkd_ext.experiment.records import (
    ROLE_SRCD,
    ROLE_SRCD_KD,
    ROLE_STUDENT,
    ROLE_STUDENT_KD,
    ROLE_STUDENT_SRMS,
    ROLE_TEACHER,
)


def _record(name, role, arch, params, ndcg_test, ndcg_valid, epochs=5, kd=None):
    history = [
        {"epoch": e, "loss": 7.0 - 0.5 * e, "valid_NDCG@10": ndcg_valid * (0.5 + 0.5 * e / epochs)}
        for e in range(1, epochs + 1)
    ]
    return {
        "name": name, "role": role, "arch": arch, "hparams": {"d_model": 8}, "kd": kd,
        "valid": {"HR@10": 2 * ndcg_valid, "NDCG@10": ndcg_valid, "MRR@10": 0.8 * ndcg_valid},
        "test": {"HR@10": 2 * ndcg_test, "NDCG@10": ndcg_test, "MRR@10": 0.8 * ndcg_test},
        "best_epoch": epochs, "epochs_run": epochs, "train_seconds": 1.5, "history": history,
        "profile": {"params": params, "size_mb": params * 4 / 2**20, "latency_ms_batch1": 0.5,
                    "throughput_batch256": 20000.0},
        "checkpoint": f"models/{name}/best.pt",
    }


def synthetic_records():
    kd = {"teachers": ["t-big"], "temperature": 2.0, "alpha": 0.5, "top_k": None, "gate_rank": None,
          "weights": "uniform"}
    srms = {**kd, "teachers": ["t-big", "t-mid", "t-gru"], "top_k": 50}
    return [
        _record("t-big", ROLE_TEACHER, "sasrec", 200_000, 0.080, 0.085),
        _record("t-mid", ROLE_TEACHER, "sasrec", 100_000, 0.075, 0.090),  # best by validation
        _record("t-gru", ROLE_TEACHER, "gru4rec", 150_000, 0.070, 0.070),
        _record("student", ROLE_STUDENT, "sasrec", 12_500, 0.050, 0.050),
        _record("student-kd", ROLE_STUDENT_KD, "sasrec", 12_500, 0.060, 0.060, kd=kd),
        _record("student-srms", ROLE_STUDENT_SRMS, "sasrec", 12_500, 0.072, 0.070, kd=srms),
        _record("srcd-srms", ROLE_SRCD_KD, "srcd", 14_000, 0.074, 0.071, kd=srms),
        _record("srcd", ROLE_SRCD, "srcd", 14_000, 0.052, 0.051),
    ]


def synthetic_meta():
    return {
        "versions": {"srkd_ext": "0.1.0", "torch": "2.13.0", "python": "3.12"},
        "kernels": {"compiled": True, "cuda": False},
        "dataset": {"name": "synthetic", "source": "synthetic.inter", "users": 100, "items": 50,
                    "interactions": 1000, "sha256": "ab" * 32},
        "protocol": {"split": "leave-one-out", "ranking": "full", "mask_seen": False, "ks": [5, 10, 20],
                     "num_negatives": 100},
        "seed": 0, "device": "cpu", "config_fingerprint": "0123456789abcdef", "seconds": 12.0, "cpu_seconds": 20.0,
    }
