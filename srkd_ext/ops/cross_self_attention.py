"""`cross_self_attention`: fused two-way attention between two branches (SRCD's user-feature stream).

    o_a, o_b = cross_self_attention(q_a, k_a, v_a, q_b, k_b, v_b, causal=True,
                                    key_padding_mask=None, scale=None)

    o_a = softmax(q_a k_b^T * scale + mask) v_b        all tensors [B, H, L, D]
    o_b = softmax(q_b k_a^T * scale + mask) v_a

Both directions run in one kernel call (torch.ops.srkd_ext.cross_self_attention_fwd), which
stores only the per-row log-sum-exp [2, B, H, L]; the backward op recomputes the probabilities
tile by tile, so no [B, H, L, L] tensor lives between forward and backward. Fully masked query
rows (e.g. left padding under a causal mask) give zero output and zero gradient.
"""

from __future__ import annotations

import math

import torch

from srkd_ext._library import kernels_available, warn_fallback
from srkd_ext.ops.cross_self_attention_reference import cross_self_attention_reference

# The largest head dim the kernels support (CPU and CUDA tiles are sized for it).
MAX_HEAD_DIM = 128

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_NAMES = ("q_a", "k_a", "v_a", "q_b", "k_b", "v_b")


def _check_inputs(tensors, key_padding_mask, causal, scale) -> None:
    for name, t in zip(_NAMES, tensors, strict=True):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"cross_self_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"cross_self_attention: {name} must be 4-D [B, H, L, D], got shape {tuple(t.shape)}"
            )
    ref = tensors[0]
    for name, t in zip(_NAMES[1:], tensors[1:], strict=True):
        if t.shape != ref.shape:
            raise ValueError(
                f"cross_self_attention: {name} has shape {tuple(t.shape)} but q_a has "
                f"{tuple(ref.shape)}; all six inputs must share [B, H, L, D]"
            )
        if t.dtype != ref.dtype:
            raise TypeError(
                f"cross_self_attention: {name} has dtype {t.dtype} but q_a has {ref.dtype}; "
                "all six inputs must share one dtype"
            )
        if t.device != ref.device:
            raise ValueError(
                f"cross_self_attention: {name} is on {t.device} but q_a is on {ref.device}; "
                "all inputs must be on one device"
            )
    if ref.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(
            f"cross_self_attention: q_a has dtype {ref.dtype}; supported: float32, float64, float16, bfloat16"
        )
    batch, _heads, length, head_dim = ref.shape
    if length < 1 or head_dim < 1:
        raise ValueError(f"cross_self_attention: q_a must have L >= 1 and D >= 1, got shape {tuple(ref.shape)}")
    if head_dim > MAX_HEAD_DIM:
        raise ValueError(
            f"cross_self_attention: head dim D = {head_dim} (last dim of q_a) exceeds the supported "
            f"maximum {MAX_HEAD_DIM}"
        )
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor):
            raise TypeError(
                f"cross_self_attention: key_padding_mask must be a bool tensor [B, L] or None, got "
                f"{type(key_padding_mask).__name__}"
            )
        if key_padding_mask.dtype != torch.bool:
            raise TypeError(
                f"cross_self_attention: key_padding_mask must have dtype torch.bool (True = padding), "
                f"got {key_padding_mask.dtype}"
            )
        if tuple(key_padding_mask.shape) != (batch, length):
            raise ValueError(
                f"cross_self_attention: key_padding_mask must have shape [B, L] = {(batch, length)}, "
                f"got {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != ref.device:
            raise ValueError(
                f"cross_self_attention: key_padding_mask is on {key_padding_mask.device} but q_a is on "
                f"{ref.device}"
            )
    if not isinstance(causal, bool):
        raise TypeError(f"cross_self_attention: causal must be a bool, got {type(causal).__name__}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise ValueError(f"cross_self_attention: scale must be a finite float or None, got {scale!r}")


# A build older than this op (its .so loaded but without these schemas) runs the reference.
_OP_REGISTERED = kernels_available() and hasattr(torch.ops.srkd_ext, "cross_self_attention_fwd")


def _kernel_covers(device: torch.device, dtype: torch.dtype) -> bool:
    """The CUDA kernels take float32/bf16/fp16; float64 on a GPU runs the reference."""
    return device.type == "cpu" or (device.type == "cuda" and dtype != torch.float64)


def cross_self_attention(
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
    """Two-way attention between branches a and b in one fused call.

    Args:
        q_a, k_a, v_a, q_b, k_b, v_b: [B, H, L, D], one dtype (float32, float64, float16,
            bfloat16) and one device; D <= 128. Any strides.
        causal: query i attends only to keys j <= i.
        key_padding_mask: [B, L] bool, True where the key is padding (masked for every query).
        scale: multiplies q k^T; default 1/sqrt(D).

    Returns:
        (o_a, o_b), each [B, H, L, D] in the input dtype: o_a = softmax(q_a k_b^T * scale + mask) v_b,
        o_b = softmax(q_b k_a^T * scale + mask) v_a. Rows with every key masked are zero.
    """
    tensors = (q_a, k_a, v_a, q_b, k_b, v_b)
    _check_inputs(tensors, key_padding_mask, causal, scale)
    if scale is None:
        scale = q_a.shape[-1] ** -0.5
    scale = float(scale)
    if not _OP_REGISTERED:
        warn_fallback("cross_self_attention")
        return cross_self_attention_reference(
            *tensors, causal=causal, key_padding_mask=key_padding_mask, scale=scale
        )
    if not _kernel_covers(q_a.device, q_a.dtype):
        return cross_self_attention_reference(
            *tensors, causal=causal, key_padding_mask=key_padding_mask, scale=scale
        )
    o_a, o_b, _lse = torch.ops.srkd_ext.cross_self_attention_fwd(*tensors, key_padding_mask, causal, scale)
    return o_a, o_b


if _OP_REGISTERED:

    @torch.library.register_fake("srkd_ext::cross_self_attention_fwd")
    def _fwd_fake(q_a, k_a, v_a, q_b, k_b, v_b, key_padding_mask, causal, scale):
        batch, heads, length, head_dim = q_a.shape
        lse_dtype = torch.float64 if q_a.dtype == torch.float64 else torch.float32
        o_a = q_a.new_empty((batch, heads, length, head_dim))
        o_b = q_a.new_empty((batch, heads, length, head_dim))
        lse = q_a.new_empty((2, batch, heads, length), dtype=lse_dtype)
        return o_a, o_b, lse

    @torch.library.register_fake("srkd_ext::cross_self_attention_bwd")
    def _bwd_fake(grad_o_a, grad_o_b, q_a, k_a, v_a, q_b, k_b, v_b, o_a, o_b, lse, key_padding_mask,
                  causal, scale):
        shape = q_a.shape
        return tuple(q_a.new_empty(shape) for _ in range(6))

    def _setup_context(ctx, inputs, output):
        q_a, k_a, v_a, q_b, k_b, v_b, key_padding_mask, causal, scale = inputs
        o_a, o_b, lse = output
        ctx.save_for_backward(q_a, k_a, v_a, q_b, k_b, v_b, o_a, o_b, lse, key_padding_mask)
        ctx.causal = causal
        ctx.scale = scale

    def _backward(ctx, grad_o_a, grad_o_b, _grad_lse):
        q_a, k_a, v_a, q_b, k_b, v_b, o_a, o_b, lse, key_padding_mask = ctx.saved_tensors
        # An output that did not reach the loss has no gradient; it contributes nothing.
        if grad_o_a is None:
            grad_o_a = torch.zeros_like(o_a)
        if grad_o_b is None:
            grad_o_b = torch.zeros_like(o_b)
        grads = torch.ops.srkd_ext.cross_self_attention_bwd(
            grad_o_a, grad_o_b, q_a, k_a, v_a, q_b, k_b, v_b, o_a, o_b, lse, key_padding_mask,
            ctx.causal, ctx.scale,
        )
        return (*grads, None, None, None)

    torch.library.register_autograd(
        "srkd_ext::cross_self_attention_fwd", _backward, setup_context=_setup_context
    )
