"""Training windows: "all" covers every target exactly once, "last" is the data layer's batches."""

import numpy as np
import pytest
from synthetic_data import synthetic_split

from srkd_ext.data import training_batches
from srkd_ext.train.windows import training_windows


def covered_targets(train, max_len):
    """(dataset user, item, position-from-the-end) of every target the batches train on."""
    seen = []
    for batch in training_batches(train, max_len, 7, shuffle=True, seed=0):
        users = np.asarray(train.users)[batch.users.numpy()]
        for row, user in enumerate(users):
            targets = batch.targets[row].numpy()
            seen += [(int(user), int(t)) for t in targets[targets != 0]]
    return sorted(seen)


@pytest.mark.parametrize("max_len", [1, 3, 8])
def test_all_windows_train_every_target_once(tmp_path, max_len):
    train = synthetic_split(tmp_path).train
    expected = sorted(
        (int(train.users[r]), int(item)) for r in range(len(train)) for item in train.sequence(r)[1:]
    )
    assert covered_targets(training_windows(train, max_len, "all"), max_len) == expected


def test_windows_give_each_target_its_own_history(tmp_path):
    train = synthetic_split(tmp_path).train
    windows = training_windows(train, 4, "all")
    user_rows = {int(u): r for r, u in enumerate(train.users)}
    for w in range(len(windows)):
        sequence = train.sequence(user_rows[int(windows.users[w])])
        window = windows.sequence(w)
        # A window is a contiguous piece of its user's sequence, at most max_len + 1 items.
        assert 2 <= len(window) <= 5
        starts = [s for s in range(len(sequence) - len(window) + 1) if np.array_equal(sequence[s : s + len(window)], window)]
        assert starts


def test_last_mode_is_the_training_set_itself(tmp_path):
    train = synthetic_split(tmp_path).train
    assert training_windows(train, 4, "last") is train
    with pytest.raises(ValueError, match="windows"):
        training_windows(train, 4, "some")
