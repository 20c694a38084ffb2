"""Batch layout against a plain-Python construction, determinism and argument errors."""

import numpy as np
import pytest
import torch

from srkd_ext.data import eval_batches, leave_one_out_split, load_dataset, training_batches
from srkd_ext.data.split import EvalSet, SequenceSet, take_prefixes


def make_set(sequences):
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int64)
    items = np.array([i for s in sequences for i in s], dtype=np.int64)
    return SequenceSet(offsets, items, np.arange(len(sequences), dtype=np.int64))


def left_pad(values, length):
    values = values[-length:]
    return [0] * (length - len(values)) + values


SEQUENCES = [[5, 6, 7, 8, 9, 10], [3], [4, 2], [1, 2, 3, 1, 2, 3, 1]]


def test_training_batch_layout_matches_plain_python():
    train = make_set(SEQUENCES)
    batches = list(training_batches(train, max_len=4, batch_size=2, shuffle=False))
    assert [b.users.tolist() for b in batches] == [[0, 2], [3]]  # row 1 has no target
    batch = batches[0]
    assert batch.inputs.dtype == batch.targets.dtype == batch.users.dtype == torch.int64
    assert batch.inputs.tolist() == [left_pad([5, 6, 7, 8, 9], 4), left_pad([4], 4)]
    assert batch.targets.tolist() == [left_pad([6, 7, 8, 9, 10], 4), left_pad([2], 4)]
    assert batches[1].inputs.tolist() == [[3, 1, 2, 3]] and batches[1].targets.tolist() == [[1, 2, 3, 1]]


def test_eval_batch_layout():
    history = make_set([[1, 2, 3], [4], [5, 6, 7, 8, 9]])
    eval_set = EvalSet(np.array([4, 7, 9]), history, np.array([11, 12, 13]))
    batches = list(eval_batches(eval_set, max_len=3, batch_size=2))
    assert len(batches) == 2 == len(eval_batches(eval_set, max_len=3, batch_size=2))
    assert batches[0].inputs.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert batches[1].inputs.tolist() == [[7, 8, 9]]
    assert [b.users.tolist() for b in batches] == [[4, 7], [9]]
    assert [b.targets.tolist() for b in batches] == [[11, 12], [13]]


def test_epoch_order_depends_only_on_seed():
    train = make_set([[i, i + 1, i + 2] for i in range(1, 40)])

    def order(seed):
        return torch.cat(
            [b.users for b in training_batches(train, max_len=3, batch_size=8, seed=seed)]
        ).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == list(range(39))
    batches = training_batches(train, max_len=3, batch_size=8, seed=5)
    assert len(batches) == 5
    for shuffle in (True, False):
        batches = training_batches(train, max_len=3, batch_size=8, seed=5, shuffle=shuffle)
        first_epoch = [b.users.tolist() for b in batches]
        for batch in batches:
            batch.users.zero_()  # a consumer writing into a batch must not change later epochs
        assert [b.users.tolist() for b in batches] == first_epoch  # iterating replays


def test_shared_data_batches_are_right_aligned_and_complete(shared_data_dir):
    split = leave_one_out_split(load_dataset(shared_data_dir / "Beauty.txt"))
    for batch in training_batches(split.train, max_len=50, batch_size=4096, seed=0):
        for user, inputs, targets in list(
            zip(batch.users.tolist(), batch.inputs.tolist(), batch.targets.tolist(), strict=True)
        )[:50]:
            seq = split.train.sequence(user).tolist()
            assert inputs == left_pad(seq[:-1], 50) and targets == left_pad(seq[1:], 50)


def test_take_prefixes():
    base = make_set([[1, 2, 3], [4, 5], [6]])
    got = take_prefixes(base.offsets, base.items, np.array([2, 0, 1]), np.array([1, 2, 0]))
    assert (
        got.offsets.tolist() == [0, 1, 3, 3]
        and got.items.tolist() == [6, 1, 2]
        and got.users.tolist() == [2, 0, 1]
    )


@pytest.mark.parametrize(
    "kwargs", [{"max_len": 0}, {"batch_size": 0}, {"max_len": 2.5}, {"batch_size": True}]
)
def test_bad_arguments(kwargs):
    train = make_set(SEQUENCES)
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        training_batches(train, **kwargs)
    eval_set = EvalSet(np.array([0]), make_set([[1]]), np.array([2]))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        eval_batches(eval_set, **kwargs)
