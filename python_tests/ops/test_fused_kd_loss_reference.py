"""The plain-PyTorch reference of fused_kd_loss against a literal per-row transcription of
DESIGN.md "Op 1" (float64), and its gradient against the closed form of the design."""

import itertools
import math

import pytest
import torch

from srkd_ext.ops.fused_kd_loss_reference import TeacherTopK, fused_kd_loss_reference


def literal_row(s, zs, y, tau, k, gate_rank, weights, alpha):
    """One row, straight from the design text: returns (loss, gradient) as Python floats/lists.

    s: list of N floats; zs: list of T lists of N floats; weights: None, "confidence" or list.
    """
    N = len(s)
    T = len(zs)
    ptil, w = [], []
    for t in range(T):
        z = zs[t]
        sel = sorted(range(N), key=lambda j: (-z[j], j))[:k]
        m = max(z[j] for j in sel)
        e = {j: math.exp((z[j] - m) / tau) for j in sel}
        tot = sum(e.values())
        ptil.append({j: e[j] / tot for j in sel})
        rank = 1 + sum(1 for j in range(N) if z[j] > z[y])
        active = gate_rank is None or rank <= gate_rank
        if weights is None:
            wt = 1.0
        elif weights == "confidence":
            mz = max(z)
            wt = math.exp(z[y] - mz) / sum(math.exp(v - mz) for v in z)
        else:
            wt = weights[t]
        w.append(wt if active else 0.0)
    total_w = sum(w)
    q = [0.0] * N
    if total_w > 0:
        for t in range(T):
            for j, p in ptil[t].items():
                q[j] += w[t] / total_w * p
    ms = max(s)
    z1 = sum(math.exp(v - ms) for v in s)
    ztau = sum(math.exp((v - ms) / tau) for v in s)
    p1 = [math.exp(v - ms) / z1 for v in s]
    ptau = [math.exp((v - ms) / tau) / ztau for v in s]
    ce = -math.log(p1[y])
    kl = sum(qj * (math.log(qj) - math.log(ptau[j])) for j, qj in enumerate(q) if qj > 0)
    kd = tau * tau * kl if total_w > 0 else 0.0
    loss = alpha * ce + (1 - alpha) * kd
    grad = [alpha * (p1[j] - (1.0 if j == y else 0.0)) for j in range(N)]
    if total_w > 0:
        grad = [g + (1 - alpha) * tau * (ptau[j] - q[j]) for j, g in enumerate(grad)]
    return loss, grad


def literal(s, z, y, tau, k, gate_rank, weights, alpha, ignore_index=-100):
    B, N = s.shape
    losses, grads = [], []
    for b in range(B):
        if int(y[b]) == ignore_index:
            losses.append(0.0)
            grads.append([0.0] * N)
            continue
        loss, grad = literal_row(s[b].tolist(), [zt[b].tolist() for zt in z], int(y[b]), tau,
                                 N if k is None else min(k, N), gate_rank, weights, alpha)
        losses.append(loss)
        grads.append(grad)
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(grads, dtype=torch.float64)


def make_inputs(B, N, T, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, N, generator=g, dtype=torch.float64) * 2
    z = torch.randn(T, B, N, generator=g, dtype=torch.float64) * 2
    if ties:  # a coarse grid makes many equal logits, inside and at the edge of the top-k
        z = torch.round(z)
    y = torch.randint(0, N, (B,), generator=g)
    return s, z, y


OPTIONS = list(itertools.product(
    [1, 3],                          # T
    [None, 1, 3, 50],                # top_k (50 > N: clamped)
    [None, 1, 4],                    # gate_rank
    [None, "confidence", "given"],   # teacher_weights
))


@pytest.mark.parametrize("T,top_k,gate_rank,weights", OPTIONS)
def test_reference_matches_literal_design(T, top_k, gate_rank, weights):
    B, N = 5, 9
    s, z, y = make_inputs(B, N, T, seed=hash((T, top_k, gate_rank, str(weights))) % 1000, ties=(T == 3))
    y[1] = -100
    w = [0.5, 1.0, 2.0][:T] if weights == "given" else weights
    for tau, alpha in [(1.0, 0.5), (2.0, 0.0), (0.7, 1.0)]:
        want_rows, want_grad = literal(s, z, y, tau, top_k, gate_rank, w, alpha)
        s_req = s.clone().requires_grad_()
        rows = fused_kd_loss_reference(s_req, z, y, temperature=tau, top_k=top_k, gate_rank=gate_rank,
                                       teacher_weights=w, alpha=alpha, reduction="none")
        torch.testing.assert_close(rows, want_rows, rtol=1e-10, atol=1e-12)
        (grad,) = torch.autograd.grad(rows.sum(), s_req)
        torch.testing.assert_close(grad, want_grad, rtol=1e-9, atol=1e-12)


def test_reductions_and_stats():
    s, z, y = make_inputs(6, 7, 2, seed=3)
    y[0] = y[4] = -1
    kw = dict(temperature=2.0, top_k=3, gate_rank=2, alpha=0.3, ignore_index=-1)
    rows = fused_kd_loss_reference(s, z, y, reduction="none", **kw)
    assert rows[0] == 0 and rows[4] == 0
    total = fused_kd_loss_reference(s, z, y, reduction="sum", **kw)
    mean, stats = fused_kd_loss_reference(s, z, y, reduction="mean", return_stats=True, **kw)
    torch.testing.assert_close(total, rows.sum())
    torch.testing.assert_close(mean, rows.sum() / 4)
    valid = y != -1
    for t in range(2):
        rank = 1 + (z[t] > z[t].gather(1, y.clamp(min=0)[:, None])).sum(1)
        torch.testing.assert_close(stats.active_fraction[t], (rank[valid] <= 2).double().mean())
    ce = -torch.log_softmax(s, 1).gather(1, y.clamp(min=0)[:, None])[:, 0]
    torch.testing.assert_close(stats.ce, ce[valid].mean())
    torch.testing.assert_close(0.3 * stats.ce + 0.7 * stats.kd, mean)


def test_all_ignored_and_empty_batch_give_zero_loss_and_gradient():
    s, z, y = make_inputs(3, 5, 2, seed=1)
    s.requires_grad_()
    y[:] = -100
    for reduction in ("mean", "sum"):
        loss = fused_kd_loss_reference(s, z, y, top_k=2, reduction=reduction)
        (g,) = torch.autograd.grad(loss, s)
        assert loss.item() == 0 and not g.any()
    empty = fused_kd_loss_reference(torch.zeros(0, 5), torch.zeros(2, 0, 5), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0
    assert fused_kd_loss_reference(torch.zeros(0, 5), torch.zeros(2, 0, 5), torch.zeros(0, dtype=torch.long),
                                   reduction="none").shape == (0,)


def test_nan_makes_only_its_row_nan():
    s, z, y = make_inputs(4, 6, 2, seed=2)
    s[1, 3] = math.nan
    z[1, 2, 0] = math.nan  # teacher 1, row 2
    z[0, 3, 5] = math.nan  # row 3 is ignored: never read
    y[3] = -100
    rows = fused_kd_loss_reference(s, z, y, top_k=2, gate_rank=1, reduction="none")
    assert torch.isnan(rows[1]) and torch.isnan(rows[2])
    assert torch.isfinite(rows[0]) and rows[3] == 0


def test_cache_holding_every_item_equals_dense_teachers():
    s, z, y = make_inputs(4, 8, 3, seed=5)
    order = torch.randperm(8)  # cache order must not matter
    cache = TeacherTopK(order.expand(3, 4, 8).contiguous(), z[:, :, order])
    for kw in [dict(top_k=3), dict(top_k=None, gate_rank=2, teacher_weights="confidence")]:
        torch.testing.assert_close(fused_kd_loss_reference(s, cache, y, temperature=1.5, **kw),
                                   fused_kd_loss_reference(s, z, y, temperature=1.5, **kw))


def test_cache_target_not_cached_closes_the_gate_and_has_zero_confidence():
    s, z, y = make_inputs(2, 10, 2, seed=6)
    top = torch.sort(z, dim=-1, descending=True, stable=True)
    cache = TeacherTopK(top.indices[..., :3].contiguous(), top.values[..., :3].contiguous())
    y = top.indices[0, :, 5]  # rank 6 in teacher 0, not cached there
    _, stats = fused_kd_loss_reference(s, cache, y, gate_rank=3, return_stats=True)
    assert stats.active_fraction[0] == 0
    # confidence weights: teacher 0 weighs 0 wherever its cache lacks y; with one teacher, no KD term
    only0 = TeacherTopK(cache.indices[:1], cache.logits[:1])
    rows = fused_kd_loss_reference(s, only0, y, teacher_weights="confidence", alpha=0.0, reduction="none")
    assert not rows.any()
