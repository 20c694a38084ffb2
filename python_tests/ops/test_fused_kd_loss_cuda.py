"""The CUDA kernels of fused_kd_loss against the float64 CPU reference on fresh random inputs
(skipped without a GPU; run by benchmarks/gpu_check.sh on a GPU machine)."""

import itertools
import math

import pytest
import torch
from fused_kd_loss_cases import as_cache, check_against_reference, random_inputs

import srkd_ext
from srkd_ext import TeacherTopK, fused_kd_loss

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not (torch.cuda.is_available() and srkd_ext.cuda_kernels_available()),
                       reason="needs a GPU and srkd_ext built with CUDA kernels"),
]

DEV = "cuda"
FORMS = ("tensor", "list", "cache")


def teachers_in_form(z, form, cache_k=None):
    if form == "tensor":
        return z
    if form == "list":
        return list(z.unbind(0))
    cache = as_cache(z.cpu(), cache_k or z.shape[-1])
    return TeacherTopK(cache.indices.to(DEV), cache.logits.to(DEV))


GRID = list(itertools.product([1, 5], [1, 4, None], [None, 1, 3], [None, "given", "confidence"]))


@pytest.mark.parametrize("T,top_k,gate_rank,weights", GRID)
def test_cuda_matches_reference_for_every_option(T, top_k, gate_rank, weights):
    i = GRID.index((T, top_k, gate_rank, weights))
    form = FORMS[i % 3]
    s, z, y = random_inputs(6, 37, T, device=DEV, seed=100 + i, ties=i % 2 == 0)
    y[2] = -100
    w = [float(t + 1) for t in range(T)] if weights == "given" else weights
    check_against_reference(s, teachers_in_form(z, form, 12), y, seed=i, temperature=(1.0, 2.0, 0.7, 3.0)[i % 4],
                            top_k=top_k, gate_rank=gate_rank, teacher_weights=w, alpha=(0.0, 0.5, 1.0, 0.3)[i % 4])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("form", FORMS)
def test_cuda_dtypes(dtype, form):
    s, z, y = random_inputs(8, 1001, 3, dtype=dtype, device=DEV, seed=7)
    check_against_reference(s, teachers_in_form(z, form, 64), y, temperature=2.0, top_k=10, gate_rank=30,
                            teacher_weights="confidence", alpha=0.5)


@pytest.mark.parametrize("N,top_k,T", [(12101, 50, 3), (200003, 50, 3), (1_000_000, 100, 2), (5000, 2000, 3),
                                       (4099, None, 2), (3000, 2999, 2)])
def test_cuda_large_rows_and_both_q_paths(N, top_k, T):
    # radix select on long rows (1M items), the per-item q path (T * k beyond the shared list),
    # all items, k = N - 1; ties everywhere
    s, z, y = random_inputs(4, N, T, device=DEV, seed=N, ties=True)
    check_against_reference(s, z, y, temperature=2.0, top_k=top_k, gate_rank=64, alpha=0.4)


def test_cuda_ties_sorted_rows_signed_zeros_and_huge_logits():
    s, z, y = random_inputs(4, 3000, 2, device=DEV, seed=13)
    z = torch.sort(z, dim=-1).values
    z[1, 0] = 0.0
    z[1, 1, ::2] = -0.0
    for k in (5, 50, 180):
        check_against_reference(s, z, y, temperature=2.0, top_k=k, gate_rank=100)
    s, z, y = random_inputs(4, 50, 3, device=DEV, seed=2, scale=1e4)
    check_against_reference(s, z, y, temperature=2.0, top_k=5, teacher_weights="confidence")
    s, z, y = random_inputs(4, 1, 2, device=DEV, seed=1)
    check_against_reference(s, z, y, top_k=3, gate_rank=1)


def test_cuda_masked_items():
    s, z, y = random_inputs(4, 4200, 3, device=DEV, seed=3)
    z[:, :, 3000:] = -math.inf
    s[:, 3500:] = -math.inf
    y = torch.tensor([3, 10, 2000, 2999], device=DEV)
    check_against_reference(s, z, y, temperature=2.0, top_k=5, gate_rank=8)
    check_against_reference(s, z, y, temperature=1.0, top_k=None, teacher_weights="confidence")


def test_cuda_nan_ignored_and_empty():
    s, z, y = random_inputs(5, 640, 2, device=DEV, seed=8)
    s[1, 7] = math.nan
    z[1, 3, 600] = math.nan
    s[4, 0] = math.nan
    y[4] = -100
    s_k = s.clone().requires_grad_()
    rows = fused_kd_loss(s_k, z, y, top_k=5, gate_rank=2, reduction="none")
    rows.sum().backward()
    assert torch.isnan(rows[1]) and torch.isnan(rows[3]) and torch.isfinite(rows[[0, 2]]).all() and rows[4] == 0
    assert torch.isnan(s_k.grad[[1, 3]]).all() and not s_k.grad[4].any()
    y[:] = -100
    s_k = s.clone().requires_grad_()
    loss = fused_kd_loss(s_k, z, y, top_k=5)
    loss.backward()
    assert loss.item() == 0 and not s_k.grad.any()
    s0 = torch.zeros(0, 20, device=DEV, requires_grad=True)
    loss = fused_kd_loss(s0, torch.zeros(2, 0, 20, device=DEV), torch.zeros(0, dtype=torch.long, device=DEV))
    loss.backward()
    assert loss.item() == 0


def test_cuda_bad_targets_and_cache_indices_raise():
    s, z, y = random_inputs(3, 6, 2, device=DEV, seed=0)
    y[1] = 6
    with pytest.raises(RuntimeError, match="target"):
        fused_kd_loss(s, z, y, top_k=2)
    y[1] = 0
    idx = torch.tensor([[0, 1], [2, 3], [4, 4]], device=DEV).expand(2, 3, 2).contiguous()
    with pytest.raises(RuntimeError, match="repeat"):
        fused_kd_loss(s, TeacherTopK(idx, torch.randn(2, 3, 2, device=DEV)), y)
    idx = torch.tensor([[0, 1], [2, 3], [4, 9]], device=DEV).expand(2, 3, 2).contiguous()
    with pytest.raises(RuntimeError, match="indices"):
        fused_kd_loss(s, TeacherTopK(idx, torch.randn(2, 3, 2, device=DEV)), y)


def test_cuda_gradcheck_opcheck_compile():
    s, z, y = random_inputs(3, 9, 2, dtype=torch.float64, device=DEV, seed=9)
    y[1] = -100
    s.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: fused_kd_loss(x, z, y, top_k=3, gate_rank=5, temperature=2.0,
                                                            reduction="none"), (s,))
    cache = as_cache(z.cpu(), 5)
    cache = TeacherTopK(cache.indices.to(DEV), cache.logits.to(DEV))
    assert torch.autograd.gradcheck(lambda x: fused_kd_loss(x, cache, y, teacher_weights="confidence"), (s,))
    s32, z32, y32 = random_inputs(4, 40, 3, device=DEV, seed=11)
    s32.requires_grad_()
    torch.library.opcheck(torch.ops.srkd_ext.fused_kd_loss_dense.default,
                          (s32, list(z32.unbind(0)), y32, 2.0, 4, 6, [1.0, 2.0, 0.5], False, 0.5, -100, "none"))
    step = torch.compile(lambda x: fused_kd_loss(x, z32, y32, temperature=2.0, top_k=5), fullgraph=True)
    a = s32.detach().clone().requires_grad_()
    b = s32.detach().clone().requires_grad_()
    fused_kd_loss(a, z32, y32, temperature=2.0, top_k=5).backward()
    step(b).backward()
    torch.testing.assert_close(b.grad, a.grad)


def test_cuda_matches_cpu_kernel_on_a_training_shape():
    s, z, y = random_inputs(256, 12101, 3, device=DEV, seed=21)
    y[::7] = -100
    kw = dict(temperature=2.0, top_k=50, gate_rank=200, alpha=0.5, return_stats=True)
    loss_g, stats_g = fused_kd_loss(s, z, y, **kw)
    loss_c, stats_c = fused_kd_loss(s.cpu(), z.cpu(), y.cpu(), **kw)
    torch.testing.assert_close(loss_g.cpu(), loss_c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats_g.active_fraction.cpu(), stats_c.active_fraction)
