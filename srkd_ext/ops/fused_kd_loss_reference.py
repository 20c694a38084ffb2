"""Plain-PyTorch reference of `fused_kd_loss` (SRMS multi-teacher probability-selection KD).

Readable, float64-capable and differentiable by autograd w.r.t. the student logits; it is
the definition the compiled kernels are tested against, and the fallback when they are not
built. The math (DESIGN.md, "Op 1"), for a row b and teacher t:

1. S_tb: the `top_k` largest teacher logits (ties: lower item index first).
2. p~_tb = softmax(z[t, b, S_tb] / tau), zero outside S_tb.
3. Gate: teacher t is inactive on row b when rank_t(y_b) = 1 + #{j : z[t,b,j] > z[t,b,y_b]}
   exceeds `gate_rank`.
4. Weights over the active teachers: uniform, a given w_t, or "confidence" (the teacher's
   temperature-1 softmax probability of y_b), renormalised to sum 1 over the active teachers.
   A row whose active teachers' weights are all zero (or which has no active teacher) has no
   KD term.
5. q_b = sum_t w_tb p~_tb.
   l_b = alpha * CE(s_b, y_b) + (1 - alpha) * tau^2 * KL(q_b || softmax(s_b / tau)).

A sparse teacher cache (`TeacherTopK`) holds, per (t, b), k item indices and their logits;
then S_tb is chosen among the cached items, the rank of y_b is its rank among the cached
items (unknown, i.e. larger than any allowed `gate_rank`, when y_b is not cached) and the
confidence weight is the softmax over the cached logits at y_b (0 when y_b is not cached).

The reference materialises [B, N] tensors per teacher and sorts whole rows: it is meant to be
obviously right, not fast.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class TeacherTopK(NamedTuple):
    """A sparse teacher cache: the top-k items of each teacher for each row.

    indices: [T, B, k] int64 item indices in [0, N), distinct within each (t, b).
    logits:  [T, B, k] floating, the teacher logits of those items (-inf marks padding).
    """

    indices: torch.Tensor
    logits: torch.Tensor


class KDLossStats(NamedTuple):
    """Logging statistics of one `fused_kd_loss` call (all detached, float32/float64).

    active_fraction: [T], the fraction of non-ignored rows on which each teacher passed the gate.
    kd: 0-dim, the mean over non-ignored rows of tau^2 * KL(q_b || softmax(s_b / tau)) (0 for rows
        without a KD term).
    ce: 0-dim, the mean over non-ignored rows of CE(s_b, y_b).
    """

    active_fraction: torch.Tensor
    kd: torch.Tensor
    ce: torch.Tensor


class _TeacherSelection(NamedTuple):
    """What the loss needs from one teacher, for all rows: [B, k'] selection, [B] gate and weight terms."""

    indices: torch.Tensor  # [B, k'] int64, the selected items S_tb
    logits: torch.Tensor  # [B, k'] the teacher logits of the selected items
    target_rank: torch.Tensor  # [B] float, rank of y_b (inf when unknown)
    log_confidence: torch.Tensor  # [B] log of the temperature-1 probability of y_b (-inf: 0)
    has_nan: torch.Tensor  # [B] bool, a NaN among this teacher's logits of the row


def _descending_order(values: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Positions that sort each row by value descending, ties broken by the lower item index."""
    by_item = torch.argsort(items, dim=-1, stable=True)
    values_by_item = torch.gather(values, -1, by_item)
    by_value = torch.argsort(values_by_item, dim=-1, descending=True, stable=True)
    return torch.gather(by_item, -1, by_value)


def _select_dense(z: torch.Tensor, target: torch.Tensor, k: int) -> _TeacherSelection:
    """Teacher logits z [B, N] (accumulation dtype) -> top-k selection and target statistics."""
    order = torch.sort(z, dim=-1, descending=True, stable=True).indices[:, :k]
    logits = torch.gather(z, -1, order)
    z_target = torch.gather(z, -1, target[:, None])
    rank = 1.0 + (z > z_target).sum(-1).to(z.dtype)
    log_conf = (z_target - torch.logsumexp(z, dim=-1, keepdim=True))[:, 0]
    return _TeacherSelection(order, logits, rank, log_conf, torch.isnan(z).any(-1))


def _select_cached(items: torch.Tensor, z: torch.Tensor, target: torch.Tensor, k: int) -> _TeacherSelection:
    """Cached items [B, K] and logits [B, K] -> top-k among the cached items, target statistics."""
    order = _descending_order(z, items)[:, :k]
    indices = torch.gather(items, -1, order)
    logits = torch.gather(z, -1, order)
    is_target = items == target[:, None]
    cached = is_target.any(-1)
    z_target = torch.where(is_target, z, torch.zeros_like(z)).sum(-1, keepdim=True)
    rank = 1.0 + (z > z_target).sum(-1).to(z.dtype)
    rank = torch.where(cached, rank, torch.full_like(rank, math.inf))
    log_conf = (z_target - torch.logsumexp(z, dim=-1, keepdim=True))[:, 0]
    log_conf = torch.where(cached, log_conf, torch.full_like(log_conf, -math.inf))
    return _TeacherSelection(indices, logits, rank, log_conf, torch.isnan(z).any(-1))


def fused_kd_loss_reference(
    student_logits: torch.Tensor,
    teacher_logits,
    target: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    gate_rank: int | None = None,
    teacher_weights=None,
    alpha: float = 0.5,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_stats: bool = False,
):
    """Reference SRMS loss. Arguments as `srkd_ext.fused_kd_loss`, assumed already validated.

    student_logits: [B, N]; teacher_logits: [T, B, N] tensor, a sequence of T [B, N] tensors or a
    `TeacherTopK`; target: [B] int64; teacher_weights: None, "confidence" or a [T] tensor/sequence.
    Returns the loss (student dtype; [B] for reduction="none") and, with return_stats, a
    `KDLossStats`. Computation runs in float64 for float64 inputs, float32 otherwise.
    """
    out_dtype = student_logits.dtype
    acc = torch.float64 if out_dtype == torch.float64 else torch.float32
    B, N = student_logits.shape
    tau = float(temperature)
    ignored = target == ignore_index
    safe_target = torch.where(ignored, torch.zeros_like(target), target).long()
    # Ignored rows read nothing: zeroing them keeps a NaN there out of the loss and the gradient.
    s = torch.where(ignored[:, None], 0.0, student_logits.to(acc))

    if isinstance(teacher_logits, TeacherTopK):
        k = N if top_k is None else min(top_k, teacher_logits.indices.shape[-1])
        selections = [
            _select_cached(items.long(), z.to(acc), safe_target, k)
            for items, z in zip(teacher_logits.indices, teacher_logits.logits, strict=True)
        ]
    else:
        k = N if top_k is None else min(top_k, N)
        selections = [_select_dense(z.to(acc), safe_target, k) for z in teacher_logits]
    T = len(selections)

    # Gate and weights, [T, B]. Weights are renormalised in log space so that a tiny confidence
    # (say 1e-50 for every teacher) still gives a proper mixture instead of 0/0.
    rank = torch.stack([sel.target_rank for sel in selections])
    active = rank <= gate_rank if gate_rank is not None else torch.ones_like(rank, dtype=torch.bool)
    if isinstance(teacher_weights, str):  # "confidence"
        log_w = torch.stack([sel.log_confidence for sel in selections])
    elif teacher_weights is None:
        log_w = torch.zeros(T, B, dtype=acc, device=s.device)
    else:
        w = torch.as_tensor(teacher_weights, dtype=acc, device=s.device)
        log_w = torch.log(w)[:, None].expand(T, B)
    log_w = torch.where(active, log_w, torch.full_like(log_w, -math.inf))
    has_kd = (log_w > -math.inf).any(0)
    safe_log_w = torch.where(has_kd[None, :], log_w, torch.zeros_like(log_w))
    w = torch.where(has_kd[None, :], torch.softmax(safe_log_w, dim=0), torch.zeros_like(log_w))

    q = torch.zeros(B, N, dtype=acc, device=s.device)
    for t, sel in enumerate(selections):
        p_sel = torch.softmax(sel.logits / tau, dim=-1)
        q = q.scatter_add(1, sel.indices, w[t][:, None] * p_sel)

    log_p_tau = torch.log_softmax(s / tau, dim=-1)
    q_log_q = torch.xlogy(q, q)
    q_log_p = torch.where(q > 0, q * log_p_tau, torch.zeros_like(q))
    kd = (tau * tau) * (q_log_q - q_log_p).sum(-1)
    kd = torch.where(has_kd, kd, torch.zeros_like(kd))
    ce = -torch.gather(torch.log_softmax(s, dim=-1), 1, safe_target[:, None])[:, 0]
    row = alpha * ce + (1.0 - alpha) * kd

    # NaN anywhere in a non-ignored row (student or any teacher) makes that row NaN, explicitly,
    # so that it never depends on how NaN happens to travel through sort/softmax.
    row_nan = torch.isnan(s).any(-1)
    for sel in selections:
        row_nan = row_nan | sel.has_nan
    row = torch.where(row_nan, torch.full_like(row, math.nan), row)
    zero = torch.zeros_like(row)
    row = torch.where(ignored, zero, row)

    n_valid = int((~ignored).sum())
    if reduction == "none":
        loss = row
    elif reduction == "sum":
        loss = row.sum()
    else:
        loss = row.sum() / max(n_valid, 1)
    loss = loss.to(out_dtype)
    if not return_stats:
        return loss
    valid = (~ignored).to(acc)
    denom = max(n_valid, 1)
    stats = KDLossStats(
        active_fraction=((active.to(acc) * valid[None, :]).sum(-1) / denom).detach(),
        kd=(torch.where(ignored, zero, kd).sum() / denom).detach(),
        ce=(torch.where(ignored, zero, ce).sum() / denom).detach(),
    )
    return loss, stats
