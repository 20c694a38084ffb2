"""Random inputs and independent baselines shared by the cross_self_attention tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_inputs(batch, heads, length, head_dim, *, dtype=torch.float32, device="cpu", seed=0,
                requires_grad=False):
    """Six fresh [B, H, L, D] tensors (q_a, k_a, v_a, q_b, k_b, v_b)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for _ in range(6):
        t = torch.randn(batch, heads, length, head_dim, generator=gen, dtype=torch.float64)
        t = t.to(device=device, dtype=dtype)
        tensors.append(t.requires_grad_(requires_grad))
    return tensors


def make_left_padding(batch, length, *, seed=0, device="cpu"):
    """[B, L] bool, True = padding, left-aligned (as sequential recommenders pad histories).
    Row 0 is all padding when B > 1, so fully masked rows are always exercised."""
    gen = torch.Generator().manual_seed(seed + 1)
    pad_len = torch.randint(0, length + 1, (batch,), generator=gen)
    if batch > 1:
        pad_len[0] = length
        pad_len[1] = 0
    positions = torch.arange(length)[None, :]
    return (positions < pad_len[:, None]).to(device)


def sdpa_pair(q_a, k_a, v_a, q_b, k_b, v_b, *, causal, key_padding_mask=None, scale=None):
    """Two calls of F.scaled_dot_product_attention: the unfused baseline. Rows with no allowed
    key are NaN or arbitrary in SDPA; compare only rows that `valid_query_rows` keeps."""
    length = q_a.shape[-2]
    mask = None
    if key_padding_mask is not None:
        mask = ~key_padding_mask[:, None, None, :]
        if causal:
            tril = torch.ones(length, length, dtype=torch.bool, device=q_a.device).tril()
            mask = mask & tril
        return (F.scaled_dot_product_attention(q_a, k_b, v_b, attn_mask=mask, scale=scale),
                F.scaled_dot_product_attention(q_b, k_a, v_a, attn_mask=mask, scale=scale))
    return (F.scaled_dot_product_attention(q_a, k_b, v_b, is_causal=causal, scale=scale),
            F.scaled_dot_product_attention(q_b, k_a, v_a, is_causal=causal, scale=scale))


def valid_query_rows(batch, length, *, causal, key_padding_mask=None):
    """[B, 1, L, 1] bool: query rows that have at least one allowed key."""
    if key_padding_mask is None:
        return torch.ones(batch, 1, length, 1, dtype=torch.bool)
    keep = ~key_padding_mask.cpu()
    if causal:
        any_key = keep.cumsum(dim=1) > 0  # some key j <= i is real
    else:
        any_key = keep.any(dim=1, keepdim=True).expand(batch, length)
    return any_key[:, None, :, None]
