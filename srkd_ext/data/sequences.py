"""Per-user chronological sequences with contiguous ids: the dataset every model shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srkd_ext.data.errors import DataError
from srkd_ext.data.readers import InteractionLog

PADDING_ITEM = "<pad>"


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Every user's items in chronological order, stored as CSR.

    Users are rows 0..num_users-1; items are 1..num_items, and 0 is the padding id, which is
    not counted in ``num_items``. Both are numbered in the sorted order of their original ids
    (numeric when the ids are integers), so 1-based integer ids that are already contiguous
    keep their values.

    Attributes:
        offsets: int64 [num_users + 1]; user u's items are ``items[offsets[u]:offsets[u+1]]``.
        items: int64 [num_interactions], chronological per user; events with the same
            timestamp (or files without timestamps) keep file order (stable sort).
        timestamps: float64 [num_interactions] aligned with ``items``, or None.
        user_ids: [num_users] original user id of each row.
        item_ids: object [num_items + 1] original item id of each item; ``item_ids[0]`` is
            "<pad>".
        preprocessing: the options that produced it and what they removed.
    """

    name: str
    path: Path | None
    sha256: str
    format: str
    offsets: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    preprocessing: dict = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def num_items(self) -> int:
        return int(self.item_ids.shape[0] - 1)

    @property
    def num_interactions(self) -> int:
        return int(self.items.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """int64 [num_users]: number of interactions of each user."""
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """The items of user row ``user`` in chronological order."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def summary(self) -> dict:
        """Statistics to print on load and to store with results."""
        lengths = self.lengths
        return {
            "name": self.name,
            "path": None if self.path is None else str(self.path),
            "format": self.format,
            "sha256": self.sha256,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "avg_length": float(lengths.mean()),
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "density": self.num_interactions / (self.num_users * self.num_items),
            **self.preprocessing,
        }

    def __str__(self) -> str:
        s = self.summary()
        return (
            f"{s['name']} ({s['format']}, sha256 {s['sha256'][:12]}): {s['users']:,} users, "
            f"{s['items']:,} items, {s['interactions']:,} interactions, "
            f"avg length {s['avg_length']:.2f}, density {100 * s['density']:.3f}%"
        )

    def __repr__(self) -> str:
        return f"SequenceDataset<{self}>"


def _factorize(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, index of each id among them), like np.unique(return_inverse=True).

    Integer ids spanning a small range (the usual case) are counted with a presence table in
    O(n) instead of sorted.
    """
    if ids.dtype.kind in "iu" and ids.size:
        low, high = int(ids.min()), int(ids.max())
        if high - low <= 4 * ids.size + 1024:
            present = np.zeros(high - low + 1, dtype=bool)
            present[ids - low] = True
            rank = np.cumsum(present) - 1
            return np.flatnonzero(present) + low, rank[ids - low]
    if ids.dtype.kind == "S" and ids.dtype.itemsize <= 8:
        # Short byte strings as big-endian integers: same order, and integers sort faster.
        width = ids.dtype.itemsize
        padded = np.zeros((ids.shape[0], 8), dtype=np.uint8)
        padded[:, :width] = ids.view(np.uint8).reshape(-1, width)
        keys, inverse = np.unique(padded.view(">u8").reshape(-1), return_inverse=True)
        distinct = keys.astype(">u8").view(np.uint8).reshape(-1, 8)[:, :width].copy().view(f"S{width}")
        return distinct.reshape(-1), inverse.reshape(-1)
    distinct, inverse = np.unique(ids, return_inverse=True)
    return distinct, inverse.reshape(-1)


def _radix_argsort(keys: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Stable argsort of non-negative int64 ``keys`` (optionally refining ``order``).

    LSD radix over 16-bit digits: numpy's stable sort of uint16 is a counting sort, several
    times faster than its stable sort of int64 or float64 on a million keys.
    """
    if order is None:
        order = np.arange(keys.shape[0], dtype=np.int64)
    high = int(keys.max()) if keys.size else 0
    shift = 0
    while True:
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
        if high >> shift == 0:
            return order


def chronological_order(user_index: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """Permutation grouping events by user, by time within a user, and by file order on ties."""
    order = None
    if timestamps is not None and timestamps.size:
        shifted = timestamps - timestamps.min()
        if shifted.max() < 2**53 and np.array_equal(shifted, np.floor(shifted)):
            order = _radix_argsort(shifted.astype(np.int64))
        else:  # fractional times: a comparison sort (still stable)
            order = np.argsort(timestamps, kind="stable")
    return _radix_argsort(user_index.astype(np.int64), order)


def _k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """bool mask of the events kept by iterative k-core filtering on users and items."""
    keep = np.ones(users.shape[0], dtype=bool)
    if k <= 1:
        return keep
    _, user_index = _factorize(users)
    _, item_index = _factorize(items)
    while True:
        user_count = np.bincount(user_index[keep], minlength=user_index.max() + 1)
        item_count = np.bincount(item_index[keep], minlength=item_index.max() + 1)
        still = keep & (user_count[user_index] >= k) & (item_count[item_index] >= k)
        if np.array_equal(still, keep):
            return keep
        keep = still


def build_sequences(
    log: InteractionLog, *, name: str, sha256: str, min_rating: float | None = None, k_core: int = 0
) -> SequenceDataset:
    """Filters, orders and remaps a log into a :class:`SequenceDataset`.

    Args:
        min_rating: keep events with rating >= min_rating (needs a rating column).
        k_core: repeatedly drop users and items with fewer than ``k_core`` events until none
            is left (0 or 1: no filtering). Duplicate events count once each.
    """
    if isinstance(k_core, bool) or not isinstance(k_core, (int, np.integer)) or k_core < 0:
        raise ValueError(f"k_core must be a non-negative integer, got {k_core!r}")
    if min_rating is not None and (
        isinstance(min_rating, bool) or not isinstance(min_rating, (int, float, np.number))
    ):
        raise ValueError(f"min_rating must be a number or None, got {min_rating!r}")
    users, items, timestamps = log.users, log.items, log.timestamps
    keep = np.ones(len(log), dtype=bool)
    if min_rating is not None:
        if log.ratings is None:
            raise DataError(
                f"min_rating={min_rating} needs ratings, but the {log.format} file {log.path} has none"
            )
        keep &= log.ratings >= float(min_rating)
    after_rating = int(keep.sum())
    if k_core > 1:
        keep[keep] = _k_core(users[keep], items[keep], int(k_core))
    if not keep.any():
        raise DataError(
            f"no interactions left in {log.path or name} after filtering "
            f"(min_rating={min_rating}, k_core={k_core}): loosen the filters"
        )
    if not keep.all():
        users, items = users[keep], items[keep]
        timestamps = None if timestamps is None else timestamps[keep]
    user_ids, user_index = _factorize(users)
    item_values, item_index = _factorize(items)
    if user_ids.dtype.kind == "S":  # UTF-8 bytes from the fast reader; same order as str
        user_ids = np.char.decode(user_ids, "utf-8")
    if item_values.dtype.kind == "S":
        item_values = np.char.decode(item_values, "utf-8")
    # Stable sorts: events with equal (user, time) keep their file order.
    order = chronological_order(user_index, timestamps)
    counts = np.bincount(user_index, minlength=user_ids.shape[0])
    offsets = np.zeros(user_ids.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    item_ids = np.empty(item_values.shape[0] + 1, dtype=object)
    item_ids[0] = PADDING_ITEM
    item_ids[1:] = item_values.tolist()
    return SequenceDataset(
        name=name,
        path=log.path,
        sha256=sha256,
        format=log.format,
        offsets=offsets,
        items=(item_index[order] + 1).astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=None if timestamps is None else timestamps[order],
        preprocessing={
            "min_rating": min_rating,
            "k_core": int(k_core),
            "raw_interactions": len(log),
            "removed_by_rating": len(log) - after_rating,
            "removed_by_k_core": after_rating - int(keep.sum()),
        },
    )
