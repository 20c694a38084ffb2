"""Property tests over random interaction logs: every interaction lands in exactly one place,
chronological order (stable on ties) is preserved, and ids round-trip."""

from collections import Counter, defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srkd_ext.data import leave_one_out_split, load_dataset, training_batches

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Ids: plain integers, integers with leading zeros, and words (forcing string ids).
token_ids = st.one_of(
    st.integers(0, 30).map(str),
    st.sampled_from(["007", "01", "a", "b", "item-x", "Z9", "10"]),
)
events = st.lists(st.tuples(token_ids, token_ids, st.integers(0, 5)), min_size=1, max_size=60)


def expected_sequences(rows):
    """{user: [items]} by a stable sort of each user's events on timestamp (plain Python)."""
    by_user = defaultdict(list)
    for user, item, time in rows:
        by_user[user].append((time, item))
    return {user: [item for _, item in sorted(evs, key=lambda e: e[0])] for user, evs in by_user.items()}


def as_str(value):
    return value if isinstance(value, str) else str(value)


@SETTINGS
@given(rows=events)
def test_atomic_log_round_trips(tmp_path, rows):
    path = tmp_path / "log.inter"
    body = "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows)
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n" + body)
    ds = load_dataset(path)
    expected = expected_sequences(rows)
    got = {
        as_str(ds.user_ids[u]): [as_str(ds.item_ids[i]) for i in ds.sequence(u)] for u in range(ds.num_users)
    }
    assert got == expected
    assert ds.num_interactions == len(rows)
    assert ds.num_items == len({i for _, i, _ in rows})
    assert ds.items.min() >= 1 and ds.items.max() == ds.num_items
    assert np.array_equal(ds.offsets, np.concatenate([[0], np.cumsum(ds.lengths)]))
    # Timestamps travel with their items and are sorted within each user.
    for u in range(ds.num_users):
        assert np.all(np.diff(ds.timestamps[ds.offsets[u] : ds.offsets[u + 1]]) >= 0)
    check_split_partitions(ds)


@SETTINGS
@given(rows=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 40)), min_size=1, max_size=80))
def test_user_item_log_round_trips(tmp_path, rows):
    path = tmp_path / "log.txt"
    path.write_text("".join(f"{u} {i}\n" for u, i in rows))
    ds = load_dataset(path, "user-item")
    got = {int(ds.user_ids[u]): [ds.item_ids[i] for i in ds.sequence(u)] for u in range(ds.num_users)}
    assert got == expected_sequences([(u, i, 0) for u, i in rows])
    check_split_partitions(ds)


def check_split_partitions(ds):
    """train + valid target + test target of each user is exactly that user's sequence."""
    split = leave_one_out_split(ds)
    valid = dict(zip(split.valid.users.tolist(), split.valid.targets.tolist(), strict=True))
    test = dict(zip(split.test.users.tolist(), split.test.targets.tolist(), strict=True))
    assert valid.keys() == test.keys()
    total = 0
    for row in range(len(split.train)):
        user = int(split.train.users[row])
        parts = split.train.sequence(row).tolist()
        if user in valid:
            parts += [valid[user], test[user]]
        assert parts == ds.sequence(user).tolist()
        total += len(parts)
    assert total == ds.num_interactions
    for r, user in enumerate(split.test.users.tolist()):
        assert split.test.history.sequence(r).tolist() == ds.sequence(user).tolist()[:-1]
        assert split.valid.history.sequence(r).tolist() == ds.sequence(user).tolist()[:-2]


@SETTINGS
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=20),
    max_len=st.integers(1, 8),
    batch_size=st.integers(1, 7),
    seed=st.integers(0, 3),
)
def test_training_positions_each_appear_once(tmp_path, lengths, max_len, batch_size, seed):
    path = tmp_path / "seq.txt"
    path.write_text(
        "".join(
            f"{u} " + " ".join(str(100 * u + k) for k in range(n)) + "\n" for u, n in enumerate(lengths, 1)
        )
    )
    split = leave_one_out_split(load_dataset(path, "user-seq"))
    pairs = Counter()
    for batch in training_batches(split.train, max_len=max_len, batch_size=batch_size, seed=seed):
        inputs, targets = batch.inputs.numpy(), batch.targets.numpy()
        assert ((inputs == 0) == (targets == 0)).all()  # padding in the same places
        for user, x, y in zip(batch.users.tolist(), inputs, targets, strict=True):
            pairs.update((user, a, b) for a, b in zip(x[x > 0].tolist(), y[y > 0].tolist(), strict=True))
    expected = Counter()
    for row in range(len(split.train)):
        seq = split.train.sequence(row).tolist()
        steps = list(zip(seq[:-1], seq[1:], strict=True))[-max_len:]
        expected.update((row, a, b) for a, b in steps)
    assert pairs == expected


def dataset_fingerprint(ds):
    return (
        ds.offsets.tolist(),
        ds.items.tolist(),
        [str(u) for u in ds.user_ids.tolist()],
        [str(i) for i in ds.item_ids.tolist()],
        None if ds.timestamps is None else ds.timestamps.tolist(),
    )


FAST_PATH_FILES = {
    "log.inter": ("user_id:token\titem_id:token\ttimestamp:float\n", "{u}\t{i}\t{t}\n", None),
    "log.csv": ("user,item,timestamp\n", "{u},{i},{t}\n", None),
    "log.tsv": ("item\tuser\n", "{i}\t{u}\n", None),
    "log.txt": ("", "{u} {i}\n", "user-item"),
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=events, data=st.data())
def test_fast_paths_agree_with_the_general_reader(tmp_path, monkeypatch, rows, data):
    name = data.draw(st.sampled_from(sorted(FAST_PATH_FILES)))
    header, row, fmt = FAST_PATH_FILES[name]
    if fmt == "user-item":  # integer ids only
        rows = [(str(sum(map(ord, u)) % 50), str(sum(map(ord, i)) % 50), t) for u, i, t in rows]
    path = tmp_path / name
    path.write_text(header + "".join(row.format(u=u, i=i, t=t) for u, i, t in rows))
    fast = dataset_fingerprint(load_dataset(path, fmt))
    with monkeypatch.context() as patch:
        from srkd_ext.data import readers

        patch.setattr(readers, "parse_integer_table", lambda *args, **kwargs: None)
        patch.setattr(readers, "parse_delimited_columns", lambda *args, **kwargs: None)
        slow = dataset_fingerprint(load_dataset(path, fmt))
    assert fast == slow
