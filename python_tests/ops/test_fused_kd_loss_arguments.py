"""fused_kd_loss rejects bad input with an error that names the argument (never a crash or
silent garbage), and clamps what the docstring says it clamps."""

import pytest
import torch

import srkd_ext
from srkd_ext import TeacherTopK, fused_kd_loss


def inputs(B=3, N=6, T=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, N, generator=g, dtype=dtype), torch.randn(T, B, N, generator=g, dtype=dtype),
            torch.randint(0, N, (B,), generator=g))


BAD_CALLS = [
    (lambda s, z, y: fused_kd_loss(s[0], z, y), ValueError, "student_logits"),
    (lambda s, z, y: fused_kd_loss(s.long(), z, y), TypeError, "student_logits"),
    (lambda s, z, y: fused_kd_loss(s[:, :0], z[:, :, :0], y), ValueError, "N = 0"),
    (lambda s, z, y: fused_kd_loss(s, z[:, :2], y), ValueError, r"teacher_logits\[0\]"),
    (lambda s, z, y: fused_kd_loss(s, z.double(), y), TypeError, r"teacher_logits\[0\]"),
    (lambda s, z, y: fused_kd_loss(s, z[0], y), ValueError, "teacher_logits"),
    (lambda s, z, y: fused_kd_loss(s, z[:0], y), ValueError, "T = 0"),
    (lambda s, z, y: fused_kd_loss(s, [], y), ValueError, "T = 0"),
    (lambda s, z, y: fused_kd_loss(s, "teachers", y), TypeError, "teacher_logits"),
    (lambda s, z, y: fused_kd_loss(s, z, y[:2]), ValueError, "target"),
    (lambda s, z, y: fused_kd_loss(s, z, y.float()), TypeError, "target"),
    (lambda s, z, y: fused_kd_loss(s, z, y, temperature=0.0), ValueError, "temperature"),
    (lambda s, z, y: fused_kd_loss(s, z, y, temperature=float("nan")), ValueError, "temperature"),
    (lambda s, z, y: fused_kd_loss(s, z, y, top_k=0), ValueError, "top_k"),
    (lambda s, z, y: fused_kd_loss(s, z, y, top_k=2.5), ValueError, "top_k"),
    (lambda s, z, y: fused_kd_loss(s, z, y, gate_rank=0), ValueError, "gate_rank"),
    (lambda s, z, y: fused_kd_loss(s, z, y, teacher_weights="softmax"), ValueError, "teacher_weights"),
    (lambda s, z, y: fused_kd_loss(s, z, y, teacher_weights=[1.0]), ValueError, "teacher_weights"),
    (lambda s, z, y: fused_kd_loss(s, z, y, teacher_weights=[1.0, -1.0]), ValueError, "teacher_weights"),
    (lambda s, z, y: fused_kd_loss(s, z, y, teacher_weights=[0.0, 0.0]), ValueError, "teacher_weights"),
    (lambda s, z, y: fused_kd_loss(s, z, y, teacher_weights=torch.ones(2, 1)), ValueError, "teacher_weights"),
    (lambda s, z, y: fused_kd_loss(s, z, y, alpha=1.5), ValueError, "alpha"),
    (lambda s, z, y: fused_kd_loss(s, z, y, reduction="avg"), ValueError, "reduction"),
    (lambda s, z, y: fused_kd_loss(s, z, y, ignore_index=1.0), TypeError, "ignore_index"),
    (lambda s, z, y: fused_kd_loss(s, TeacherTopK(torch.zeros(2, 3, 2, dtype=torch.long), torch.zeros(2, 3, 3)), y),
     ValueError, "TeacherTopK"),
    (lambda s, z, y: fused_kd_loss(s, TeacherTopK(torch.zeros(2, 3, 2), torch.zeros(2, 3, 2)), y),
     TypeError, "indices"),
    (lambda s, z, y: fused_kd_loss(s, TeacherTopK(torch.zeros(2, 3, 2, dtype=torch.long), torch.zeros(2, 3, 2)), y,
                                   gate_rank=3), ValueError, "gate_rank"),
]


@pytest.mark.parametrize("call,error,name", BAD_CALLS)
def test_bad_argument_names_itself(call, error, name):
    s, z, y = inputs()
    with pytest.raises(error, match=name):
        call(s, z, y)


@pytest.mark.parametrize("bad", [-5, 6])
def test_target_out_of_range_is_an_error(bad):
    s, z, y = inputs()
    y[1] = bad
    with pytest.raises(RuntimeError, match="target"):
        fused_kd_loss(s, z, y, top_k=2)


@pytest.mark.parametrize("bad", [-1, 6])
def test_cache_index_out_of_range_is_an_error(bad):
    s, z, y = inputs()
    idx = torch.tensor([[0, 1], [2, 3], [4, 5]]).expand(2, 3, 2).clone()
    idx[1, 2, 0] = bad
    with pytest.raises(RuntimeError, match="indices"):
        fused_kd_loss(s, TeacherTopK(idx, torch.randn(2, 3, 2)), y)


def test_repeated_cache_index_is_an_error():
    s, z, y = inputs()
    idx = torch.tensor([[0, 1], [2, 3], [4, 4]]).expand(2, 3, 2).clone()
    with pytest.raises(RuntimeError, match="repeat"):
        fused_kd_loss(s, TeacherTopK(idx, torch.randn(2, 3, 2)), y)


def test_top_k_and_gate_rank_beyond_n_are_clamped():
    s, z, y = inputs()
    torch.testing.assert_close(fused_kd_loss(s, z, y, top_k=1000, gate_rank=1000), fused_kd_loss(s, z, y))
    cache = TeacherTopK(torch.arange(6).expand(2, 3, 6).contiguous(), z)
    torch.testing.assert_close(fused_kd_loss(s, cache, y, top_k=99), fused_kd_loss(s, cache, y, top_k=6))


def test_teacher_list_tensor_and_weights_tensor_forms_agree():
    s, z, y = inputs()
    a = fused_kd_loss(s, z, y, top_k=3, teacher_weights=torch.tensor([1.0, 3.0]))
    b = fused_kd_loss(s, [z[0], z[1]], y, top_k=3, teacher_weights=(0.25, 0.75))
    torch.testing.assert_close(a, b)


def test_non_contiguous_and_expanded_inputs():
    s, z, y = inputs(N=8)
    s_t = s.t().contiguous().t()  # same values, transposed strides
    z_exp = z[:1].expand(2, 3, 8)  # stride-0 teacher dimension
    want = fused_kd_loss(s, z[:1].repeat(2, 1, 1), y, top_k=3)
    torch.testing.assert_close(fused_kd_loss(s_t, z_exp, y, top_k=3), want)
    torch.testing.assert_close(fused_kd_loss(s, [z[0, :, ::1], z[0].t().contiguous().t()], y, top_k=3), want)


def test_teachers_get_no_gradient():
    s, z, y = inputs()
    s.requires_grad_()
    z.requires_grad_()
    fused_kd_loss(s, z, y, top_k=2).backward()
    assert s.grad is not None and z.grad is None


def test_stats_shapes():
    s, z, y = inputs(T=3, B=4)
    s = torch.randn(4, 6)
    y = torch.tensor([0, 1, 2, 3])
    z = torch.randn(3, 4, 6)
    loss, stats = fused_kd_loss(s, z, y, gate_rank=2, return_stats=True)
    assert stats.active_fraction.shape == (3,)
    assert stats.kd.shape == () and stats.ce.shape == ()
    assert not stats.kd.requires_grad
    assert srkd_ext.ops.fused_kd_loss.KDLossStats is type(stats)


def test_too_many_teachers_is_an_error():
    s, z, y = inputs(T=33)
    with pytest.raises(ValueError, match="teacher_logits"):
        fused_kd_loss(s, z, y)


def test_device_mismatch_names_the_argument():
    s, z, y = inputs()
    with pytest.raises(ValueError, match=r"teacher_logits\[0\]"):
        fused_kd_loss(s, z.to("meta"), y)
    with pytest.raises(ValueError, match="target"):
        fused_kd_loss(s, z, y.to("meta"))


def test_reference_fallback_when_the_op_is_not_compiled(monkeypatch):
    import srkd_ext.ops.fused_kd_loss as op

    s, z, y = inputs(N=40)
    y[0] = -100
    kernel = fused_kd_loss(s, z, y, temperature=2.0, top_k=5, gate_rank=9, return_stats=True)
    monkeypatch.setattr(op, "_OP_DEFINED", False)
    monkeypatch.setattr(op, "_warned_devices", set())
    with pytest.warns(RuntimeWarning, match="reference"):
        fallback = fused_kd_loss(s, z, y, temperature=2.0, top_k=5, gate_rank=9, return_stats=True)
    torch.testing.assert_close(fallback[0], kernel[0])
    for a, b in zip(fallback[1], kernel[1], strict=True):
        torch.testing.assert_close(a, b)
    y[1] = 40
    with pytest.raises(RuntimeError, match="target"):
        fused_kd_loss(s, z, y)
