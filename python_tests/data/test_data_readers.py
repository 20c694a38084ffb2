"""Each reader on small hand-written files, through both the fast integer path and the general
line-by-line path, and format detection."""

import numpy as np
import pytest

from srkd_ext.data import load_dataset
from srkd_ext.data.readers import detect_format, read_log


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def sequences(ds):
    """{original user: [original items]} of a loaded dataset."""
    return {ds.user_ids[u].item(): [ds.item_ids[i] for i in ds.sequence(u)] for u in range(ds.num_users)}


ATOMIC = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n3\t10\t4\t200\n3\t11\t5\t100\n1\t10\t3\t50\n"


def test_atomic_orders_by_timestamp(tmp_path):
    ds = load_dataset(write(tmp_path, "x.inter", ATOMIC))
    assert ds.format == "atomic"
    assert sequences(ds) == {1: [10], 3: [11, 10]}
    assert ds.num_items == 2 and list(ds.item_ids) == ["<pad>", 10, 11]


def test_atomic_float_fields_and_extra_columns_use_general_reader(tmp_path):
    text = (
        "user_id:token\tname:token_seq\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\ta b\tx\t4.5\t10.5\n"
        "u1\tc\ty\t3.0\t10.25\n"
        "u2\td e f\tx\t1.0\t3\n"
    )
    ds = load_dataset(write(tmp_path, "x.inter", text))
    assert sequences(ds) == {"u1": ["y", "x"], "u2": ["x"]}
    assert ds.user_ids.dtype.kind == "U"
    ds = load_dataset(write(tmp_path, "y.inter", text), min_rating=3.5)
    assert sequences(ds) == {"u1": ["x"]}


def test_atomic_without_timestamp_keeps_file_order(tmp_path):
    ds = load_dataset(write(tmp_path, "x.inter", "item_id:token\tuser_id:token\n5\t1\n2\t1\n9\t1\n"))
    assert sequences(ds) == {1: [5, 2, 9]}


def test_timestamp_ties_keep_file_order(tmp_path):
    rows = "".join(f"1\t{item}\t3\t100\n" for item in (7, 3, 9, 1)) + "1\t5\t3\t50\n"
    ds = load_dataset(write(tmp_path, "u.data", rows))
    assert ds.format == "ml-100k-udata"
    assert sequences(ds) == {1: [5, 7, 3, 9, 1]}


def test_ids_with_leading_zeros_stay_strings(tmp_path):
    ds = load_dataset(write(tmp_path, "x.inter", "user_id:token\titem_id:token\n01\t007\n1\t7\n"))
    assert sorted(ds.user_ids.tolist()) == ["01", "1"]
    assert sorted(ds.item_ids[1:].tolist()) == ["007", "7"]


@pytest.mark.parametrize("separator", [" ", "\t", "  "])
def test_user_seq(tmp_path, separator):
    text = f"2{separator}5{separator}6{separator}5\n\n1{separator}9\r\n"
    ds = load_dataset(write(tmp_path, "seq.txt", text), "user-seq")
    assert sequences(ds) == {1: [9], 2: [5, 6, 5]}  # duplicates are kept


def test_user_seq_general_path_matches_fast_path(tmp_path):
    # A non-ASCII blank (U+3000) forces the general reader; it must give the same result.
    fast = load_dataset(write(tmp_path, "a.txt", "2 5 6\n1 9 8\n"), "user-seq")
    slow = load_dataset(write(tmp_path, "b.txt", "2 5\u30006\n1 9 8\n"), "user-seq")
    assert sequences(fast) == sequences(slow)


def test_user_item(tmp_path):
    ds = load_dataset(write(tmp_path, "v.txt", "4 1\n4 3\n2 3\n4 2\n"))
    assert ds.format == "user-item"
    assert sequences(ds) == {2: [3], 4: [1, 3, 2]}


def test_ml1m_dat(tmp_path):
    ds = load_dataset(write(tmp_path, "ratings.dat", "1::20::5::300\n1::10::4::200\n2::10::1::100\n"))
    assert ds.format == "ml-1m-dat"
    assert sequences(ds) == {1: [10, 20], 2: [10]}
    assert sequences(load_dataset(ds.path, min_rating=4)) == {1: [10, 20]}


def test_csv_with_string_ids_quotes_and_aliases(tmp_path):
    text = 'userId,movieId,rating,timestamp\n"a,b",m1,4,20\nc,m2,2,10\n"a,b",m2,5,10\n'
    ds = load_dataset(write(tmp_path, "r.csv", text))
    assert ds.format == "csv"
    assert sequences(ds) == {"a,b": ["m2", "m1"], "c": ["m2"]}


def test_tsv_numeric_fast_path(tmp_path):
    ds = load_dataset(write(tmp_path, "r.tsv", "item\tuser\n5\t1\n6\t1\n5\t2\n"))
    assert sequences(ds) == {1: [5, 6], 2: [5]}
    assert ds.user_ids.dtype == np.int64


def test_detection_without_file_name(tmp_path):
    assert detect_format(b"1\t2\t3\t4\n", None) == "ml-100k-udata"
    assert detect_format(b"1 2\n1 3\n", None) == "user-item"
    assert detect_format(b"1 2 3\n2 3\n", None) == "user-seq"
    assert detect_format(b"1::2::3::4\n", None) == "ml-1m-dat"
    assert detect_format(b"user_id:token\titem_id:token\n1\t2\n", None) == "atomic"
    assert detect_format(b"user,item\n1,2\n", None) == "csv"
    assert detect_format(b"user\titem\n1\t2\n", None) == "tsv"


def test_format_argument_overrides_detection(tmp_path):
    # Every line has two tokens, so detection says user-item; the user knows better.
    path = write(tmp_path, "seq.txt", "1 5\n2 6\n1 7\n")
    assert sequences(load_dataset(path)) == {1: [5, 7], 2: [6]}
    assert sequences(load_dataset(path, format="user-seq")) == {1: [5, 7], 2: [6]}


def test_read_log_keeps_file_order_and_duplicates():
    log = read_log(b"1 2\n1 2\n3 2\n", None, "user-item")
    assert log.users.tolist() == [1, 1, 3] and log.items.tolist() == [2, 2, 2]
    assert log.timestamps is None and log.ratings is None


def test_k_core_is_iterative(tmp_path):
    # Item 8 has one event: dropping it leaves user 3 with one event, and dropping user 3
    # is a second round that a single pass would miss.
    rows = ["1 9", "1 7", "2 9", "2 7", "3 8", "3 7"]
    path = write(tmp_path, "k.txt", "\n".join(rows) + "\n")
    ds = load_dataset(path, "user-item", k_core=2)
    assert sequences(ds) == {1: [9, 7], 2: [9, 7]}
    assert ds.summary()["removed_by_k_core"] == 2
    assert ds.summary()["raw_interactions"] == 6


@pytest.mark.parametrize("file_name", ["{dir}.inter", "u.data", "ratings.dat"])
def test_directory_layouts(tmp_path, file_name):
    folder = tmp_path / "ml-mini"
    folder.mkdir()
    text = {
        "{dir}.inter": "user_id:token\titem_id:token\n1\t2\n",
        "u.data": "1\t2\t5\t100\n",
        "ratings.dat": "1::2::5::100\n",
    }[file_name]
    write(folder, file_name.format(dir="ml-mini"), text)
    ds = load_dataset(folder)
    assert ds.name == "ml-mini" and ds.num_interactions == 1
