"""Leave-one-out evaluation: full ranking over every item (default) or against sampled negatives.

Users are processed in chunks, so peak memory is one [chunk, num_items + 1] score block whatever
the number of users; the chunk is further capped so that block stays under `max_scores_per_chunk`
floats (256 MiB by default), which keeps catalogues of a million items within memory.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from srkd_ext.data import eval_batches
from srkd_ext.models.base import SequentialRecommender
from srkd_ext.train.metrics import RankingAccumulator, target_ranks

PROTOCOLS = ("full", "sampled")


def evaluate(
    model: SequentialRecommender,
    evalset,
    num_items: int,
    *,
    ks=(5, 10, 20),
    mask_seen: bool = False,
    protocol: str = "full",
    num_negatives: int = 100,
    seed: int = 0,
    chunk_users: int = 1024,
    device="cpu",
    max_len: int | None = None,
    max_scores_per_chunk: int = 2**26,
) -> dict:
    """Ranks each user's target item and returns HR@K, NDCG@K and MRR@K averaged over users.

    evalset: the data layer's EvalSet (users, history, targets), e.g. split.valid or split.test.
    protocol "full": the target against all num_items items; `mask_seen` removes the user's
        history items from the candidates (the target itself is never removed). Also reports
        "loss", the mean cross-entropy of the target over the full catalogue (before masking).
    protocol "sampled": the target against `num_negatives` items drawn without replacement from
        the items the user has not interacted with. The draw depends only on (seed, user), so it is
        the same for every model, chunk size and device.
    Returns metrics plus "protocol", "mask_seen", "users" (and "num_negatives", "seed" if sampled).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if num_items != model.num_items:
        raise ValueError(f"num_items ({num_items}) differs from the model's num_items ({model.num_items})")
    if chunk_users < 1:
        raise ValueError(f"chunk_users must be >= 1, got {chunk_users}")
    if protocol == "sampled" and not 1 <= num_negatives < num_items:
        raise ValueError(f"num_negatives must be in [1, num_items), got {num_negatives}")
    max_len = model.max_len if max_len is None else max_len
    chunk = max(1, min(chunk_users, max_scores_per_chunk // (num_items + 1)))

    history_offsets = np.asarray(evalset.history.offsets, dtype=np.int64)
    history_items = np.asarray(evalset.history.items, dtype=np.int64)
    expected_users = np.asarray(evalset.users, dtype=np.int64)
    accumulator = RankingAccumulator(ks)
    losses = []
    was_training = model.training
    model.to(device).eval()
    row = 0
    try:
        with torch.no_grad():
            for batch in eval_batches(evalset, max_len, chunk):
                users = _as_tensor(batch.users)
                count = int(users.numel())
                if not np.array_equal(users.numpy(), expected_users[row : row + count]):
                    raise RuntimeError("eval_batches did not yield the evaluation set's users in order")
                inputs = _as_tensor(batch.inputs).to(device)
                targets = _as_tensor(batch.targets).to(device)
                scores = model.predict(inputs).float()  # [C, N + 1], column 0 is -inf
                seen_rows, seen_items = _seen_pairs(history_offsets, history_items, row, count)
                if protocol == "full":
                    losses.append(
                        (torch.logsumexp(scores[:, 1:], 1) - scores.gather(1, targets[:, None])[:, 0]).double().cpu()
                    )
                    if mask_seen:
                        target_scores = scores.gather(1, targets[:, None])
                        scores[seen_rows.to(device), seen_items.to(device)] = float("-inf")
                        scores.scatter_(1, targets[:, None], target_scores)
                    accumulator.add(target_ranks(scores, targets))
                else:
                    negatives = sampled_negatives(
                        users, targets.cpu(), seen_rows, seen_items, num_items, num_negatives, seed
                    ).to(device)
                    candidates = torch.cat([targets[:, None], negatives], dim=1)  # target is column 0
                    candidate_scores = scores.gather(1, candidates)
                    accumulator.add(_sampled_ranks(candidate_scores, candidates))
                row += count
    finally:
        model.train(was_training)
    if row != len(expected_users):
        raise RuntimeError(f"eval_batches yielded {row} users, the evaluation set has {len(expected_users)}")

    result = accumulator.result()
    if protocol == "full":
        result["loss"] = float(torch.cat(losses).mean()) if losses else math.nan
    result.update({"protocol": protocol, "mask_seen": bool(mask_seen), "users": row})
    if protocol == "sampled":
        result.update({"num_negatives": int(num_negatives), "seed": int(seed)})
    return result


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _seen_pairs(offsets: np.ndarray, items: np.ndarray, start: int, count: int):
    """(chunk row, item) pairs of the history of rows start..start+count: two int64 tensors."""
    lo, hi = offsets[start : start + count], offsets[start + 1 : start + count + 1]
    lengths = hi - lo
    rows = np.repeat(np.arange(count, dtype=np.int64), lengths)
    flat = np.arange(lengths.sum(), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return torch.from_numpy(rows), torch.from_numpy(items[np.repeat(lo, lengths) + flat])


def _sampled_ranks(candidate_scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Rank of column 0 among the candidates, ties broken by item id like the full protocol."""
    target = candidate_scores[:, :1]
    greater = (candidate_scores[:, 1:] > target).sum(1)
    ties_before = ((candidate_scores[:, 1:] == target) & (candidates[:, 1:] < candidates[:, :1])).sum(1)
    return 1 + greater + ties_before


_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (int64 tensor holding values < 2^32; products stay below 2^63)."""
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK32
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK32
    return x ^ (x >> 16)


def sampled_negatives(
    users: torch.Tensor,
    targets: torch.Tensor,
    seen_rows: torch.Tensor,
    seen_items: torch.Tensor,
    num_items: int,
    num_negatives: int,
    seed: int,
) -> torch.Tensor:
    """num_negatives distinct unseen items per user: [C, num_negatives] int64 item ids.

    Each (seed, user, item) gets a pseudo-random key; the user's negatives are the unseen items
    with the smallest keys. That is a uniform draw without replacement that depends only on
    (seed, user), never on chunking or on which other users are evaluated.
    """
    count = users.numel()
    items = torch.arange(1, num_items + 1, dtype=torch.int64)
    user_key = _mix32((users.to(torch.int64) & _MASK32) ^ _mix32(torch.tensor(seed & _MASK32)))
    keys = _mix32(user_key[:, None] ^ ((items[None, :] * 0x27D4EB2D) & _MASK32))
    keys = keys * (num_items + 1) + items[None, :]  # unique per item: no ties in the selection
    unseen_limit = torch.iinfo(torch.int64).max
    keys[seen_rows, seen_items - 1] = unseen_limit
    keys[torch.arange(count), targets - 1] = unseen_limit
    available = (keys != unseen_limit).sum(1)
    if bool((available < num_negatives).any()):
        short = int(available.min())
        raise ValueError(f"a user has only {short} unseen items, fewer than num_negatives={num_negatives}")
    return keys.topk(num_negatives, dim=1, largest=False).indices + 1
