"""The fused_kd_loss benchmark workload, shared by the CPU and GPU benchmarks so that both time
the same loss on the same inputs: B = 256 rows, T = 3 teachers, top_k = 50, tau = 2, alpha = 0.5.
"""

import torch
import torch.nn.functional as F

import srkd_ext

B, T, TOP_K, TAU, ALPHA = 256, 3, 50, 2.0, 0.5


def eager_kd_loss(s, z, y):
    """The unfused SRMS loss (uniform weights, no gate), allocating T x B x N intermediates."""
    p_t = torch.softmax(z / TAU, dim=-1)
    vals, idx = p_t.topk(TOP_K, dim=-1)
    kept = torch.zeros_like(p_t).scatter_(-1, idx, vals)
    q = (kept / kept.sum(-1, keepdim=True)).mean(0)
    kd = F.kl_div(torch.log_softmax(s / TAU, dim=-1), q, reduction="batchmean") * TAU * TAU
    return ALPHA * F.cross_entropy(s, y) + (1 - ALPHA) * kd


def fused_kd_loss(s, z, y):
    return srkd_ext.fused_kd_loss(s, z, y, temperature=TAU, top_k=TOP_K, alpha=ALPHA)


def make_inputs(n: int, device: str = "cpu"):
    """Student logits [B, n] (requires grad), teacher logits [T, B, n], targets [B], seeded by n,
    after checking that the fused loss agrees with the eager one on them."""
    g = torch.Generator(device=device).manual_seed(n)
    s = (torch.randn(B, n, device=device, generator=g) * 3).requires_grad_()
    z = torch.randn(T, B, n, device=device, generator=g) * 3
    y = torch.randint(0, n, (B,), device=device, generator=g)
    torch.testing.assert_close(fused_kd_loss(s, z, y), eager_kd_loss(s, z, y), rtol=1e-4, atol=1e-4)
    return s, z, y
