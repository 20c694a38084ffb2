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


def _k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """bool mask of the events kept by iterative k-core filtering on users and items."""
    keep = np.ones(users.shape[0], dtype=bool)
    if k <= 1:
        return keep
    _, user_index = np.unique(users, return_inverse=True)
    _, item_index = np.unique(items, return_inverse=True)
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
    user_ids, user_index = np.unique(users, return_inverse=True)
    item_values, item_index = np.unique(items, return_inverse=True)
    # Stable sorts: events with equal (user, time) keep their file order.
    if timestamps is None:
        order = np.argsort(user_index, kind="stable")
    else:
        order = np.argsort(timestamps, kind="stable")
        order = order[np.argsort(user_index[order], kind="stable")]
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
