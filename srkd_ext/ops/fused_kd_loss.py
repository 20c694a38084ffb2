"""`fused_kd_loss`: the SRMS multi-teacher probability-selection KD loss as one fused op.

Python face of the op: argument validation, the call into the compiled kernels
(torch.ops.srkd_ext.fused_kd_loss_dense / fused_kd_loss_cached), their fake (meta) functions
and autograd. The kernels compute, in one forward pass, each row's loss terms and the gradient
of the row loss w.r.t. the student logits; backward only scales that gradient by the upstream
gradient of each row. Without compiled kernels the plain-PyTorch reference runs instead.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import torch

from srkd_ext._library import cuda_kernels_available, kernels_available, warn_fallback
from srkd_ext.ops.fused_kd_loss_reference import KDLossStats, TeacherTopK, fused_kd_loss_reference

__all__ = ["fused_kd_loss", "TeacherTopK", "KDLossStats"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_REDUCTIONS = ("mean", "sum", "none")
_MAX_TEACHERS = 32  # kMaxTeachers in csrc/common/fused_kd_loss_params.h


def fused_kd_loss(
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
    """Multi-teacher KD loss with probability selection (SRMS), fused, with autograd.

    For each row b and teacher t (DESIGN.md, "Op 1"): S_tb = the `top_k` items with the largest
    teacher logits (ties: lower item index first); p~_tb = softmax(z[t,b,S_tb] / tau), zero
    elsewhere; teacher t is inactive on row b when the rank of the target,
    1 + #{j : z[t,b,j] > z[t,b,y_b]}, exceeds `gate_rank`; the active teachers are mixed,
    q_b = sum_t w_tb p~_tb, with weights renormalised to sum 1 over the active teachers; and

        l_b = alpha * CE(s_b, y_b) + (1 - alpha) * tau^2 * KL(q_b || softmax(s_b / tau)).

    A row with no active teacher (or whose active teachers all have weight 0) has no KD term:
    l_b = alpha * CE(s_b, y_b).

    Args:
        student_logits: [B, N] float16/bfloat16/float32/float64, N >= 1. The only input that
            gets a gradient. Computation accumulates in float32 (float64 for float64 inputs).
        teacher_logits: one of
            - a [T, B, N] tensor,
            - a list/tuple of T [B, N] tensors (used as they are; never stacked),
            - a `TeacherTopK(indices [T, B, k] int64, logits [T, B, k] float)` sparse cache of
              each teacher's top-k items (distinct indices per (t, b); -inf logits mark padding).
            Dense teacher logits must have the student's dtype and device. Teachers get no
            gradient (they are detached). T >= 1.
        target: [B] integer item indices in [0, N), or `ignore_index`.
        temperature: tau > 0, finite.
        top_k: None (all items) or an int >= 1; larger than N (or than the cache's k) means
            N (k): it is clamped.
        gate_rank: None (no gate) or an int >= 1. With a cache the rank is the target's rank
            among the cached items; a target that is not cached has an unknown rank > k and
            its teacher is inactive. So with a cache `gate_rank` must be <= k (else ValueError).
        teacher_weights: None (uniform), a [T] tensor or sequence of T finite non-negative
            numbers (not all zero), or "confidence": w_tb proportional to teacher t's
            temperature-1 softmax probability of y_b over all N items; with a cache, the
            softmax over the cached logits (probability 0 when y_b is not cached).
            A weights tensor is read on the host (one device sync on a GPU).
        alpha: weight of the cross-entropy with the ground truth, in [0, 1].
        ignore_index: rows whose target equals it contribute nothing (loss 0, gradient 0).
        reduction: "mean" (over non-ignored rows), "sum", or "none" ([B], 0 on ignored rows).
        return_stats: also return a `KDLossStats` (detached): per-teacher fraction of
            non-ignored rows on which the teacher passed the gate [T], the mean KD term
            tau^2 * KL and the mean CE term over non-ignored rows (0-dim tensors).

    Returns:
        The loss in the student's dtype: 0-dim for "mean"/"sum", [B] for "none"; with
        `return_stats`, the tuple (loss, stats).

    Edge cases:
        - Every row ignored, or B = 0: "mean" and "sum" give 0 with a zero gradient (never
          NaN); "none" gives a [B] tensor of zeros (empty when B = 0).
        - NaN in a non-ignored row of the student logits or of any teacher's logits (cached
          logits for a cache) makes that row's loss NaN (hence a "mean"/"sum" loss NaN) and its
          gradient row NaN; other rows are unaffected (visible with reduction="none"). NaN is
          not an error: check `torch.isfinite(loss)` in the training loop. NaN in an ignored
          row is never read.
        - -inf logits mark masked items: a masked teacher item gets probability 0; a masked
          student item that a teacher gives mass makes the loss +inf.
        - Double backward is not supported: differentiating the gradient raises a RuntimeError.

    Kernels:
        CPU and CUDA kernels compute the loss and its gradient in one forward pass; backward
        only scales that gradient (for `loss.backward()` of a "mean"/"sum" loss on the CPU it is
        handed to `.grad` as it is, no pass over B x N). T <= 32. On CUDA, the checks that need
        the data (targets and cached indices in range, cached indices distinct) are read back
        after the kernel: one device synchronisation per call; a cache needs T * top_k <= 4096
        (2048 for float64) selected entries there. Without compiled kernels for the device, the
        plain-PyTorch reference (srkd_ext.ops.fused_kd_loss_reference) runs, with one warning.

    Raises:
        TypeError/ValueError naming the argument for bad shapes, dtypes, devices or options,
        and a RuntimeError (from the kernel) for a target outside [0, N) or a cache index
        outside [0, N) or repeated within a row.
    """
    call = _validate(
        student_logits, teacher_logits, target, temperature, top_k, gate_rank, teacher_weights,
        alpha, ignore_index, reduction, return_stats,
    )
    if not _kernels_for(student_logits.device):
        _warn_reference_path(student_logits.device)
        _check_targets_in_range(call.target, student_logits.shape[1], ignore_index)
        if isinstance(call.teachers, TeacherTopK):
            _check_cache_indices(call.teachers.indices, student_logits.shape[1])
        return fused_kd_loss_reference(
            student_logits, call.teachers, call.target, temperature=call.temperature,
            top_k=call.top_k, gate_rank=call.gate_rank,
            teacher_weights="confidence" if call.confidence else call.weights, alpha=float(alpha),
            ignore_index=ignore_index, reduction=reduction, return_stats=return_stats,
        )

    if isinstance(call.teachers, TeacherTopK):
        loss, _grad, row_ce, row_kd, active = torch.ops.srkd_ext.fused_kd_loss_cached(
            student_logits, call.teachers.indices, call.teachers.logits, call.target,
            call.temperature, call.top_k, call.gate_rank, call.weights, call.confidence,
            float(alpha), ignore_index, reduction,
        )
    else:
        loss, _grad, row_ce, row_kd, active = torch.ops.srkd_ext.fused_kd_loss_dense(
            student_logits, call.teachers, call.target, call.temperature, call.top_k,
            call.gate_rank, call.weights, call.confidence, float(alpha), ignore_index, reduction,
        )
    del _grad  # held by autograd only, so that backward can hand it over without a copy
    loss = loss.to(student_logits.dtype)
    if not return_stats:
        return loss
    valid = (call.target != ignore_index).to(row_ce.dtype)
    n_valid = valid.sum().clamp(min=1)
    stats = KDLossStats(
        active_fraction=((active.to(row_ce.dtype) * valid).sum(-1) / n_valid).detach(),
        kd=(row_kd.detach() * valid).sum() / n_valid,
        ce=(row_ce.detach() * valid).sum() / n_valid,
    )
    return loss, stats


# --------------------------------------------------------------------------------------------
# Argument validation: every bad input gets an error that names the argument.


class _ValidatedCall:
    """Arguments normalised for the kernels: teachers as a list of [B, N] tensors or a cache."""

    __slots__ = ("teachers", "target", "temperature", "top_k", "gate_rank", "weights", "confidence")

    def __init__(self, teachers, target, temperature, top_k, gate_rank, weights, confidence):
        self.teachers = teachers
        self.target = target
        self.temperature = temperature
        self.top_k = top_k
        self.gate_rank = gate_rank
        self.weights = weights
        self.confidence = confidence


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_same_device(name: str, t: torch.Tensor, student: torch.Tensor) -> None:
    if t.device != student.device:
        raise ValueError(f"fused_kd_loss: {name} is on {t.device} but student_logits is on {student.device}")


def _validate(student, teacher_logits, target, temperature, top_k, gate_rank, teacher_weights, alpha,
              ignore_index, reduction, return_stats) -> _ValidatedCall:
    if not isinstance(student, torch.Tensor):
        raise TypeError(f"fused_kd_loss: student_logits must be a tensor, got {type(student).__name__}")
    if student.dim() != 2:
        raise ValueError(f"fused_kd_loss: student_logits must be [B, N], got shape {tuple(student.shape)}")
    if student.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"fused_kd_loss: student_logits must be float16/bfloat16/float32/float64, got {student.dtype}")
    B, N = student.shape
    if N < 1:
        raise ValueError("fused_kd_loss: student_logits has N = 0 items; need N >= 1")

    if not isinstance(target, torch.Tensor):
        raise TypeError(f"fused_kd_loss: target must be a tensor, got {type(target).__name__}")
    if target.dim() != 1 or target.shape[0] != B:
        raise ValueError(f"fused_kd_loss: target must be [B] = [{B}], got shape {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"fused_kd_loss: target must hold integer item indices, got {target.dtype}")
    _check_same_device("target", target, student)
    target = target.long()

    if isinstance(teacher_logits, TeacherTopK):
        idx, zc = teacher_logits.indices, teacher_logits.logits
        if not isinstance(idx, torch.Tensor) or not isinstance(zc, torch.Tensor):
            raise TypeError("fused_kd_loss: teacher_logits.indices and .logits must be tensors")
        if idx.dim() != 3 or zc.shape != idx.shape:
            raise ValueError("fused_kd_loss: teacher_logits (TeacherTopK) needs indices and logits of the same "
                             f"shape [T, B, k], got {tuple(idx.shape)} and {tuple(zc.shape)}")
        T, Bc, kc = idx.shape
        if T < 1:
            raise ValueError("fused_kd_loss: teacher_logits has T = 0 teachers; need T >= 1")
        if Bc != B:
            raise ValueError(f"fused_kd_loss: teacher_logits (TeacherTopK) has B = {Bc} rows, student_logits {B}")
        if kc < 1:
            raise ValueError("fused_kd_loss: teacher_logits (TeacherTopK) caches k = 0 items; need k >= 1")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"fused_kd_loss: teacher_logits.indices must be integer, got {idx.dtype}")
        if zc.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"fused_kd_loss: teacher_logits.logits must be floating, got {zc.dtype}")
        _check_same_device("teacher_logits.indices", idx, student)
        _check_same_device("teacher_logits.logits", zc, student)
        acc = torch.float64 if student.dtype == torch.float64 else torch.float32
        # The cache is small ([T, B, k]): reading it in the accumulation dtype costs nothing.
        teachers = TeacherTopK(idx.detach().long().contiguous(), zc.detach().to(acc).contiguous())
        k_limit = kc
    else:
        if isinstance(teacher_logits, torch.Tensor):
            if teacher_logits.dim() != 3:
                raise ValueError("fused_kd_loss: teacher_logits must be [T, B, N], a list of [B, N] tensors or a "
                                 f"TeacherTopK, got a tensor of shape {tuple(teacher_logits.shape)}")
            teachers = list(teacher_logits.detach().unbind(0))  # views, no copy
        elif isinstance(teacher_logits, Sequence) and not isinstance(teacher_logits, str):
            teachers = list(teacher_logits)
        else:
            raise TypeError("fused_kd_loss: teacher_logits must be a [T, B, N] tensor, a list of [B, N] tensors or "
                            f"a TeacherTopK, got {type(teacher_logits).__name__}")
        if len(teachers) < 1:
            raise ValueError("fused_kd_loss: teacher_logits has T = 0 teachers; need T >= 1")
        for t, z in enumerate(teachers):
            if not isinstance(z, torch.Tensor):
                raise TypeError(f"fused_kd_loss: teacher_logits[{t}] must be a tensor, got {type(z).__name__}")
            if tuple(z.shape) != (B, N):
                raise ValueError(f"fused_kd_loss: teacher_logits[{t}] has shape {tuple(z.shape)}, expected "
                                 f"[B, N] = [{B}, {N}] like student_logits")
            if z.dtype != student.dtype:
                raise TypeError(f"fused_kd_loss: teacher_logits[{t}] has dtype {z.dtype}, student_logits "
                                f"{student.dtype}; they must match")
            _check_same_device(f"teacher_logits[{t}]", z, student)
        teachers = [z.detach() for z in teachers]
        T = len(teachers)
        k_limit = N

    if T > _MAX_TEACHERS:
        raise ValueError(f"fused_kd_loss: teacher_logits has T = {T} teachers; the kernels support at most "
                         f"{_MAX_TEACHERS}")
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"fused_kd_loss: temperature must be a finite number > 0, got {temperature!r}")
    if top_k is None:
        k = k_limit
    elif not _is_int(top_k) or top_k <= 0:
        raise ValueError(f"fused_kd_loss: top_k must be None or an int >= 1, got {top_k!r}")
    else:
        k = min(int(top_k), k_limit)
    if gate_rank is not None:
        if not _is_int(gate_rank) or gate_rank <= 0:
            raise ValueError(f"fused_kd_loss: gate_rank must be None or an int >= 1, got {gate_rank!r}")
        gate_rank = int(gate_rank)
        if isinstance(teachers, TeacherTopK):
            if gate_rank > k_limit:
                raise ValueError(f"fused_kd_loss: gate_rank = {gate_rank} exceeds the cache size k = {k_limit}: the "
                                 "rank of a target that is not cached is unknown beyond k")
        elif gate_rank >= N:
            gate_rank = None  # every rank is <= N: the gate never closes

    confidence = False
    weights = None
    if isinstance(teacher_weights, str):
        if teacher_weights != "confidence":
            raise ValueError(f"fused_kd_loss: teacher_weights must be None, 'confidence' or [T] numbers, got "
                             f"{teacher_weights!r}")
        confidence = True
    elif teacher_weights is not None:
        if isinstance(teacher_weights, torch.Tensor):
            if teacher_weights.dim() != 1:
                raise ValueError(f"fused_kd_loss: teacher_weights must be [T] = [{T}], got shape "
                                 f"{tuple(teacher_weights.shape)}")
            weights = [float(w) for w in teacher_weights.detach().cpu().tolist()]
        elif isinstance(teacher_weights, Sequence) and all(_is_real(w) for w in teacher_weights):
            weights = [float(w) for w in teacher_weights]
        else:
            raise TypeError("fused_kd_loss: teacher_weights must be None, 'confidence', a [T] tensor or a sequence "
                            f"of numbers, got {type(teacher_weights).__name__}")
        if len(weights) != T:
            raise ValueError(f"fused_kd_loss: teacher_weights has {len(weights)} entries for T = {T} teachers")
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(f"fused_kd_loss: teacher_weights must be finite and >= 0, got {weights}")
        if not any(w > 0 for w in weights):
            raise ValueError("fused_kd_loss: teacher_weights are all zero: no teacher could contribute")

    if not _is_real(alpha) or not (0.0 <= alpha <= 1.0):
        raise ValueError(f"fused_kd_loss: alpha must be a number in [0, 1], got {alpha!r}")
    if not _is_int(ignore_index):
        raise TypeError(f"fused_kd_loss: ignore_index must be an int, got {ignore_index!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"fused_kd_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not isinstance(return_stats, bool):
        raise TypeError(f"fused_kd_loss: return_stats must be a bool, got {return_stats!r}")
    return _ValidatedCall(teachers, target, float(temperature), k, gate_rank, weights, confidence)


def _check_targets_in_range(target: torch.Tensor, n_items: int, ignore_index: int) -> None:
    """The reference path's check; the kernels check targets themselves (no extra pass)."""
    bad = (target != ignore_index) & ((target < 0) | (target >= n_items))
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise RuntimeError(f"fused_kd_loss: target[{b}] = {int(target[b])} is outside [0, N) = [0, {n_items}) "
                           f"and is not ignore_index ({ignore_index})")


def _check_cache_indices(indices: torch.Tensor, n_items: int) -> None:
    """The reference path's check of a cache's [T, B, k] indices: in [0, N), distinct per (t, b)."""
    bad = (indices < 0) | (indices >= n_items)
    if bool(bad.any()):
        t, b, i = (int(v) for v in bad.nonzero()[0])
        raise RuntimeError(f"fused_kd_loss: teacher_logits.indices[{t}, {b}, {i}] = {int(indices[t, b, i])} is "
                           f"outside [0, N) = [0, {n_items})")
    ordered = indices.sort(dim=-1).values
    repeated = ordered[..., 1:] == ordered[..., :-1]
    if bool(repeated.any()):
        t, b, _ = (int(v) for v in repeated.nonzero()[0])
        raise RuntimeError(f"fused_kd_loss: teacher_logits.indices repeats an item in row {b} of teacher {t}; "
                           "cached items must be distinct")


def _kernels_for(device: torch.device) -> bool:
    if not _OP_DEFINED:
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return cuda_kernels_available()
    return False


_warned_devices: set[str] = set()


def _warn_reference_path(device: torch.device) -> None:
    if not kernels_available():
        warn_fallback("fused_kd_loss")
        return
    if device.type in _warned_devices:
        return
    _warned_devices.add(device.type)
    reason = ("the compiled library predates this op" if not _OP_DEFINED
              else f"srkd_ext was built without {device.type} kernels")
    warnings.warn(f"srkd_ext: fused_kd_loss on {device.type} tensors runs its plain-PyTorch reference ({reason}).",
                  RuntimeWarning, stacklevel=3)


# True when the compiled library defines the op (a library built from an older checkout may not).
_OP_DEFINED = kernels_available() and hasattr(torch.ops.srkd_ext, "fused_kd_loss_dense")


# --------------------------------------------------------------------------------------------
# Fake (meta) functions and autograd of the compiled ops.


def _fake_outputs(student: torch.Tensor, n_teachers: int, reduction: str):
    acc = torch.float64 if student.dtype == torch.float64 else torch.float32
    B = student.shape[0]
    return (
        student.new_empty((B,) if reduction == "none" else (), dtype=acc),
        torch.empty_like(student, memory_format=torch.contiguous_format),
        student.new_empty((B,), dtype=acc),
        student.new_empty((B,), dtype=acc),
        student.new_empty((n_teachers, B), dtype=torch.bool),
    )


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[1])
    # Only the loss output carries a gradient; materialising zeros for the others would fill a
    # [B, N] tensor for `grad` on every backward.
    ctx.set_materialize_grads(False)
    ctx.n_teacher_inputs = len(inputs[1]) if isinstance(inputs[1], (list, tuple)) else None
    ctx.per_row = inputs[-1] == "none"


_DOUBLE_BACKWARD_MESSAGE = (
    b"srkd_ext.fused_kd_loss does not support double backward: its gradient is computed by the forward "
    b"kernel and is not itself differentiable (do not differentiate the gradient, e.g. with "
    b"create_graph=True followed by a second backward through it)"
)


def _backward(ctx, grad_loss, grad_grad, grad_ce, grad_kd, grad_active):
    """d loss / d student = the forward's gradient times the upstream gradient; teachers get nothing.

    For the usual `loss.backward()` (a scalar upstream gradient of exactly 1 on the CPU) the
    forward's gradient is returned as it is: once autograd frees this node's saved tensors,
    AccumulateGrad adopts it as `.grad` without a copy, so the backward costs no pass over B x N.
    """
    if grad_loss is None:  # only the logging outputs were differentiated: they carry no gradient
        return None
    (grad,) = ctx.saved_tensors
    upstream = grad_loss.to(grad.dtype)
    as_is = not ctx.per_row and _is_eager_cpu_one(upstream)
    with torch.no_grad():
        if ctx.per_row:
            grad_student = grad * upstream[:, None]
        elif as_is:
            grad_student = grad
        else:
            grad_student = grad * upstream
    if torch.is_grad_enabled():
        # The gradient was asked for with create_graph=True: give it a graph whose backward raises
        # (as torch.autograd.function.once_differentiable does), so differentiating it fails loudly
        # instead of silently missing the second-order terms.
        grad_student = grad_student.detach().requires_grad_()
        grad_student = torch._C._functions.DelayedError(_DOUBLE_BACKWARD_MESSAGE, 1)(grad_student)
    return grad_student


def _is_eager_cpu_one(upstream: torch.Tensor) -> bool:
    """A plain (not traced, not fake) CPU scalar equal to 1: reading it costs no device sync."""
    return (type(upstream) is torch.Tensor and not torch.compiler.is_compiling() and upstream.device.type == "cpu"
            and not torch.is_grad_enabled() and bool(upstream == 1))


def _dense_backward(ctx, *grads):
    # The gradient structure mirrors the inputs: one (absent) gradient per teacher tensor.
    return (_backward(ctx, *grads), [None] * ctx.n_teacher_inputs) + (None,) * 9


def _cached_backward(ctx, *grads):
    return (_backward(ctx, *grads),) + (None,) * 11


if _OP_DEFINED:

    @torch.library.register_fake("srkd_ext::fused_kd_loss_dense")
    def _fused_kd_loss_dense_fake(student_logits, teacher_logits, target, temperature, top_k, gate_rank,
                                  teacher_weights, confidence_weights, alpha, ignore_index, reduction):
        return _fake_outputs(student_logits, len(teacher_logits), reduction)

    @torch.library.register_fake("srkd_ext::fused_kd_loss_cached")
    def _fused_kd_loss_cached_fake(student_logits, teacher_indices, teacher_logits, target, temperature, top_k,
                                   gate_rank, teacher_weights, confidence_weights, alpha, ignore_index, reduction):
        return _fake_outputs(student_logits, teacher_indices.shape[0], reduction)

    torch.library.register_autograd("srkd_ext::fused_kd_loss_dense", _dense_backward, setup_context=_setup_context)
    torch.library.register_autograd("srkd_ext::fused_kd_loss_cached", _cached_backward,
                                    setup_context=_setup_context)
