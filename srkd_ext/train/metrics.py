"""Ranking metrics from the rank of the true next item.

rank is 1-based: 1 + (number of candidates scored above the target) + (number scored equal to it
with a lower item id), i.e. ties are broken by item id, lower first, the same rule as the top-k
selection in fused_kd_loss. With one relevant item per user:

    HR@K   = 1[rank <= K]
    NDCG@K = 1[rank <= K] / log2(rank + 1)
    MRR@K  = 1[rank <= K] / rank
"""

from __future__ import annotations

import math

import torch

METRIC_NAMES = ("HR", "NDCG", "MRR")


def target_ranks(scores: torch.Tensor, target_columns: torch.Tensor) -> torch.Tensor:
    """scores [M, C] (higher is better), target_columns [M] int64 -> ranks [M] int64 (1-based)."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be [users, candidates], got shape {tuple(scores.shape)}")
    if target_columns.shape != scores.shape[:1]:
        raise ValueError(
            f"target_columns must have shape [{scores.size(0)}], got {tuple(target_columns.shape)}"
        )
    target_scores = scores.gather(1, target_columns[:, None])
    if torch.isnan(target_scores).any():
        raise ValueError("the score of a target item is NaN; the model produced invalid outputs")
    greater = (scores > target_scores).sum(1)
    columns = torch.arange(scores.size(1), device=scores.device)
    ties_before = ((scores == target_scores) & (columns[None, :] < target_columns[:, None])).sum(1)
    return 1 + greater + ties_before


def hit_rate(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user HR@k: ranks [M] -> [M] float64."""
    return (ranks <= k).double()


def ndcg(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user NDCG@k: ranks [M] -> [M] float64."""
    r = ranks.double()
    return torch.where(ranks <= k, 1.0 / torch.log2(r + 1.0), torch.zeros_like(r))


def mrr(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user MRR@k (reciprocal rank cut at k): ranks [M] -> [M] float64."""
    r = ranks.double()
    return torch.where(ranks <= k, 1.0 / r, torch.zeros_like(r))


_PER_USER = {"HR": hit_rate, "NDCG": ndcg, "MRR": mrr}


class RankingAccumulator:
    """Collects the target ranks of chunks of users; `result()` gives means keyed like "NDCG@10".

    Ranks are kept (8 bytes a user) and reduced once at the end, so the metrics do not depend on
    how the users were chunked.
    """

    def __init__(self, ks=(5, 10, 20)):
        ks = tuple(int(k) for k in ks)
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"ks must be positive cut-offs, got {ks}")
        self.ks = ks
        self.chunks: list[torch.Tensor] = []

    @property
    def users(self) -> int:
        return sum(int(c.numel()) for c in self.chunks)

    def add(self, ranks: torch.Tensor) -> None:
        self.chunks.append(ranks.detach().cpu().to(torch.int64))

    def ranks(self) -> torch.Tensor:
        return torch.cat(self.chunks) if self.chunks else torch.zeros(0, dtype=torch.int64)

    def result(self) -> dict:
        ranks = self.ranks()
        out = {}
        for name, fn in _PER_USER.items():
            for k in self.ks:
                out[f"{name}@{k}"] = float(fn(ranks, k).mean()) if ranks.numel() else math.nan
        return out
