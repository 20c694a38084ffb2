"""Training, evaluation and profiling of sequential recommenders.

    train(model, split, TrainConfig(...), out_dir, teachers=None, kd=None) -> TrainResult
    evaluate(model, evalset, num_items, protocol="full" | "sampled", mask_seen=False) -> metrics
    profile_model(model) -> params, size, batch-1 latency, batch-256 throughput
"""

from srkd_ext.distill import KDConfig
from srkd_ext.train.config import TrainConfig
from srkd_ext.train.evaluate import PROTOCOLS, evaluate, sampled_negatives
from srkd_ext.train.metrics import RankingAccumulator, hit_rate, mrr, ndcg, target_ranks
from srkd_ext.train.objective import NextItemCrossEntropy
from srkd_ext.train.profile import profile_model
from srkd_ext.train.reproducibility import deterministic_algorithms, seed_everything
from srkd_ext.train.trainer import TrainResult, train

__all__ = [
    "KDConfig",
    "TrainConfig",
    "TrainResult",
    "train",
    "evaluate",
    "PROTOCOLS",
    "sampled_negatives",
    "profile_model",
    "seed_everything",
    "deterministic_algorithms",
    "NextItemCrossEntropy",
    "RankingAccumulator",
    "target_ranks",
    "hit_rate",
    "ndcg",
    "mrr",
]
