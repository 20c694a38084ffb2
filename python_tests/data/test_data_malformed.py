"""Every user mistake ends in one clear error naming the file, the line and what was expected;
the documented edge cases (duplicates, one-interaction users, one-item catalogues) load."""

import numpy as np
import pytest

from srkd_ext.data import (
    DataError,
    DataFormatError,
    eval_batches,
    leave_one_out_split,
    load_dataset,
    training_batches,
)

ALL_FORMATS = ["atomic", "user-seq", "user-item", "ml-100k-udata", "ml-1m-dat", "csv", "tsv"]


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def expect_error(path, match, line=None, **kwargs):
    with pytest.raises(DataFormatError, match=match) as info:
        load_dataset(path, **kwargs)
    error = info.value
    assert error.path == str(path)
    assert error.line == line
    assert "\n" not in str(error)
    assert str(error).startswith(f"{path}:{line}:" if line is not None else f"{path}:")
    return error


@pytest.mark.parametrize("fmt", ALL_FORMATS + [None])
@pytest.mark.parametrize("content", ["", "\n \n"])
def test_empty_file(tmp_path, fmt, content):
    expect_error(write(tmp_path, "empty.txt", content), "an empty file", format=fmt)


@pytest.mark.parametrize(
    ("name", "header"),
    [("h.inter", "user_id:token\titem_id:token\n"), ("h.csv", "user,item\n"), ("h.tsv", "user\titem\n\n")],
)
def test_header_only(tmp_path, name, header):
    expect_error(write(tmp_path, name, header), "found only the header", line=2)


@pytest.mark.parametrize(
    ("fmt", "text", "line", "what"),
    [
        ("user-item", "1 2\n1 x3\n", 2, "an integer item"),
        ("user-item", "u1 2\n", 1, "an integer user"),
        ("user-seq", "1 2 3\n2 4 b\n", 2, "an integer item id"),
        ("user-seq", "1 2 3\nB 4 5\n", 2, "an integer user id"),
        ("ml-100k-udata", "1\t2\t3\t4\n1\t2\t3\t4.5\n", 2, "an integer timestamp"),
        ("ml-1m-dat", "1::2::3::4\n1::2::3::4\n1::z::3::4\n", 3, "an integer item"),
        ("user-item", "1 2\n-1 3\n", None, None),  # negative ids are integers: accepted
    ],
)
def test_non_numeric_ids(tmp_path, fmt, text, line, what):
    path = write(tmp_path, "ids.txt", text)
    if what is None:
        assert load_dataset(path, fmt).num_interactions == 2
        return
    expect_error(path, what, line=line, format=fmt)


@pytest.mark.parametrize(
    ("name", "fmt", "text", "line", "match"),
    [
        ("a.inter", None, "user_id:token\trating:float\n1\t2\n", 1, "'item_id:token' column"),
        ("a.inter", None, "user_id\titem_id\n1\t2\n", 1, "typed RecBole header"),
        ("a.inter", None, "user_id:token\titem_id:token\ttimestamp:token\n1\t2\t3\n", 1, "'timestamp:float'"),
        ("a.inter", None, "user_id:token\titem_id:token\n1\t2\n3\n", 3, "2 fields like the header"),
        ("a.inter", None, "user_id:token\titem_id:token\tx:float\n1\t2\t5\n3\t4\n", 3, "3 fields"),
        ("a.inter", None, "user_id:token\titem_id:token\n1\t2\n\t4\n", 3, "a non-empty user id"),
        ("a.inter", None, "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tsoon\n", 2, "finite number"),
        ("a.inter", None, "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tnan\n", 2, "finite number"),
        ("r.csv", None, "customer,product\n1,2\n", 1, "naming the user column"),
        ("r.csv", None, "user,product\n1,2\n", 1, "naming the item column"),
        ("r.csv", None, "user,item,rating\n1,2,5\n1,2\n", 3, "3 fields"),
        ("r.csv", None, "user,item\n1,2\nfoo,bar,baz\n", 3, "2 fields"),
        ("u.data", None, "1\t2\t3\t4\n1\t2\t3\n", 2, "4 fields 'user\titem\trating\ttimestamp'"),
        ("u.data", None, "1\t2\t3\t4\n1\t2\tx\n", 2, "4 fields"),
        ("v.txt", "user-item", "1 2\n1 2 3\n", 2, "format='user-seq'"),
        ("v.txt", "user-item", "1 2\n1\n", 1 + 1, "2 fields 'user item'"),
        ("s.txt", "user-seq", "1 2 3\n\n4\n", 3, "at least one item id"),
        ("s.txt", "user-seq", "1 2 3\n\nx\n", 3, "at least one item id"),
        ("d.dat", "ml-1m-dat", "1::2::3::4\n1::2::3::4::5\n", 2, "4 fields"),
        ("d.dat", "ml-1m-dat", "1::2::3::4\n1:2::3::4::5\n", 2, "an integer user, found '1:2'"),
        ("bad.txt", None, b"1 2\n1 \xff\n", 2, "UTF-8 text"),
        ("bad.inter", None, b"user_id:token\titem_id:token\n1\t2\n1\t\xff\n", 3, "UTF-8 text"),
    ],
)
def test_malformed_lines(tmp_path, name, fmt, text, line, match):
    expect_error(write(tmp_path, name, text), match, line=line, format=fmt)


def test_undetectable_format(tmp_path):
    expect_error(write(tmp_path, "x.txt", "hello there\n"), "pass format=", line=1)
    expect_error(write(tmp_path, "x.txt", "1,2\n"), "header line naming the columns", line=1)
    expect_error(write(tmp_path, "x.txt", "1\t2\t3\n"), "3 unnamed columns", line=1)


def test_argument_errors(tmp_path):
    path = write(tmp_path, "v.txt", "1 2\n1 3\n")
    with pytest.raises(ValueError, match="format must be one of"):
        load_dataset(path, "json")
    with pytest.raises(ValueError, match="k_core must be a non-negative integer"):
        load_dataset(path, k_core=-1)
    with pytest.raises(ValueError, match="min_rating must be a number"):
        load_dataset(path, min_rating="4")
    with pytest.raises(DataError, match="min_rating=4 needs ratings"):
        load_dataset(path, min_rating=4)
    with pytest.raises(DataError, match="no interactions left .* k_core=3"):
        load_dataset(path, k_core=3)
    with pytest.raises(DataError, match="no such file: .*nothere.txt .*built-in: ml-100k"):
        load_dataset(tmp_path / "nothere.txt")
    with pytest.raises(DataError, match="is a directory without"):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match="does not apply to built-in dataset 'ml-100k'"):
        load_dataset("ml-100k", format="csv")


def test_duplicate_events_are_kept(tmp_path):
    ds = load_dataset(write(tmp_path, "u.data", "1\t5\t3\t10\n1\t5\t3\t10\n1\t5\t3\t10\n"))
    assert ds.num_interactions == 3 and ds.sequence(0).tolist() == [1, 1, 1]
    split = leave_one_out_split(ds)
    assert split.train.items.tolist() == [1] and split.valid.targets.tolist() == [1]


def test_users_with_one_or_two_interactions_only_train(tmp_path):
    ds = load_dataset(write(tmp_path, "v.txt", "1 5\n2 5\n2 6\n3 5\n3 6\n3 7\n"), "user-item")
    split = leave_one_out_split(ds)
    assert split.train.lengths.tolist() == [1, 2, 1]
    assert split.test.users.tolist() == [2] and split.valid.users.tolist() == [2]
    batches = list(training_batches(split.train, max_len=4, batch_size=8))
    assert len(batches) == 1 and batches[0].users.tolist() == [1]  # only user 2's row has a target
    assert batches[0].inputs.tolist() == [[0, 0, 0, 1]] and batches[0].targets.tolist() == [[0, 0, 0, 2]]


def test_only_users_with_one_interaction(tmp_path):
    ds = load_dataset(write(tmp_path, "v.txt", "1 5\n2 6\n"), "user-item")
    split = leave_one_out_split(ds)
    assert len(split.valid) == len(split.test) == 0
    assert list(training_batches(split.train, max_len=3, batch_size=2)) == []
    assert list(eval_batches(split.test, max_len=3, batch_size=2)) == []


def test_catalogue_of_one_item(tmp_path):
    ds = load_dataset(write(tmp_path, "s.txt", "1 42 42 42 42\n2 42\n"), "user-seq")
    assert ds.num_items == 1 and ds.item_ids.tolist() == ["<pad>", 42]
    assert ds.summary()["density"] == pytest.approx(5 / 2)  # repeats make density exceed 1
    split = leave_one_out_split(ds)
    (batch,) = list(training_batches(split.train, max_len=3, batch_size=4))
    assert batch.targets.tolist() == [[0, 0, 1]]
    (batch,) = list(eval_batches(split.test, max_len=3, batch_size=4))
    assert batch.inputs.tolist() == [[1, 1, 1]] and batch.targets.tolist() == [1]
    assert np.array_equal(split.test.users, [0])
