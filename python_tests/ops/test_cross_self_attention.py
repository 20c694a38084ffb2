"""The compiled cross_self_attention kernels (CPU here; CUDA in test_cross_self_attention_cuda.py)
against the reference and against two scaled_dot_product_attention calls."""

import pytest
import torch
from cross_self_attention_cases import make_inputs, make_left_padding, sdpa_pair, valid_query_rows

import srkd_ext
from srkd_ext.ops.cross_self_attention_reference import cross_self_attention_reference

pytestmark = pytest.mark.skipif(
    not srkd_ext.kernels_available(), reason="srkd_ext kernels not built (make build)"
)

TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
              torch.float16: dict(rtol=2e-3, atol=2e-3)}


def forward_backward(fn, inputs, grads, **kwargs):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    outputs = fn(*inputs, **kwargs)
    input_grads = torch.autograd.grad(outputs, inputs, grads)
    return list(outputs), list(input_grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [16, 32, 64])
@pytest.mark.parametrize("length", [1, 7, 50, 200])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_matches_reference_forward_and_backward(dtype, head_dim, length, padded, causal):
    batch, heads = 3, 2
    inputs = make_inputs(batch, heads, length, head_dim, dtype=dtype, seed=length * 100 + head_dim)
    mask = make_left_padding(batch, length, seed=length) if padded else None
    grads = make_inputs(batch, heads, length, head_dim, dtype=dtype, seed=7)[:2]
    out, grad = forward_backward(srkd_ext.cross_self_attention, inputs, grads, causal=causal,
                                 key_padding_mask=mask)
    # The reference in float32 from the same (rounded) inputs: what the kernel computes.
    ref_out, ref_grad = forward_backward(cross_self_attention_reference, [t.float() for t in inputs],
                                         [g.float() for g in grads], causal=causal, key_padding_mask=mask)
    tol = TOLERANCES[dtype]
    for got, want in zip(out + grad, ref_out + ref_grad, strict=True):
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want, **tol)


@pytest.mark.parametrize("head_dim", [16, 32, 64])
@pytest.mark.parametrize("length", [1, 7, 50, 200])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_matches_two_sdpa_calls(head_dim, length, padded, causal):
    batch, heads = 3, 2
    inputs = make_inputs(batch, heads, length, head_dim, seed=length + head_dim)
    mask = make_left_padding(batch, length, seed=length + 1) if padded else None
    grads = make_inputs(batch, heads, length, head_dim, seed=8)[:2]
    rows = valid_query_rows(batch, length, causal=causal, key_padding_mask=mask)
    # SDPA's output on rows without any key is undefined: give those rows no gradient.
    grads = [torch.where(rows, g, 0) for g in grads]
    out, grad = forward_backward(srkd_ext.cross_self_attention, inputs, grads, causal=causal,
                                 key_padding_mask=mask)
    ref_out, ref_grad = forward_backward(sdpa_pair, inputs, grads, causal=causal, key_padding_mask=mask)
    for got, want in zip(out, ref_out, strict=True):
        torch.testing.assert_close(torch.where(rows, got, 0), torch.where(rows, want, 0), rtol=1e-5, atol=1e-5)
    for got, want in zip(grad, ref_grad, strict=True):
        torch.testing.assert_close(got, torch.nan_to_num(want), rtol=1e-5, atol=1e-5)


def test_float16_matches_reference():
    inputs = make_inputs(2, 2, 33, 24, dtype=torch.float16, seed=11)
    grads = make_inputs(2, 2, 33, 24, dtype=torch.float16, seed=12)[:2]
    mask = make_left_padding(2, 33, seed=3)
    out, grad = forward_backward(srkd_ext.cross_self_attention, inputs, grads, key_padding_mask=mask)
    ref_out, ref_grad = forward_backward(cross_self_attention_reference, [t.float() for t in inputs],
                                         [g.float() for g in grads], key_padding_mask=mask)
    for got, want in zip(out + grad, ref_out + ref_grad, strict=True):
        assert got.dtype == torch.float16
        torch.testing.assert_close(got.float(), want, **TOLERANCES[torch.float16])


@pytest.mark.parametrize("shape", [(1, 1, 300, 24), (1, 2, 129, 8), (2, 1, 64, 128)])
@pytest.mark.parametrize("causal", [True, False])
def test_few_slices_and_block_edges(shape, causal):
    """B x H small (the backward splits a slice's query blocks over tasks), lengths just past a
    block, odd head dims (padded inside the kernel), and the largest head dim."""
    inputs = make_inputs(*shape, seed=sum(shape))
    grads = make_inputs(*shape, seed=5)[:2]
    mask = make_left_padding(shape[0], shape[2], seed=2) if shape[0] > 1 else None
    out, grad = forward_backward(srkd_ext.cross_self_attention, inputs, grads, causal=causal,
                                 key_padding_mask=mask, scale=0.2)
    ref_out, ref_grad = forward_backward(cross_self_attention_reference, inputs, grads, causal=causal,
                                         key_padding_mask=mask, scale=0.2)
    for got, want in zip(out + grad, ref_out + ref_grad, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-5)


def test_strided_inputs():
    """[B, L, H, D] tensors viewed as [B, H, L, D] (what a model's reshape gives), and a column
    stride, run without a copy and give the same result."""
    gen = torch.Generator().manual_seed(0)
    blhd = [torch.randn(2, 20, 3, 32, generator=gen).transpose(1, 2) for _ in range(6)]
    every_other = [torch.randn(2, 3, 20, 32, generator=gen)[..., ::2] for _ in range(6)]
    for inputs in (blhd, every_other):
        grads = [torch.randn(inputs[0].shape, generator=gen) for _ in range(2)]
        out, grad = forward_backward(srkd_ext.cross_self_attention, inputs, grads)
        ref_out, ref_grad = forward_backward(cross_self_attention_reference,
                                             [t.contiguous() for t in inputs], grads)
        for got, want in zip(out + grad, ref_out + ref_grad, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    for causal, padded in [(True, True), (False, True), (True, False)]:
        inputs = make_inputs(2, 1, 5, 3, dtype=torch.float64, seed=int(causal) + 2 * int(padded),
                             requires_grad=True)
        mask = torch.tensor([[True, True, False, False, False], [False] * 5]) if padded else None

        def fn(*qkv, causal=causal, mask=mask):
            return srkd_ext.cross_self_attention(*qkv, causal=causal, key_padding_mask=mask, scale=0.8)

        assert torch.autograd.gradcheck(fn, inputs)


def test_gradient_of_one_output_only():
    inputs = make_inputs(2, 2, 9, 8, dtype=torch.float64, seed=13, requires_grad=True)
    o_a, _ = srkd_ext.cross_self_attention(*inputs)
    o_a.sum().backward()
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    cross_self_attention_reference(*ref_inputs)[0].sum().backward()
    for t, r in zip(inputs, ref_inputs, strict=True):
        torch.testing.assert_close(t.grad, r.grad if r.grad is not None else torch.zeros_like(t))
    # o_a depends on q_a, k_b, v_b only.
    assert (inputs[1].grad == 0).all() and (inputs[2].grad == 0).all() and (inputs[3].grad == 0).all()


def test_opcheck():
    # One dtype: opcheck's fake-tensor and AOT-dispatch checks are about the registration, not
    # the arithmetic (the comparisons above cover the dtypes), and each call costs seconds.
    inputs = make_inputs(2, 2, 6, 8, seed=21, requires_grad=True)
    mask = make_left_padding(2, 6, seed=5)
    torch.library.opcheck(torch.ops.srkd_ext.cross_self_attention_fwd, (*inputs, mask, True, 0.35))
    torch.library.opcheck(torch.ops.srkd_ext.cross_self_attention_fwd, (*inputs, None, False, 0.35),
                          test_utils=("test_schema", "test_faketensor"))
    plain = [t.detach() for t in inputs]
    o_a, o_b, lse = torch.ops.srkd_ext.cross_self_attention_fwd(*plain, mask, True, 0.35)
    torch.library.opcheck(torch.ops.srkd_ext.cross_self_attention_bwd,
                          (torch.ones_like(o_a), torch.ones_like(o_b), *plain, o_a, o_b, lse, mask, True, 0.35))


def test_torch_compile_fullgraph():
    def step(q_a, k_a, v_a, q_b, k_b, v_b, mask):
        o_a, o_b = srkd_ext.cross_self_attention(q_a, k_a, v_a, q_b, k_b, v_b, key_padding_mask=mask)
        return (o_a * 2 + o_b).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    inputs = make_inputs(2, 2, 10, 16, seed=31, requires_grad=True)
    mask = make_left_padding(2, 10, seed=6)
    loss = compiled(*inputs, mask)
    loss.backward()
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    ref_loss = step(*ref_inputs, mask)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    for t, r in zip(inputs, ref_inputs, strict=True):
        torch.testing.assert_close(t.grad, r.grad)


@pytest.mark.parametrize("t", [0, 17, 48])
def test_causality(t):
    """Perturbing every input after position t changes no output, and no gradient of an output,
    at positions <= t."""
    inputs = make_inputs(2, 2, 50, 16, seed=41)
    mask = make_left_padding(2, 50, seed=7)
    out = srkd_ext.cross_self_attention(*inputs, key_padding_mask=mask)
    perturbed = [x.clone() for x in inputs]
    for x in perturbed:
        x[:, :, t + 1:] += torch.randn_like(x[:, :, t + 1:]) * 3
    out_perturbed = srkd_ext.cross_self_attention(*perturbed, key_padding_mask=mask)
    for o, p in zip(out, out_perturbed, strict=True):
        assert torch.equal(o[:, :, : t + 1], p[:, :, : t + 1])
        if t + 1 < 50:
            assert not torch.equal(o[:, :, t + 1:], p[:, :, t + 1:])
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    o_a, o_b = srkd_ext.cross_self_attention(*leaves, key_padding_mask=mask)
    (o_a[:, :, : t + 1].sum() + o_b[:, :, : t + 1].sum()).backward()
    for x in leaves:
        assert (x.grad[:, :, t + 1:] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_fully_masked_rows_zero_output_and_zero_grad(dtype):
    inputs = make_inputs(3, 2, 70, 16, dtype=dtype, seed=51, requires_grad=True)
    mask = torch.zeros(3, 70, dtype=torch.bool)
    mask[0] = True  # every key is padding
    mask[1, :66] = True  # left padding past the first query block
    for causal in (True, False):
        for t in inputs:
            t.grad = None
        o_a, o_b = srkd_ext.cross_self_attention(*inputs, causal=causal, key_padding_mask=mask)
        (o_a.float().square().sum() + o_b.float().square().sum()).backward()
        for o in (o_a, o_b):
            assert torch.isfinite(o).all()
            assert (o[0] == 0).all()
            if causal:
                assert (o[1, :, :66] == 0).all()
            assert (o[1, :, 66:] != 0).any()
        for t in inputs:
            assert torch.isfinite(t.grad).all()
            assert (t.grad[0] == 0).all()
        for q in (inputs[0], inputs[3]):
            if causal:
                assert (q.grad[1, :, :66] == 0).all()
        for k_or_v in inputs[1:3] + inputs[4:6]:
            assert (k_or_v.grad[1, :, :66] == 0).all()  # padding keys get no gradient


def test_no_length_squared_tensor_saved_for_backward():
    """Forward keeps only the row log-sum-exp: every tensor autograd saves is at most
    [B, H, L, D] or [2, B, H, L], never [B, H, L, L]."""
    batch, heads, length, head_dim = 2, 2, 64, 8
    inputs = make_inputs(batch, heads, length, head_dim, seed=61, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        o_a, o_b = srkd_ext.cross_self_attention(*inputs)
    assert saved, "nothing saved: the autograd registration is missing"
    assert (2, batch, heads, length) in saved
    for shape in saved:
        assert shape in {(batch, heads, length, head_dim), (2, batch, heads, length)}, shape
    (o_a.sum() + o_b.sum()).backward()
