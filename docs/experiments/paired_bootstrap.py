"""Paired bootstrap of test NDCG@10 differences between models of one `srkd run` folder.

    python docs/experiments/paired_bootstrap.py DATA RUN_DIR A:B [C:D ...]

e.g. `python docs/experiments/paired_bootstrap.py ../shared/data/Beauty.txt runs/beauty student-srms:student`.
Each model's best.pt is evaluated on the test users exactly as `srkd evaluate` does (full ranking,
seen items not masked); the evaluator's rank function is wrapped to keep every user's rank, which
the evaluator otherwise only averages. The users come in the same order for every model, so the
per-user differences are paired. Prints the mean difference and a 95% bootstrap interval
(2,000 resamples of the users, seed 0).
"""

import importlib
import sys

import numpy as np
import torch

from srkd_ext.data import leave_one_out_split
from srkd_ext.experiment import steps
from srkd_ext.models.serialization import load_model

evaluation = importlib.import_module("srkd_ext.train.evaluate")  # the module, not the function


def per_user_ndcg10(model, split) -> np.ndarray:
    ranks = []
    original = evaluation.target_ranks

    def keep(scores, targets):
        r = original(scores, targets)
        ranks.append(r.cpu())
        return r

    evaluation.target_ranks = keep
    try:
        evaluation.evaluate(model, split.test, split.num_items)
    finally:
        evaluation.target_ranks = original
    r = torch.cat(ranks).double().numpy()
    return np.where(r <= 10, 1.0 / np.log2(r + 1.0), 0.0)


def main(data: str, run_dir: str, pairs: list[str]) -> None:
    pairs = [p.split(":") for p in pairs]
    split = leave_one_out_split(steps.open_dataset(data))
    ndcg = {}
    for name in sorted({n for pair in pairs for n in pair}):
        ndcg[name] = per_user_ndcg10(load_model(f"{run_dir}/models/{name}/best.pt"), split)
        print(f"{name}: test NDCG@10 {ndcg[name].mean():.4f}", file=sys.stderr)
    users = len(next(iter(ndcg.values())))
    resamples = np.random.default_rng(0).integers(0, users, size=(2000, users))
    for a, b in pairs:
        diff = ndcg[a] - ndcg[b]
        lo, hi = np.percentile(diff[resamples].mean(1), [2.5, 97.5])
        print(f"{a} - {b}: {diff.mean():+.4f} (95% interval {lo:+.4f} .. {hi:+.4f})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
