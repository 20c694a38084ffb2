"""The CUDA cross_self_attention kernels against the CPU reference on fresh random inputs.
Skipped without a GPU (conftest marks `cuda` tests); run on a GPU machine."""

import pytest
import torch
from cross_self_attention_cases import make_inputs, make_left_padding

import srkd_ext
from srkd_ext.ops.cross_self_attention_reference import cross_self_attention_reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not srkd_ext.cuda_kernels_available(), reason="srkd_ext built without CUDA kernels"),
]

# (outputs, gradients) tolerances per dtype, against the float64 reference of the rounded inputs.
TOLERANCES = {
    torch.float32: (dict(rtol=1e-5, atol=1e-5), dict(rtol=1e-5, atol=1e-4)),
    torch.float16: (dict(rtol=2e-3, atol=2e-3), dict(rtol=5e-3, atol=5e-3)),
    torch.bfloat16: (dict(rtol=2e-2, atol=2e-2), dict(rtol=2e-2, atol=3e-2)),
}


def cuda_vs_reference(shape, dtype, *, causal, padded, scale=None, seed=0):
    batch, _, length, _ = shape
    inputs = make_inputs(*shape, dtype=dtype, seed=seed)
    grads = make_inputs(*shape, dtype=dtype, seed=seed + 1)[:2]
    mask = make_left_padding(batch, length, seed=seed) if padded else None

    leaves = [t.cuda().requires_grad_() for t in inputs]
    outs = srkd_ext.cross_self_attention(*leaves, causal=causal, scale=scale,
                                         key_padding_mask=None if mask is None else mask.cuda())
    in_grads = torch.autograd.grad(outs, leaves, [g.cuda() for g in grads])

    ref_leaves = [t.double().requires_grad_() for t in inputs]
    ref_outs = cross_self_attention_reference(*ref_leaves, causal=causal, key_padding_mask=mask, scale=scale)
    ref_grads = torch.autograd.grad(ref_outs, ref_leaves, [g.double() for g in grads])

    out_tol, grad_tol = TOLERANCES[dtype]
    for got, want in zip(outs, ref_outs, strict=True):
        assert got.dtype == dtype and got.is_cuda
        torch.testing.assert_close(got.cpu().double(), want, **out_tol)
    for got, want in zip(in_grads, ref_grads, strict=True):
        assert got.dtype == dtype and torch.isfinite(got).all()
        torch.testing.assert_close(got.cpu().double(), want, **grad_tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [16, 32, 64, 128])
@pytest.mark.parametrize("length", [1, 7, 50, 200])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_cuda_matches_reference(dtype, head_dim, length, padded, causal):
    cuda_vs_reference((3, 2, length, head_dim), dtype, causal=causal, padded=padded, seed=length + head_dim)


@pytest.mark.parametrize("shape", [(2, 2, 512, 32), (1, 1, 513, 128), (2, 3, 97, 5), (4, 1, 65, 100)])
@pytest.mark.parametrize("causal", [True, False])
def test_cuda_long_sequences_and_odd_head_dims(shape, causal):
    cuda_vs_reference(shape, torch.float32, causal=causal, padded=shape[0] > 1, scale=0.3, seed=shape[2])


def test_cuda_matches_cpu_kernel():
    inputs = make_inputs(4, 2, 150, 32, seed=3)
    mask = make_left_padding(4, 150, seed=3)
    cpu = srkd_ext.cross_self_attention(*inputs, key_padding_mask=mask)
    gpu = srkd_ext.cross_self_attention(*[t.cuda() for t in inputs], key_padding_mask=mask.cuda())
    for c, g in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(g.cpu(), c, rtol=1e-5, atol=1e-5)


def test_cuda_fully_masked_rows_zero_output_and_grad():
    inputs = [t.cuda().requires_grad_() for t in make_inputs(2, 2, 80, 64, seed=9)]
    mask = torch.zeros(2, 80, dtype=torch.bool, device="cuda")
    mask[0] = True
    mask[1, :70] = True
    o_a, o_b = srkd_ext.cross_self_attention(*inputs, key_padding_mask=mask)
    (o_a.square().sum() + o_b.square().sum()).backward()
    for o in (o_a, o_b):
        assert torch.isfinite(o).all() and (o[0] == 0).all() and (o[1, :, :70] == 0).all()
    for t in inputs:
        assert torch.isfinite(t.grad).all() and (t.grad[0] == 0).all()


def test_cuda_causality():
    inputs = [t.cuda() for t in make_inputs(2, 2, 100, 32, seed=10)]
    out = srkd_ext.cross_self_attention(*inputs)
    perturbed = [x.clone() for x in inputs]
    for x in perturbed:
        x[:, :, 41:] += 5
    out_perturbed = srkd_ext.cross_self_attention(*perturbed)
    for o, p in zip(out, out_perturbed, strict=True):
        assert torch.equal(o[:, :, :41], p[:, :, :41])


def test_cuda_opcheck():
    inputs = [t.cuda() for t in make_inputs(2, 2, 40, 32, seed=11)]
    mask = make_left_padding(2, 40, seed=4).cuda()
    torch.library.opcheck(torch.ops.srkd_ext.cross_self_attention_fwd, (*inputs, mask, True, 0.25))
    o_a, o_b, lse = torch.ops.srkd_ext.cross_self_attention_fwd(*inputs, mask, True, 0.25)
    torch.library.opcheck(torch.ops.srkd_ext.cross_self_attention_bwd,
                          (torch.ones_like(o_a), torch.ones_like(o_b), *inputs, o_a, o_b, lse, mask, True, 0.25))


def test_cuda_float64_runs_the_reference():
    inputs = [t.cuda() for t in make_inputs(2, 1, 9, 8, dtype=torch.float64, seed=12)]
    got = srkd_ext.cross_self_attention(*inputs)
    want = cross_self_attention_reference(*inputs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    with pytest.raises(RuntimeError, match="float64 is not supported on CUDA"):
        torch.ops.srkd_ext.cross_self_attention_fwd(*inputs, None, True, 0.5)
