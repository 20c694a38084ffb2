"""The real datasets in ../shared/data: exact statistics, checksums and split sizes.

Split sizes are recomputed here with a plain-Python leave-one-out over the raw file, written
independently of the library (dicts and lists, stable sort on timestamp).
"""

import json
from collections import defaultdict

import numpy as np
import pytest

from srkd_ext.data import eval_batches, leave_one_out_split, load_dataset, training_batches

EXPECTED = {
    # file: (format, users, items, interactions, sha256)
    "ml-100k.inter": (
        "atomic",
        943,
        1682,
        100_000,
        "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    ),
    "Beauty.txt": (
        "user-seq",
        22_363,
        12_101,
        198_502,
        "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    ),
    "Video.txt": (
        "user-item",
        31_013,
        23_715,
        287_107,
        "b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651",
    ),
}


def plain_python_sequences(path, fmt):
    """{original user: [original items in time order]} read with nothing but str.split."""
    events = defaultdict(list)  # user -> [(time, file position, item)]
    with open(path) as f:
        lines = f.read().splitlines()
    if fmt == "atomic":
        for position, line in enumerate(lines[1:]):
            user, item, _rating, time = line.split("\t")
            events[int(user)].append((float(time), position, int(item)))
    elif fmt == "user-seq":
        for position, line in enumerate(lines):
            user, *items = line.split()
            events[int(user)].extend((0.0, position * 10_000 + k, int(i)) for k, i in enumerate(items))
    else:
        for position, line in enumerate(lines):
            user, item = line.split()
            events[int(user)].append((0.0, position, int(item)))
    return {user: [item for _, _, item in sorted(evs)] for user, evs in events.items()}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def loaded(request, shared_data_dir):
    path = shared_data_dir / request.param
    return request.param, path, load_dataset(path)


def test_statistics_and_checksum(loaded):
    name, _, ds = loaded
    fmt, users, items, interactions, sha256 = EXPECTED[name]
    assert (ds.format, ds.num_users, ds.num_items, ds.num_interactions, ds.sha256) == (
        fmt,
        users,
        items,
        interactions,
        sha256,
    )
    summary = ds.summary()
    assert summary["users"] == users and summary["items"] == items and summary["interactions"] == interactions
    assert summary["avg_length"] == pytest.approx(interactions / users)
    assert summary["density"] == pytest.approx(interactions / (users * items))
    assert f"{users:,} users" in str(ds) and sha256[:12] in str(ds)
    assert json.loads(json.dumps(summary)) == summary  # stored with results as JSON
    assert ds.item_ids[0] == "<pad>" and len(ds.item_ids) == items + 1 and len(ds.user_ids) == users


def test_sequences_and_split_match_plain_python(loaded):
    name, path, ds = loaded
    expected = plain_python_sequences(path, EXPECTED[name][0])
    split = leave_one_out_split(ds)
    train_total = valid_users = 0
    for row, user in enumerate(ds.user_ids.tolist()):
        sequence = [ds.item_ids[i] for i in ds.sequence(row)]
        assert sequence == expected[user]
        train_total += len(sequence) - 2 if len(sequence) >= 3 else len(sequence)
        valid_users += len(sequence) >= 3
    assert len(split.train) == ds.num_users
    assert split.train.items.shape[0] == train_total
    assert len(split.valid) == len(split.test) == valid_users
    # Targets: second-to-last and last item of every evaluated user.
    for k in range(0, len(split.test), 97):
        user = ds.user_ids[split.test.users[k]]
        assert ds.item_ids[split.valid.targets[k]] == expected[user][-2]
        assert ds.item_ids[split.test.targets[k]] == expected[user][-1]


# Exact sizes (train interactions, evaluated users) pinned so that a change shows up even if
# the plain-Python reference above were changed in the same way.
SPLIT_SIZES = {
    "ml-100k.inter": (98_114, 943),
    "Beauty.txt": (153_776, 22_363),
    "Video.txt": (225_305, 30_901),
}


def test_split_sizes_pinned(loaded):
    name, _, ds = loaded
    split = leave_one_out_split(ds)
    assert (split.train.items.shape[0], len(split.test)) == SPLIT_SIZES[name]


def test_batches_cover_every_training_target_once(loaded):
    _, _, ds = loaded
    split = leave_one_out_split(ds)
    max_len = 50
    lengths = split.train.lengths
    expected_targets = int(np.minimum(np.maximum(lengths - 1, 0), max_len).sum())
    seen_users = []
    total = 0
    for batch in training_batches(split.train, max_len=max_len, batch_size=512, seed=3):
        assert batch.inputs.shape == batch.targets.shape == (batch.users.shape[0], max_len)
        total += int((batch.targets != 0).sum())
        seen_users.append(batch.users.numpy())
    assert total == expected_targets
    seen = np.concatenate(seen_users)
    assert np.array_equal(np.sort(seen), np.flatnonzero(lengths >= 2))
    n = sum(batch.targets.shape[0] for batch in eval_batches(split.test, max_len=max_len, batch_size=512))
    assert n == len(split.test)


def test_ml100k_timestamp_ties(shared_data_dir):
    # 75,772 of ml-100k's rows share their timestamp with another row of the same user
    # (ANCHORS.md); the order among them must be file order, which the plain-Python
    # comparison above checks. Here: the timestamps travel with their items.
    ds = load_dataset(shared_data_dir / "ml-100k.inter")
    users = np.repeat(np.arange(ds.num_users), ds.lengths)
    same_as_next = (users[1:] == users[:-1]) & (ds.timestamps[1:] == ds.timestamps[:-1])
    tied = np.zeros(ds.num_interactions, dtype=bool)
    tied[1:] |= same_as_next
    tied[:-1] |= same_as_next
    assert int(tied.sum()) == 75_772
