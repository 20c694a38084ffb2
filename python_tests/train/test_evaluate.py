"""Full-ranking and sampled evaluation: against a per-user reference, chunking, masking, sampling."""

import numpy as np
import pytest
import torch
from synthetic_data import synthetic_split

from srkd_ext.data import eval_batches
from srkd_ext.models import build_model
from srkd_ext.train import evaluate, sampled_negatives


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return synthetic_split(tmp_path_factory.mktemp("data"), items=60)


@pytest.fixture(scope="module")
def model(split):
    torch.manual_seed(0)
    return build_model("sasrec", split.num_items, 8, hidden_dim=16, num_heads=2, dropout=0.0).eval()


def reference_ranks(model, evalset, mask_seen):
    """One user at a time, with a stable sort: rank = position of the target, ties by item id."""
    ranks = []
    for row in range(len(evalset)):
        history = evalset.history.sequence(row)
        window = np.zeros(8, dtype=np.int64)
        recent = history[-8:]
        window[8 - len(recent) :] = recent
        with torch.no_grad():
            scores = model.predict(torch.from_numpy(window)[None])[0].numpy().astype(np.float64)
        target = int(evalset.targets[row])
        if mask_seen:
            seen = [i for i in set(history.tolist()) if i != target]
            scores[seen] = -np.inf
        order = np.argsort(-scores, kind="stable")  # equal scores keep item-id order
        ranks.append(int(np.flatnonzero(order == target)[0]) + 1)
    return np.array(ranks)


@pytest.mark.parametrize("mask_seen", [False, True])
def test_full_ranking_matches_a_per_user_reference(split, model, mask_seen):
    ranks = reference_ranks(model, split.valid, mask_seen)
    result = evaluate(model, split.valid, split.num_items, ks=(1, 5, 10), mask_seen=mask_seen, chunk_users=7)
    assert result["users"] == len(split.valid) and result["protocol"] == "full"
    assert result["mask_seen"] is mask_seen
    assert result["HR@5"] == pytest.approx(np.mean(ranks <= 5))
    assert result["NDCG@10"] == pytest.approx(np.mean(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0)))
    assert result["MRR@10"] == pytest.approx(np.mean(np.where(ranks <= 10, 1 / ranks, 0)))


def test_masking_seen_items_never_hurts_the_target(split, model):
    plain = reference_ranks(model, split.test, mask_seen=False)
    masked = reference_ranks(model, split.test, mask_seen=True)
    assert np.all(masked <= plain) and np.any(masked < plain)


@pytest.mark.parametrize("protocol", ["full", "sampled"])
@pytest.mark.parametrize("mask_seen", [False, True])
def test_chunked_evaluation_equals_unchunked(split, model, protocol, mask_seen):
    kwargs = {"protocol": protocol, "mask_seen": mask_seen, "num_negatives": 10, "seed": 3}
    whole = evaluate(model, split.test, split.num_items, chunk_users=10_000, **kwargs)
    # The score-block cap splits the users too, with the same result.
    capped = evaluate(model, split.test, split.num_items, max_scores_per_chunk=4 * (split.num_items + 1), **kwargs)
    for chunked in [evaluate(model, split.test, split.num_items, chunk_users=7, **kwargs), capped]:
        # Ranks (hence every metric) are identical; the loss is a float32 sum over other blocks.
        assert chunked.pop("loss", 0.0) == pytest.approx(whole.get("loss", 0.0), rel=1e-6)
        assert chunked == {k: v for k, v in whole.items() if k != "loss"}


def test_sampled_negatives_are_unseen_distinct_and_seeded(split):
    batch = next(iter(eval_batches(split.test, 8, 1000)))
    history = split.test.history
    lengths = np.diff(history.offsets)
    rows = torch.from_numpy(np.repeat(np.arange(len(split.test)), lengths))
    items = torch.from_numpy(history.items)
    draw = sampled_negatives(batch.users, batch.targets, rows, items, split.num_items, 12, seed=5)
    assert draw.shape == (len(split.test), 12)
    for r in range(len(split.test)):
        chosen = set(draw[r].tolist())
        assert len(chosen) == 12
        assert not chosen & set(history.sequence(r).tolist())
        assert int(split.test.targets[r]) not in chosen
        assert all(1 <= i <= split.num_items for i in chosen)
    again = sampled_negatives(batch.users, batch.targets, rows, items, split.num_items, 12, seed=5)
    other = sampled_negatives(batch.users, batch.targets, rows, items, split.num_items, 12, seed=6)
    assert torch.equal(draw, again) and not torch.equal(draw, other)


def test_sampled_protocol_is_easier_than_full_ranking(split, model):
    full = evaluate(model, split.test, split.num_items)
    sampled = evaluate(model, split.test, split.num_items, protocol="sampled", num_negatives=10)
    assert sampled["protocol"] == "sampled" and sampled["num_negatives"] == 10 and "loss" not in sampled
    assert sampled["HR@5"] >= full["HR@5"]


def test_bad_arguments_are_named(split, model):
    with pytest.raises(ValueError, match="protocol"):
        evaluate(model, split.test, split.num_items, protocol="leave-one-out")
    with pytest.raises(ValueError, match="num_items"):
        evaluate(model, split.test, split.num_items + 1)
    with pytest.raises(ValueError, match="num_negatives"):
        evaluate(model, split.test, split.num_items, protocol="sampled", num_negatives=split.num_items)
    with pytest.raises(ValueError, match="chunk_users"):
        evaluate(model, split.test, split.num_items, chunk_users=0)
