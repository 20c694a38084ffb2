"""Data layer throughput on 1M synthetic interactions.

    .venv/bin/python -m pytest benchmarks/bench_data.py --benchmark-only

Goal (issue 5): 1M interactions load and split in a few seconds on a 2-core machine. The
baseline is the plain-Python way (split lines, group by user in dicts, sort each user's
events), measured in the same run on the same file.
"""

from collections import defaultdict

import numpy as np
import pytest

from srkd_ext.data import leave_one_out_split, load_dataset, training_batches

NUM_INTERACTIONS = 1_000_000
NUM_USERS = 20_000
NUM_ITEMS = 10_000


def synthetic_columns(seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(1, NUM_USERS + 1, NUM_INTERACTIONS)
    items = rng.integers(1, NUM_ITEMS + 1, NUM_INTERACTIONS)
    ratings = rng.integers(1, 6, NUM_INTERACTIONS)
    # Coarse timestamps so that many events of a user tie, as in ml-100k.
    timestamps = 880_000_000 + 3600 * rng.integers(0, 5000, NUM_INTERACTIONS)
    return users, items, ratings, timestamps


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-data")
    users, items, ratings, timestamps = synthetic_columns()
    rows = np.stack([users, items, ratings, timestamps], 1).astype(str)
    atomic = root / "synthetic.inter"
    atomic.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "\n".join("\t".join(row) for row in rows.tolist())
        + "\n"
    )
    csv = root / "synthetic.csv"  # string ids: the general (line-by-line) reader
    csv.write_text(
        "user,item,timestamp\n"
        + "\n".join(
            f"u{u},i{i},{t}"
            for u, i, t in zip(users.tolist(), items.tolist(), timestamps.tolist(), strict=True)
        )
        + "\n"
    )
    user_item = root / "synthetic.txt"  # SASRec style: one "user item" per line
    user_item.write_text(
        "\n".join(f"{u} {i}" for u, i in zip(users.tolist(), items.tolist(), strict=True)) + "\n"
    )
    return {"atomic": atomic, "csv": csv, "user-item": user_item}


def plain_python_load_and_split(path):
    """Baseline: what a script would do without numpy."""
    by_user = defaultdict(list)
    with open(path) as f:
        next(f)
        for position, line in enumerate(f):
            user, item, _rating, time = line.split("\t")
            by_user[user].append((float(time), position, item))
    train, valid, test = {}, {}, {}
    for user, events in by_user.items():
        items = [item for _, _, item in sorted(events)]
        if len(items) >= 3:
            train[user], valid[user], test[user] = items[:-2], items[-2], items[-1]
        else:
            train[user] = items
    return train, valid, test


def load_and_split(path):
    return leave_one_out_split(load_dataset(path))


def test_load_and_split_atomic_1m(benchmark, files):
    split = benchmark.pedantic(load_and_split, args=(files["atomic"],), rounds=3, iterations=1)
    assert int(split.train.items.shape[0]) + 2 * len(split.test) == NUM_INTERACTIONS


def test_load_and_split_atomic_1m_plain_python_baseline(benchmark, files):
    train, valid, _ = benchmark.pedantic(
        plain_python_load_and_split, args=(files["atomic"],), rounds=1, iterations=1
    )
    assert sum(map(len, train.values())) + 2 * len(valid) == NUM_INTERACTIONS


def test_load_and_split_csv_string_ids_1m(benchmark, files):
    split = benchmark.pedantic(load_and_split, args=(files["csv"],), rounds=1, iterations=1)
    assert int(split.train.items.shape[0]) + 2 * len(split.test) == NUM_INTERACTIONS


def test_load_and_split_user_item_1m(benchmark, files):
    split = benchmark.pedantic(load_and_split, args=(files["user-item"],), rounds=3, iterations=1)
    assert int(split.train.items.shape[0]) + 2 * len(split.test) == NUM_INTERACTIONS


def test_training_epoch_batches_1m(benchmark, files):
    split = load_and_split(files["atomic"])

    def one_epoch():
        return sum(
            int(b.users.shape[0]) for b in training_batches(split.train, max_len=50, batch_size=256, seed=0)
        )

    rows = benchmark.pedantic(one_epoch, rounds=3, iterations=1)
    assert rows == int((split.train.lengths >= 2).sum())
