"""The public face of cross_self_attention: argument checking and the reference fallback."""

import pytest
import torch
from cross_self_attention_cases import make_inputs

import srkd_ext
import srkd_ext._library
import srkd_ext.ops.cross_self_attention as attn_module
from srkd_ext.ops.cross_self_attention_reference import cross_self_attention_reference


def test_public_export():
    assert srkd_ext.cross_self_attention is attn_module.cross_self_attention


@pytest.mark.parametrize("which", range(6))
def test_shape_mismatch_names_the_argument(which):
    inputs = make_inputs(2, 2, 5, 8)
    inputs[which] = inputs[which][:, :, :4]
    name = attn_module._NAMES[which]
    expected = "q_a" if which == 0 else name
    with pytest.raises(ValueError, match=expected):
        srkd_ext.cross_self_attention(*inputs)


def test_not_four_dimensional():
    inputs = make_inputs(2, 2, 5, 8)
    inputs[2] = inputs[2][0]
    with pytest.raises(ValueError, match="v_a must be 4-D"):
        srkd_ext.cross_self_attention(*inputs)


def test_not_a_tensor():
    inputs = make_inputs(2, 2, 5, 8)
    inputs[4] = inputs[4].tolist()
    with pytest.raises(TypeError, match="k_b must be a torch.Tensor"):
        srkd_ext.cross_self_attention(*inputs)


def test_dtype_mismatch():
    inputs = make_inputs(2, 2, 5, 8)
    inputs[5] = inputs[5].double()
    with pytest.raises(TypeError, match="v_b has dtype torch.float64"):
        srkd_ext.cross_self_attention(*inputs)


def test_integer_dtype_rejected():
    inputs = [t.to(torch.int32) for t in make_inputs(2, 2, 5, 8)]
    with pytest.raises(TypeError, match="supported: float32"):
        srkd_ext.cross_self_attention(*inputs)


def test_device_mismatch():
    inputs = make_inputs(2, 2, 5, 8)
    inputs[1] = inputs[1].to("meta")
    with pytest.raises(ValueError, match="k_a is on meta"):
        srkd_ext.cross_self_attention(*inputs)


def test_head_dim_above_maximum():
    inputs = make_inputs(1, 1, 3, attn_module.MAX_HEAD_DIM + 1)
    with pytest.raises(ValueError, match="exceeds the supported maximum 128"):
        srkd_ext.cross_self_attention(*inputs)


def test_head_dim_at_maximum_runs():
    inputs = make_inputs(1, 1, 3, attn_module.MAX_HEAD_DIM)
    o_a, o_b = srkd_ext.cross_self_attention(*inputs)
    assert o_a.shape == o_b.shape == (1, 1, 3, 128)


@pytest.mark.parametrize("shape", [(2, 4), (2,), (2, 5, 1), (3, 5)])
def test_mask_wrong_shape(shape):
    inputs = make_inputs(2, 2, 5, 8)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \[B, L\]"):
        srkd_ext.cross_self_attention(*inputs, key_padding_mask=torch.zeros(shape, dtype=torch.bool))


def test_mask_wrong_dtype():
    inputs = make_inputs(2, 2, 5, 8)
    with pytest.raises(TypeError, match="key_padding_mask must have dtype torch.bool"):
        srkd_ext.cross_self_attention(*inputs, key_padding_mask=torch.zeros(2, 5))


def test_mask_wrong_device():
    inputs = make_inputs(2, 2, 5, 8)
    mask = torch.zeros(2, 5, dtype=torch.bool, device="meta")
    with pytest.raises(ValueError, match="key_padding_mask is on meta"):
        srkd_ext.cross_self_attention(*inputs, key_padding_mask=mask)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), "0.5", True])
def test_bad_scale(scale):
    inputs = make_inputs(2, 2, 5, 8)
    with pytest.raises(ValueError, match="scale must be a finite float"):
        srkd_ext.cross_self_attention(*inputs, scale=scale)


def test_bad_causal():
    inputs = make_inputs(2, 2, 5, 8)
    with pytest.raises(TypeError, match="causal must be a bool"):
        srkd_ext.cross_self_attention(*inputs, causal=1)


def test_empty_length_rejected():
    inputs = make_inputs(2, 2, 0, 8)
    with pytest.raises(ValueError, match="L >= 1 and D >= 1"):
        srkd_ext.cross_self_attention(*inputs)


def test_fallback_without_kernels_runs_reference_and_warns(monkeypatch):
    monkeypatch.setattr(attn_module, "_OP_REGISTERED", False)
    monkeypatch.setattr(srkd_ext._library, "_warned", False)
    inputs = make_inputs(2, 2, 6, 8, seed=7)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, :2] = True
    with pytest.warns(RuntimeWarning, match="cross_self_attention"):
        got = srkd_ext.cross_self_attention(*inputs, key_padding_mask=mask, scale=0.3)
    want = cross_self_attention_reference(*inputs, key_padding_mask=mask, scale=0.3)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
