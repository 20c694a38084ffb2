"""The compiled fused_kd_loss (CPU kernel) against the float64 reference, on fresh random
inputs, for every option and the edge cases of the issue; autograd, opcheck, torch.compile."""

import itertools
import math

import pytest
import torch
from fused_kd_loss_cases import as_cache, check_against_reference, random_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

import srkd_ext
from srkd_ext import fused_kd_loss

pytestmark = pytest.mark.skipif(not srkd_ext.kernels_available(), reason="compiled kernels not built")

FORMS = ("tensor", "list", "cache")


def teachers_in_form(z, form, cache_k=None):
    if form == "tensor":
        return z
    if form == "list":
        return list(z.unbind(0))
    return as_cache(z, cache_k or z.shape[-1])


OPTION_GRID = list(itertools.product([1, 5], [1, 4, None], [None, 1, 3], [None, "given", "confidence"]))


@pytest.mark.parametrize("T,top_k,gate_rank,weights", OPTION_GRID)
def test_matches_reference_for_every_option(T, top_k, gate_rank, weights):
    i = OPTION_GRID.index((T, top_k, gate_rank, weights))
    form = FORMS[i % 3]
    alpha = (0.0, 0.5, 1.0, 0.3)[i % 4]
    tau = (1.0, 2.0, 0.7, 3.0)[(i // 4) % 4]
    s, z, y = random_inputs(6, 37, T, seed=i, ties=i % 2 == 0)
    y[2] = -100
    w = [float(t + 1) for t in range(T)] if weights == "given" else weights
    teachers = teachers_in_form(z, form, cache_k=12)
    if form == "cache" and gate_rank is not None and gate_rank > 12:
        pytest.skip("gate_rank beyond the cache is an error")
    check_against_reference(s, teachers, y, seed=i, temperature=tau, top_k=top_k, gate_rank=gate_rank,
                            teacher_weights=w, alpha=alpha)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("form", FORMS)
def test_reduced_and_double_precision(dtype, form):
    s, z, y = random_inputs(5, 300, 3, dtype=dtype, seed=7)
    check_against_reference(s, teachers_in_form(z, form, 40), y, temperature=2.0, top_k=10, gate_rank=20,
                            teacher_weights="confidence", alpha=0.5)


@pytest.mark.parametrize("N,top_k", [(5000, 7), (5000, 1), (3000, 800), (2500, 2499), (4099, None)])
def test_long_rows_selection_paths(N, top_k):
    # heap with vectorised skip (k << N), partition (k ~ N / 4 and k = N - 1), all items; N spans
    # several student blocks with a tail.
    s, z, y = random_inputs(3, N, 2, seed=N, ties=True)
    check_against_reference(s, z, y, temperature=2.0, top_k=top_k, gate_rank=50, alpha=0.4)


def test_single_item_catalogue():
    s, z, y = random_inputs(4, 1, 2, seed=1)
    check_against_reference(s, z, y, top_k=3, gate_rank=1, teacher_weights="confidence")


def test_huge_logits():
    s, z, y = random_inputs(4, 50, 3, seed=2, scale=1e4)
    check_against_reference(s, z, y, temperature=2.0, top_k=5, teacher_weights="confidence")
    check_against_reference(s, z, y, temperature=0.5, top_k=None, gate_rank=10)


def test_masked_items_minus_inf():
    s, z, y = random_inputs(4, 40, 3, seed=3)
    z[:, :, 30:] = -math.inf  # teachers mask the last items
    s[:, 35:] = -math.inf  # the student masks some of them too: no teacher mass there
    s[:, :2] = -math.inf  # and two items the teachers could select when k is large
    z[:, :, :2] = -math.inf
    y = torch.tensor([3, 10, 20, 29])
    check_against_reference(s, z, y, temperature=2.0, top_k=5, gate_rank=8)
    check_against_reference(s, z, y, temperature=1.0, top_k=None, teacher_weights="confidence")
    # a whole masked student block (N > 2048 items, the first block all -inf)
    s2, z2, y2 = random_inputs(2, 4200, 2, seed=4)
    s2[:, :2048] = -math.inf
    z2[:, :, :2048] = -math.inf
    y2[:] = 3000
    check_against_reference(s2, z2, y2, temperature=2.0, top_k=9)


def test_gate_can_remove_every_teacher():
    s, z, y = random_inputs(5, 30, 3, seed=5)
    y = z[0].argmin(1)  # rank N in teacher 0; likely far down in the others too
    z[1:] = z[0]
    rows, stats = fused_kd_loss(s, z, y, gate_rank=1, alpha=0.25, reduction="none", return_stats=True)
    assert stats.active_fraction.eq(0).all() and stats.kd == 0
    ce = -torch.log_softmax(s, 1).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(rows, 0.25 * ce)
    check_against_reference(s, z, y, gate_rank=1, alpha=0.25, top_k=4)


def test_all_rows_ignored_and_empty_batch():
    s, z, y = random_inputs(4, 20, 2, seed=6)
    y[:] = -100
    for reduction in ("mean", "sum"):
        s_k = s.clone().requires_grad_()
        loss = fused_kd_loss(s_k, z, y, top_k=3, reduction=reduction)
        loss.backward()
        assert loss.item() == 0 and not s_k.grad.any()
    assert not fused_kd_loss(s, z, y, reduction="none").any()
    s0 = torch.zeros(0, 20, requires_grad=True)
    loss = fused_kd_loss(s0, torch.zeros(2, 0, 20), torch.zeros(0, dtype=torch.long), top_k=3)
    loss.backward()
    assert loss.item() == 0 and s0.grad.shape == (0, 20)
    assert fused_kd_loss(s0, torch.zeros(2, 0, 20), torch.zeros(0, dtype=torch.long), reduction="none").shape == (0,)


@pytest.mark.parametrize("form", FORMS)
def test_nan_logits_make_their_row_nan(form):
    s, z, y = random_inputs(5, 64, 2, seed=8)
    s[1, 7] = math.nan
    z[1, 3, 60] = math.nan  # teacher 1, row 3; with a cache of the top 64 it is cached too
    s[4, 0] = math.nan  # row 4 is ignored: never read
    y[4] = -100
    s_k = s.clone().requires_grad_()
    rows = fused_kd_loss(s_k, teachers_in_form(z, form), y, top_k=5, gate_rank=2, reduction="none")
    rows.sum().backward()
    assert torch.isnan(rows[1]) and torch.isnan(rows[3])
    assert torch.isfinite(rows[[0, 2]]).all() and rows[4] == 0
    assert torch.isnan(s_k.grad[[1, 3]]).all() and torch.isfinite(s_k.grad[[0, 2, 4]]).all()
    assert not s_k.grad[4].any()
    assert torch.isnan(fused_kd_loss(s, z, y, top_k=5))


def test_gradcheck_float64():
    s, z, y = random_inputs(3, 9, 2, dtype=torch.float64, seed=9)
    y[1] = -100
    s.requires_grad_()
    for kw in [dict(reduction="none", top_k=3, gate_rank=5, temperature=2.0),
               dict(reduction="mean", teacher_weights="confidence", temperature=0.7),
               dict(reduction="sum", top_k=2, teacher_weights=[1.0, 0.5], alpha=0.0)]:
        assert torch.autograd.gradcheck(lambda x, kw=kw: fused_kd_loss(x, z, y, **kw), (s,))
        assert torch.autograd.gradcheck(lambda x, kw=kw: fused_kd_loss(x, as_cache(z, 5), y, **kw), (s,))


def test_double_backward_raises():
    s, z, y = random_inputs(3, 9, 2, seed=10)
    s.requires_grad_()
    (g,) = torch.autograd.grad(fused_kd_loss(s, z, y, top_k=3), s, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.pow(2).sum().backward()


def test_opcheck():
    s, z, y = random_inputs(4, 12, 3, seed=11)
    s.requires_grad_()
    y[0] = -100
    args = (s, list(z.unbind(0)), y, 2.0, 4, 6, [1.0, 2.0, 0.5], False, 0.5, -100, "none")
    torch.library.opcheck(torch.ops.srkd_ext.fused_kd_loss_dense.default, args)
    cache = as_cache(z, 6)
    args = (s, cache.indices, cache.logits, y, 1.5, 3, None, None, True, 0.3, -100, "mean")
    torch.library.opcheck(torch.ops.srkd_ext.fused_kd_loss_cached.default, args)


def test_torch_compile_fullgraph_same_loss_and_gradient():
    s, z, y = random_inputs(4, 40, 3, seed=12)
    y[1] = -100
    cache = as_cache(z, 8)

    def step(x, teachers):
        loss, stats = fused_kd_loss(x, teachers, y, temperature=2.0, top_k=5, gate_rank=6,
                                    teacher_weights=[1.0, 2.0, 1.0], return_stats=True)
        return loss, stats.kd

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for teachers in (z, list(z.unbind(0)), cache):
        a = s.clone().requires_grad_()
        b = s.clone().requires_grad_()
        loss_e, kd_e = step(a, teachers)
        loss_c, kd_c = compiled(b, teachers)
        loss_e.backward()
        loss_c.backward()
        torch.testing.assert_close(loss_c, loss_e)
        torch.testing.assert_close(kd_c, kd_e)
        torch.testing.assert_close(b.grad, a.grad)


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(0, 6), N=st.integers(1, 70), T=st.integers(1, 4), seed=st.integers(0, 2**16),
    top_k=st.one_of(st.none(), st.integers(1, 80)), gate=st.one_of(st.none(), st.integers(1, 80)),
    weights=st.sampled_from([None, "given", "confidence"]), alpha=st.floats(0, 1),
    tau=st.sampled_from([0.5, 1.0, 2.0, 3.0, 1.7]), form=st.sampled_from(FORMS), ties=st.booleans(),
    n_ignored=st.integers(0, 6),
)
def test_property_matches_reference(B, N, T, seed, top_k, gate, weights, alpha, tau, form, ties, n_ignored):
    s, z, y = random_inputs(B, N, T, seed=seed, ties=ties)
    y[:n_ignored] = -100
    cache_k = max(1, N // 2)
    if form == "cache" and gate is not None:
        gate = min(gate, cache_k)
    w = [0.5 + t for t in range(T)] if weights == "given" else weights
    check_against_reference(s, teachers_in_form(z, form, cache_k), y, seed=seed, temperature=tau, top_k=top_k,
                            gate_rank=gate, teacher_weights=w, alpha=alpha)


def test_adversarial_rows_sorted_constant_and_signed_zeros():
    # Ascending rows defeat the group-maxima bound (every item becomes a candidate); a constant
    # row and a row of +0/-0 are all ties, broken by index.
    s, z, y = random_inputs(4, 3000, 2, seed=13)
    z = torch.sort(z, dim=-1).values
    z[1, 0] = 0.0
    z[1, 1, ::2] = -0.0
    for k in (5, 50, 180):
        check_against_reference(s, z, y, temperature=2.0, top_k=k, gate_rank=100)
