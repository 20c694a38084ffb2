"""The plain-PyTorch reference against independent computations of the same math."""

import math

import pytest
import torch
from cross_self_attention_cases import make_inputs, make_left_padding, sdpa_pair, valid_query_rows

from srkd_ext.ops.cross_self_attention_reference import cross_self_attention_reference


def naive_one_direction(q, k, v, causal, key_padding_mask, scale):
    """Row-by-row softmax with Python loops over (b, h, i): slow, obviously right."""
    batch, heads, length, _ = q.shape
    out = torch.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            for i in range(length):
                keys = [j for j in range(length)
                        if (not causal or j <= i)
                        and (key_padding_mask is None or not key_padding_mask[b, j])]
                if not keys:
                    continue
                scores = torch.stack([q[b, h, i] @ k[b, h, j] * scale for j in keys])
                weights = torch.softmax(scores, dim=0)
                out[b, h, i] = sum(w * v[b, h, j] for w, j in zip(weights, keys, strict=True))
    return out


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_reference_matches_naive_loops_float64(causal, padded):
    q_a, k_a, v_a, q_b, k_b, v_b = make_inputs(3, 2, 6, 5, dtype=torch.float64, seed=1)
    mask = make_left_padding(3, 6, seed=1) if padded else None
    scale = 0.7
    o_a, o_b = cross_self_attention_reference(q_a, k_a, v_a, q_b, k_b, v_b, causal=causal,
                                              key_padding_mask=mask, scale=scale)
    torch.testing.assert_close(o_a, naive_one_direction(q_a, k_b, v_b, causal, mask, scale))
    torch.testing.assert_close(o_b, naive_one_direction(q_b, k_a, v_a, causal, mask, scale))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("length", [1, 7, 50])
def test_reference_matches_sdpa_pair(causal, padded, length):
    inputs = make_inputs(4, 2, length, 16, seed=length)
    mask = make_left_padding(4, length, seed=length) if padded else None
    got = cross_self_attention_reference(*inputs, causal=causal, key_padding_mask=mask)
    want = sdpa_pair(*inputs, causal=causal, key_padding_mask=mask)
    rows = valid_query_rows(4, length, causal=causal, key_padding_mask=mask)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(torch.where(rows, g, 0), torch.where(rows, w, 0), rtol=1e-5, atol=1e-5)


def test_default_scale_is_inverse_sqrt_head_dim():
    inputs = make_inputs(2, 1, 5, 9, dtype=torch.float64, seed=3)
    default = cross_self_attention_reference(*inputs)
    explicit = cross_self_attention_reference(*inputs, scale=1 / math.sqrt(9))
    for d, e in zip(default, explicit, strict=True):
        torch.testing.assert_close(d, e)


def test_fully_masked_rows_give_zero_output_and_zero_grad():
    inputs = make_inputs(3, 2, 6, 4, dtype=torch.float64, seed=4, requires_grad=True)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, :] = True  # batch 0: every key is padding
    mask[1, :3] = True  # batch 1: left padding, causal rows 0..2 see no key
    o_a, o_b = cross_self_attention_reference(*inputs, causal=True, key_padding_mask=mask)
    for o in (o_a, o_b):
        assert torch.isfinite(o).all()
        assert (o[0] == 0).all()
        assert (o[1, :, :3] == 0).all()
        assert (o[1, :, 3:] != 0).any()
    (o_a.square().sum() + o_b.square().sum()).backward()
    q_a, _, _, q_b, _, _ = inputs
    for t in inputs:
        assert torch.isfinite(t.grad).all()
    for q in (q_a, q_b):
        assert (q.grad[0] == 0).all()
        assert (q.grad[1, :, :3] == 0).all()


def test_half_precision_computes_in_float32():
    inputs32 = make_inputs(2, 2, 9, 8, seed=5)
    inputs16 = [t.to(torch.bfloat16) for t in inputs32]
    got = cross_self_attention_reference(*inputs16)
    want = cross_self_attention_reference(*[t.float() for t in inputs16])
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g, w.to(torch.bfloat16))
