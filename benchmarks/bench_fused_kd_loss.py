"""fused_kd_loss on the CPU, forward + backward: the fused op against the eager PyTorch code a
user would write (softmax, topk, scatter, renormalise, mean, log_softmax, KL, CE) and against
torch.compile of that code, measured in the same run; plus the floor, the time of one torch.exp
over B x N and one read of the teacher logits, and the peak extra memory of each.

    .venv/bin/python -m pytest benchmarks/bench_fused_kd_loss.py --benchmark-only -s
    KD_BENCH_N=50000 ...   (only that catalogue size)

Shapes (issue 3): B = 256, T = 3, top_k = 50, tau = 2, alpha = 0.5, float32,
N in {12101 (Beauty's catalogue), 50000, 200000}. The summary table (printed at the end, with -s)
gives eager / fused, compiled / fused and fused / floor.
"""

import os
import re

import pytest
import torch
from kd_loss_workload import TAU, TOP_K, B, T, eager_kd_loss, make_inputs
from kd_loss_workload import fused_kd_loss as fused
from timing_stats import timed_ms

import srkd_ext

ALL_N = (12101, 50000, 200000)
NS = tuple(int(n) for n in os.environ["KD_BENCH_N"].split(",")) if "KD_BENCH_N" in os.environ else ALL_N
IMPLS = ("fused", "eager", "compiled", "floor")
ROUNDS = {"fused": 8, "floor": 8, "eager": 3, "compiled": 3}

pytestmark = pytest.mark.skipif(not srkd_ext.kernels_available(), reason="compiled kernels not built")


compiled_kd_loss = torch.compile(eager_kd_loss)


_inputs: dict[int, tuple] = {}
_median_ms: dict[tuple[int, str], float] = {}
_peak_mb: dict[tuple[int, str], float] = {}


def inputs(n):
    if n not in _inputs:
        _inputs.clear()  # one size at a time: the N = 200000 teachers alone are 600 MB
        # Continuous random logits: no ties at the top-k edge, so fused and eager agree.
        _inputs[n] = make_inputs(n)
    return _inputs[n]


def step_function(impl, n):
    s, z, y = inputs(n)
    if impl == "floor":
        out = torch.empty(B, n)

        def floor():
            torch.exp(s.detach(), out=out)
            torch.amax(z)

        return floor
    loss_fn = {"fused": fused, "eager": eager_kd_loss, "compiled": compiled_kd_loss}[impl]

    def forward_backward():
        s.grad = None
        loss_fn(s, z, y).backward()

    return forward_backward


def _rss_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def peak_extra_mb(fn):
    """Peak resident memory above the current level while fn runs (Linux: VmHWM after a reset),
    including the student gradient it leaves in .grad (B x N x 4 bytes). Large tensors are
    mmap-ed and returned to the OS when freed, so this sees each call's intermediates; small
    ones may come from already-resident heap and be under-counted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    before = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - before) / 1024


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("impl", IMPLS)
def test_fused_kd_loss_forward_backward(benchmark, impl, n):
    fn = step_function(impl, n)
    fn()  # warm-up (and compilation for "compiled")
    inputs(n)[0].grad = None  # the step's own .grad counts as extra memory
    _peak_mb[(n, impl)] = peak_extra_mb(fn)
    benchmark.group = f"fused_kd_loss N={n}"
    benchmark.extra_info.update(B=B, T=T, top_k=TOP_K, N=n, peak_extra_mb=round(_peak_mb[(n, impl)], 1))
    benchmark.pedantic(fn, rounds=ROUNDS[impl], iterations=1, warmup_rounds=1)
    _median_ms[(n, impl)] = timed_ms(benchmark)


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    if not _median_ms:
        return
    lines = [f"\nfused_kd_loss CPU fwd+bwd, B={B} T={T} k={TOP_K} tau={TAU} ({torch.get_num_threads()} threads)",
             f"{'N':>7} {'fused ms':>9} {'eager ms':>9} {'compiled':>9} {'floor ms':>9} {'eager/f':>8} "
             f"{'comp/f':>7} {'f/floor':>8}  peak extra MB (fused/eager/compiled)"]
    for n in NS:
        t = {impl: _median_ms.get((n, impl), float("nan")) for impl in IMPLS}
        m = {impl: _peak_mb.get((n, impl), float("nan")) for impl in IMPLS}
        lines.append(f"{n:>7} {t['fused']:>9.1f} {t['eager']:>9.1f} {t['compiled']:>9.1f} {t['floor']:>9.1f} "
                     f"{t['eager'] / t['fused']:>8.1f} {t['compiled'] / t['fused']:>7.1f} "
                     f"{t['fused'] / t['floor']:>8.2f}  {m['fused']:.0f}/{m['eager']:.0f}/{m['compiled']:.0f}")
    print("\n".join(lines))
