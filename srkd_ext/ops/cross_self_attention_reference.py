"""Plain-PyTorch reference of `cross_self_attention` (the math the kernels must reproduce).

Two attention directions between branches a and b, all tensors [B, H, L, D]:

    o_a = softmax(q_a k_b^T * scale + mask) v_b
    o_b = softmax(q_b k_a^T * scale + mask) v_a

`mask` is -inf where key j is padding (key_padding_mask[b, j] is True) or, when causal,
where j > i. A query row whose keys are all masked gets a zero output and a zero gradient
(a plain softmax would give NaN there).

The reference materialises the [B, H, L, L] probabilities; it is the fallback when the
kernels are not built, and the ground truth of the tests. Half-precision inputs are computed
in float32 and the outputs cast back, as the kernels accumulate in float32; float64 stays
float64 (gradcheck).
"""

from __future__ import annotations

import torch


def attention_allowed(
    length: int,
    causal: bool,
    key_padding_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """Boolean [B or 1, 1, L, L] (query i, key j): True where query i may attend to key j."""
    allowed = torch.ones(1, 1, length, length, dtype=torch.bool, device=device)
    if causal:
        allowed = torch.tril(allowed)
    if key_padding_mask is not None:
        allowed = allowed & ~key_padding_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
    return allowed


def _one_direction(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, scale: float):
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    # A finite fill keeps fully masked rows free of NaN (softmax of all -inf); multiplying by
    # `allowed` afterwards zeroes them, and their gradient, exactly.
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1) * allowed
    return torch.matmul(probs, v)


def cross_self_attention_reference(
    q_a: torch.Tensor,
    k_a: torch.Tensor,
    v_a: torch.Tensor,
    q_b: torch.Tensor,
    k_b: torch.Tensor,
    v_b: torch.Tensor,
    *,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference two-way attention. Inputs [B, H, L, D]; key_padding_mask [B, L] bool (True =
    padding); scale defaults to 1/sqrt(D). Returns (o_a, o_b), each [B, H, L, D] in the input dtype.
    No argument checking here: `srkd_ext.cross_self_attention` validates."""
    in_dtype = q_a.dtype
    compute_dtype = torch.float32 if in_dtype in (torch.float16, torch.bfloat16) else in_dtype
    q_a, k_a, v_a, q_b, k_b, v_b = (t.to(compute_dtype) for t in (q_a, k_a, v_a, q_b, k_b, v_b))
    if scale is None:
        scale = q_a.shape[-1] ** -0.5
    allowed = attention_allowed(q_a.shape[-2], causal, key_padding_mask, q_a.device)
    o_a = _one_direction(q_a, k_b, v_b, allowed, scale)
    o_b = _one_direction(q_b, k_a, v_a, allowed, scale)
    return o_a.to(in_dtype), o_b.to(in_dtype)
