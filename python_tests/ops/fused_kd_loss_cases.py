"""Inputs and the comparison with the reference shared by the fused_kd_loss kernel tests
(CPU and CUDA)."""

import torch

from srkd_ext import TeacherTopK, fused_kd_loss
from srkd_ext.ops.fused_kd_loss_reference import fused_kd_loss_reference

TOLERANCES = {  # (rtol, atol) of the kernel against the float64 reference of the same values
    torch.float64: (1e-9, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.bfloat16: (1e-2, 1e-2),
    torch.float16: (1e-2, 1e-3),
}


def random_inputs(B, N, T, *, dtype=torch.float32, device="cpu", seed=0, scale=3.0, ties=False):
    """Student [B, N], teachers [T, B, N], targets [B]; ties=True rounds teacher logits so that
    many are equal (also at the edge of each top-k)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, N, generator=g) * scale
    z = torch.randn(T, B, N, generator=g) * scale
    if ties:
        z = torch.round(z)
    y = torch.randint(0, N, (B,), generator=g)
    return s.to(device, dtype), z.to(device, dtype), y.to(device)


def as_cache(z, k):
    """The sparse cache of teachers z [T, B, N]: each row's top-k (ties: lower index first)
    in a shuffled order, as TeacherTopK."""
    top = torch.sort(z.double(), dim=-1, descending=True, stable=True).indices[..., :k]
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(k))
    idx = top[..., perm].contiguous()
    return TeacherTopK(idx, torch.gather(z, -1, idx))


def to_reference(teachers):
    if isinstance(teachers, TeacherTopK):
        return TeacherTopK(teachers.indices.cpu(), teachers.logits.cpu().double())
    if isinstance(teachers, torch.Tensor):
        return teachers.cpu().double()
    return [z.cpu().double() for z in teachers]


def check_against_reference(s, teachers, y, *, seed=0, **options):
    """The kernel's loss (reduction "none" with a random upstream gradient per row, and "mean")
    and student gradient match the float64 reference of the same input values."""
    rtol, atol = TOLERANCES[s.dtype]
    g = torch.Generator().manual_seed(seed)
    upstream = torch.randn(s.shape[0], generator=g, dtype=torch.float64)

    s_k = s.detach().clone().requires_grad_()
    rows = fused_kd_loss(s_k, teachers, y, reduction="none", **options)
    assert rows.dtype == s.dtype and rows.shape == (s.shape[0],)
    (grad_k,) = torch.autograd.grad(rows, s_k, upstream.to(rows.device, rows.dtype))

    s_r = s.detach().cpu().double().requires_grad_()
    rows_r = fused_kd_loss_reference(s_r, to_reference(teachers), y.cpu(), reduction="none", **options)
    (grad_r,) = torch.autograd.grad(rows_r, s_r, upstream)

    torch.testing.assert_close(rows.cpu().double(), rows_r, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad_k.cpu().double(), grad_r, rtol=rtol, atol=atol)

    mean_k, stats_k = fused_kd_loss(s, teachers, y, return_stats=True, **options)
    mean_r, stats_r = fused_kd_loss_reference(s.cpu().double(), to_reference(teachers), y.cpu(), return_stats=True,
                                              **options)
    torch.testing.assert_close(mean_k.cpu().double(), mean_r, rtol=rtol, atol=atol)
    for got, want in zip(stats_k, stats_r, strict=True):
        torch.testing.assert_close(got.cpu().double(), want, rtol=rtol, atol=atol)
