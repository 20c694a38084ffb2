"""Ranking metrics against values computed by hand."""

import math

import pytest
import torch

from srkd_ext.train.metrics import RankingAccumulator, hit_rate, mrr, ndcg, target_ranks


def test_rank_counts_higher_scores_and_breaks_ties_by_lower_item_id():
    scores = torch.tensor(
        [
            [-math.inf, 0.1, 0.5, 0.3, 0.5],  # target 4 (0.5): item 2 is higher on the tie -> rank 2
            [-math.inf, 0.1, 0.5, 0.3, 0.5],  # target 2 (0.5): wins the tie with item 4 -> rank 1
            [-math.inf, 0.9, 0.8, 0.7, 0.6],  # target 4: three items above -> rank 4
        ]
    )
    ranks = target_ranks(scores, torch.tensor([4, 2, 4]))
    assert ranks.tolist() == [2, 1, 4]


def test_rank_refuses_nan_target_score():
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor([[0.0, math.nan]]), torch.tensor([1]))


def test_per_user_metrics_by_hand():
    ranks = torch.tensor([1, 3, 10, 11])
    assert hit_rate(ranks, 10).tolist() == [1, 1, 1, 0]
    assert ndcg(ranks, 10).tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0.0])
    assert mrr(ranks, 10).tolist() == pytest.approx([1.0, 1 / 3, 0.1, 0.0])
    assert ndcg(ranks, 2).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_accumulator_means_over_chunks():
    acc = RankingAccumulator(ks=(1, 5))
    acc.add(torch.tensor([1, 3]))
    acc.add(torch.tensor([6]))
    result = acc.result()
    assert acc.users == 3
    assert result["HR@1"] == pytest.approx(1 / 3)
    assert result["HR@5"] == pytest.approx(2 / 3)
    assert result["NDCG@5"] == pytest.approx((1 + 0.5) / 3)
    assert result["MRR@5"] == pytest.approx((1 + 1 / 3) / 3)
    assert set(result) == {f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in (1, 5)}


def test_accumulator_refuses_bad_cutoffs():
    with pytest.raises(ValueError, match="ks"):
        RankingAccumulator(ks=(0, 10))
