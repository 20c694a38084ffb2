"""Leave-one-out split: no leakage, the documented history choice, exact structure."""

import dataclasses

import numpy as np
import pytest

from srkd_ext.data import eval_batches, leave_one_out_split, load_dataset, training_batches

SHARED_FILES = ["ml-100k.inter", "Beauty.txt", "Video.txt"]


def with_event_ids(ds):
    """The same dataset with every event given its own item id (1..num_interactions).

    Real logs can hold the same item twice for a user (a repeat purchase), so an item id in
    both a training input and a target is not by itself a leak. With one id per event, any
    shared id *is* a leaked event.
    """
    n = ds.num_interactions
    item_ids = np.empty(n + 1, dtype=object)
    item_ids[:] = list(range(n + 1))
    return dataclasses.replace(ds, items=np.arange(1, n + 1, dtype=np.int64), item_ids=item_ids)


def assert_no_target_in_training(split, max_len):
    """No held-out target of a user is among that user's training inputs or targets."""
    held_out = np.full((split.num_users, 2), -1, dtype=np.int64)
    held_out[split.valid.users, 0] = split.valid.targets
    held_out[split.test.users, 1] = split.test.targets
    rows = 0
    for batch in training_batches(split.train, max_len=max_len, batch_size=1024, seed=0):
        targets = held_out[batch.users.numpy()]  # [B, 2]
        for seen in (batch.inputs.numpy(), batch.targets.numpy()):
            assert not (seen[:, :, None] == targets[:, None, :]).any()
        rows += batch.users.shape[0]
    assert rows == int((split.train.lengths >= 2).sum())


@pytest.mark.parametrize("name", SHARED_FILES)
@pytest.mark.parametrize("max_len", [5, 200])
def test_no_validation_or_test_event_in_training(shared_data_dir, name, max_len):
    ds = with_event_ids(load_dataset(shared_data_dir / name))
    split = leave_one_out_split(ds)
    assert_no_target_in_training(split, max_len)
    # The training rows hold exactly the events outside the held-out ones.
    held_out = set(split.valid.targets.tolist()) | set(split.test.targets.tolist())
    assert len(held_out) == 2 * len(split.test)
    assert set(split.train.items.tolist()) == set(range(1, ds.num_interactions + 1)) - held_out


@pytest.mark.parametrize("name", SHARED_FILES)
def test_test_input_ends_with_the_validation_item(shared_data_dir, name):
    split = leave_one_out_split(with_event_ids(load_dataset(shared_data_dir / name)))
    valid_inputs = np.concatenate([b.inputs[:, -1].numpy() for b in eval_batches(split.valid, max_len=7)])
    test_inputs = [b.inputs.numpy() for b in eval_batches(split.test, max_len=7)]
    test_last = np.concatenate([inputs[:, -1] for inputs in test_inputs])
    assert np.array_equal(test_last, split.valid.targets)
    # The validation input ends with the last training item of the same user.
    last_train = split.train.items[split.train.offsets[split.valid.users + 1] - 1]
    assert np.array_equal(valid_inputs, last_train)
    # Test histories never contain the test target (event ids are unique).
    for inputs, batch in zip(test_inputs, eval_batches(split.test, max_len=7), strict=True):
        assert not (inputs == batch.targets.numpy()[:, None]).any()


def test_ml100k_item_ids_do_not_leak(shared_data_dir):
    # ml-100k has one rating per (user, item), so even plain item ids must not leak.
    split = leave_one_out_split(load_dataset(shared_data_dir / "ml-100k.inter"))
    assert_no_target_in_training(split, max_len=800)


def test_split_structure_on_a_small_log(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("1 11 12 13 14 15\n2 21 22 23\n3 31 32\n4 41\n")
    ds = load_dataset(path, "user-seq")
    split = leave_one_out_split(ds)
    original = lambda items: [ds.item_ids[i] for i in items]  # noqa: E731
    assert [original(split.train.sequence(r)) for r in range(len(split.train))] == [
        [11, 12, 13],
        [21],
        [31, 32],
        [41],
    ]
    assert split.train.users.tolist() == [0, 1, 2, 3]
    assert split.valid.users.tolist() == split.test.users.tolist() == [0, 1]
    assert original(split.valid.targets) == [14, 22] and original(split.test.targets) == [15, 23]
    assert [original(split.valid.history.sequence(r)) for r in range(2)] == [[11, 12, 13], [21]]
    assert [original(split.test.history.sequence(r)) for r in range(2)] == [[11, 12, 13, 14], [21, 22]]
    assert split.summary() == {"train_users": 4, "train_interactions": 7, "valid_users": 2, "test_users": 2}
