"""Mini-batches of right-aligned (left-padded) sequences, assembled with numpy.

Training: for a training sequence s of length n, the inputs are s[:-1] and the targets s[1:]
(every position is a target for a causal model); a row holds the most recent ``max_len``
of them, right-aligned, with 0 (padding) on the left. Column j of a row is therefore always
the same sequence position for that user, so a per-position teacher cache can be keyed by
(batch.users[b], j). Sequences shorter than 2 have no target and are skipped.

Evaluation: a row holds the most recent ``max_len`` history items, right-aligned, and the
held-out target.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from srkd_ext.data.split import EvalSet, SequenceSet


@dataclass(frozen=True)
class TrainingBatch:
    """users: int64 [B] rows of ``split.train``; inputs, targets: int64 [B, L], 0 = padding."""

    users: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass(frozen=True)
class EvalBatch:
    """users: int64 [B] dataset users; inputs: int64 [B, L] history, 0 = padding; targets: [B]."""

    users: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor


def _check_sizes(max_len: int, batch_size: int) -> None:
    for name, value in (("max_len", max_len), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def right_aligned(items: np.ndarray, ends: np.ndarray, counts: np.ndarray, max_len: int) -> np.ndarray:
    """int64 [B, max_len]: row b holds ``items[ends[b] - counts[b] : ends[b]]`` right-aligned.

    ``counts`` must be <= max_len; the rest of each row is 0.
    """
    columns = np.arange(max_len, dtype=np.int64)
    # Column j of row b reads items[ends[b] - max_len + j]; columns left of the count are padding.
    index = ends[:, None] - max_len + columns[None, :]
    valid = columns[None, :] >= (max_len - counts)[:, None]
    out = items[np.where(valid, index, 0)] if items.size else np.zeros(index.shape, dtype=np.int64)
    out[~valid] = 0
    return out


class TrainingBatches:
    """Iterable over :class:`TrainingBatch`; ``len()`` is the number of batches per epoch.

    The epoch order depends only on ``seed`` (and ``shuffle``); iterating again replays it.
    """

    def __init__(self, train: SequenceSet, max_len: int, batch_size: int, shuffle: bool, seed: int):
        _check_sizes(max_len, batch_size)
        self.train = train
        self.max_len = int(max_len)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.rows = np.flatnonzero(train.lengths >= 2).astype(np.int64)

    def __len__(self) -> int:
        return -(-self.rows.shape[0] // self.batch_size)

    def __iter__(self) -> Iterator[TrainingBatch]:
        rows = self.rows
        if self.shuffle:
            rows = rows[np.random.default_rng(self.seed).permutation(rows.shape[0])]
        offsets, items = self.train.offsets, self.train.items
        for start in range(0, rows.shape[0], self.batch_size):
            batch_rows = rows[start : start + self.batch_size].copy()  # the batch must not alias rows
            ends = offsets[batch_rows + 1]
            counts = np.minimum(ends - offsets[batch_rows] - 1, self.max_len)
            inputs = right_aligned(items, ends - 1, counts, self.max_len)
            targets = right_aligned(items, ends, counts, self.max_len)
            yield TrainingBatch(
                torch.from_numpy(batch_rows), torch.from_numpy(inputs), torch.from_numpy(targets)
            )


def training_batches(
    train: SequenceSet, max_len: int = 50, batch_size: int = 256, shuffle: bool = True, seed: int = 0
) -> TrainingBatches:
    """Batches of every training sequence with at least 2 items (see the module docstring).

    The order is a permutation drawn from ``seed`` alone (or row order when ``shuffle`` is
    False); pass e.g. ``seed=base_seed + epoch`` for a new order each epoch.
    """
    return TrainingBatches(train, max_len, batch_size, shuffle, seed)


class EvalBatches:
    """Iterable over :class:`EvalBatch` in the order of the EvalSet; ``len()`` = batches."""

    def __init__(self, eval_set: EvalSet, max_len: int, batch_size: int):
        _check_sizes(max_len, batch_size)
        self.eval_set = eval_set
        self.max_len = int(max_len)
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.eval_set) // self.batch_size)

    def __iter__(self) -> Iterator[EvalBatch]:
        history = self.eval_set.history
        for start in range(0, len(self.eval_set), self.batch_size):
            stop = start + self.batch_size
            ends = history.offsets[start + 1 : stop + 1]
            counts = np.minimum(ends - history.offsets[start:stop][: ends.shape[0]], self.max_len)
            inputs = right_aligned(history.items, ends, counts, self.max_len)
            yield EvalBatch(
                torch.from_numpy(self.eval_set.users[start:stop].copy()),
                torch.from_numpy(inputs),
                torch.from_numpy(self.eval_set.targets[start:stop].copy()),
            )


def eval_batches(eval_set: EvalSet, max_len: int = 50, batch_size: int = 256) -> EvalBatches:
    """Batches of (history, target) pairs of a validation or test set, in order."""
    return EvalBatches(eval_set, max_len, batch_size)
