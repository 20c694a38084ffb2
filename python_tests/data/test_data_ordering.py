"""The O(n) factorize and radix ordering against numpy's sorts, on the awkward cases."""

import numpy as np
import pytest

from srkd_ext.data.sequences import _factorize, chronological_order


def reference_order(user_index, timestamps):
    order = np.argsort(timestamps, kind="stable") if timestamps is not None else np.arange(user_index.size)
    return order[np.argsort(user_index[order], kind="stable")]


@pytest.mark.parametrize(
    "make_timestamps",
    [
        lambda rng, n: None,
        lambda rng, n: rng.integers(0, 5, n).astype(float),  # many ties
        lambda rng, n: rng.integers(-(2**40), 2**40, n).astype(float),  # negative, > 32 bits
        lambda rng, n: rng.random(n) * 1e9,  # fractional: comparison-sort branch
        lambda rng, n: np.full(n, 7.0),
    ],
)
@pytest.mark.parametrize("num_users", [1, 3, 70_000])  # 70,000 needs two radix passes
def test_chronological_order_matches_stable_argsort(make_timestamps, num_users):
    rng = np.random.default_rng(num_users)
    n = 5_000
    user_index = rng.integers(0, num_users, n)
    timestamps = make_timestamps(rng, n)
    assert np.array_equal(
        chronological_order(user_index, timestamps), reference_order(user_index, timestamps)
    )


@pytest.mark.parametrize(
    "ids",
    [
        np.array([5, -3, 5, 10**12, 0, -3]),  # wide range: np.unique branch
        np.array([7, 3, 3, 9, 7]),  # small range: presence table
        np.array([b"b", b"a", b"ab", b"a", b"zzzzzzzz"]),  # short bytes as integers
        np.array([b"a-very-long-identifier", b"b", b"a-very-long-identifier"]),
        np.array(["x", "é", "x"]),
    ],
)
def test_factorize_matches_unique(ids):
    distinct, index = _factorize(ids)
    expected_distinct, expected_index = np.unique(ids, return_inverse=True)
    assert distinct.tolist() == expected_distinct.tolist()
    assert np.array_equal(index, expected_index)
    assert np.array_equal(distinct[index], ids)
