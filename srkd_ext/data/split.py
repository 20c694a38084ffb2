"""Leave-one-out split: the last item of each user is the test target, the one before it the
validation target, and users with fewer than 3 interactions only train.

History choice: the validation history is the training sequence; the test history is the
training sequence plus the validation item (the user's whole sequence except the test
target), as in SASRec, S3-Rec and RecBole. No target is ever part of its own user's training
sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srkd_ext.data.sequences import SequenceDataset


@dataclass(frozen=True, eq=False)
class SequenceSet:
    """Variable-length item sequences stored as CSR.

    Attributes:
        offsets: int64 [n + 1]; row r is ``items[offsets[r]:offsets[r+1]]``.
        items: int64 [offsets[-1]], item ids 1..num_items in chronological order.
        users: int64 [n], the dataset user (row of ``SequenceDataset``) of each row.
    """

    offsets: np.ndarray
    items: np.ndarray
    users: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """int64 [n]: length of every row."""
        return np.diff(self.offsets)

    def sequence(self, row: int) -> np.ndarray:
        return self.items[self.offsets[row] : self.offsets[row + 1]]


@dataclass(frozen=True, eq=False)
class EvalSet:
    """One held-out target per user.

    Attributes:
        users: int64 [n], dataset user of each row (also its row in ``split.train``).
        history: SequenceSet with n rows, the items the model may see for that user.
        targets: int64 [n], the held-out item.
    """

    users: np.ndarray
    history: SequenceSet
    targets: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True, eq=False)
class LeaveOneOutSplit:
    num_users: int
    num_items: int
    train: SequenceSet
    valid: EvalSet
    test: EvalSet

    def summary(self) -> dict:
        return {
            "train_users": len(self.train),
            "train_interactions": int(self.train.items.shape[0]),
            "valid_users": len(self.valid),
            "test_users": len(self.test),
        }


def take_prefixes(
    offsets: np.ndarray, items: np.ndarray, rows: np.ndarray, lengths: np.ndarray
) -> SequenceSet:
    """The first ``lengths[j]`` items of CSR row ``rows[j]`` for every j, without a Python loop."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    new_offsets = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    shift = np.repeat(offsets[rows] - new_offsets[:-1], lengths)
    gathered = items[shift + np.arange(new_offsets[-1], dtype=np.int64)]
    return SequenceSet(new_offsets, gathered, rows)


def leave_one_out_split(dataset: SequenceDataset) -> LeaveOneOutSplit:
    """Splits every user's sequence into train / validation target / test target.

    ``train`` has one row per dataset user (row r is user r, ``train.users == arange``), so
    a training batch's ``users`` index both the dataset and ``train``. ``valid`` and ``test``
    hold the users with at least 3 interactions, in the same order.
    """
    lengths = dataset.lengths
    evaluated = lengths >= 3
    train_lengths = np.where(evaluated, lengths - 2, lengths)
    all_users = np.arange(dataset.num_users, dtype=np.int64)
    train = take_prefixes(dataset.offsets, dataset.items, all_users, train_lengths)
    eval_users = np.flatnonzero(evaluated).astype(np.int64)
    ends = dataset.offsets[eval_users + 1]
    valid = EvalSet(
        eval_users,
        take_prefixes(dataset.offsets, dataset.items, eval_users, train_lengths[eval_users]),
        dataset.items[ends - 2],
    )
    test = EvalSet(
        eval_users,
        take_prefixes(dataset.offsets, dataset.items, eval_users, train_lengths[eval_users] + 1),
        dataset.items[ends - 1],
    )
    return LeaveOneOutSplit(dataset.num_users, dataset.num_items, train, valid, test)
