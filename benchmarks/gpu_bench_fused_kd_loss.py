"""fused_kd_loss on a GPU, forward + backward: the fused CUDA kernel against the eager PyTorch
code (softmax, topk, scatter, renormalise, mean, log_softmax, KL, CE) and torch.compile of it,
in the same run, with the floor (one torch.exp over B x N plus one read of the teacher logits)
and the peak extra GPU memory of each. Skipped without CUDA.

    .venv/bin/python -m pytest benchmarks/gpu_bench_fused_kd_loss.py --benchmark-only -s

Shapes: B = 256, T = 3, top_k = 50, tau = 2, alpha = 0.5, float32, N in {12101, 50000, 200000,
1000000}.
"""

import pytest
import torch
from kd_loss_workload import TAU, TOP_K, B, T, eager_kd_loss, fused_kd_loss, make_inputs
from timing_stats import timed_ms

import srkd_ext

NS = (12101, 50000, 200000, 1_000_000)
IMPLS = ("fused", "eager", "compiled", "floor")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not (torch.cuda.is_available() and srkd_ext.cuda_kernels_available()),
                       reason="needs a GPU and srkd_ext built with CUDA kernels"),
]


compiled_kd_loss = torch.compile(eager_kd_loss)
_inputs: dict[int, tuple] = {}
_results: dict[tuple[int, str], tuple[float, float]] = {}


def inputs(n):
    if n not in _inputs:
        _inputs.clear()
        torch.cuda.empty_cache()
        _inputs[n] = make_inputs(n, "cuda")
    return _inputs[n]


def step_function(impl, n):
    s, z, y = inputs(n)
    if impl == "floor":
        out = torch.empty(B, n, device="cuda")

        def floor():
            torch.exp(s.detach(), out=out)
            torch.amax(z)
            torch.cuda.synchronize()

        return floor
    loss_fn = {
        "fused": fused_kd_loss,
        "eager": eager_kd_loss,
        "compiled": compiled_kd_loss,
    }[impl]

    def forward_backward():
        s.grad = None
        loss_fn(s, z, y).backward()
        torch.cuda.synchronize()

    return forward_backward


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_fused_kd_loss_forward_backward(benchmark, impl, n):
    fn = step_function(impl, n)
    fn()
    inputs(n)[0].grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    benchmark.group = f"gpu fused_kd_loss N={n}"
    benchmark.extra_info.update(B=B, T=T, top_k=TOP_K, N=n, peak_extra_mb=round(peak_mb, 1))
    benchmark.pedantic(fn, rounds=20, iterations=1, warmup_rounds=3)
    _results[(n, impl)] = (timed_ms(benchmark), peak_mb)


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    if not _results:
        return
    print(f"\nfused_kd_loss GPU fwd+bwd ({torch.cuda.get_device_name()}), B={B} T={T} k={TOP_K} tau={TAU}")
    print(f"{'N':>8} {'fused ms':>9} {'eager ms':>9} {'compiled':>9} {'floor ms':>9} {'eager/f':>8} {'comp/f':>7} "
          f"{'f/floor':>8}  peak extra MB (fused/eager/compiled)")
    for n in NS:
        t = {i: _results.get((n, i), (float("nan"), float("nan"))) for i in IMPLS}
        print(f"{n:>8} {t['fused'][0]:>9.3f} {t['eager'][0]:>9.3f} {t['compiled'][0]:>9.3f} {t['floor'][0]:>9.3f} "
              f"{t['eager'][0] / t['fused'][0]:>8.1f} {t['compiled'][0] / t['fused'][0]:>7.1f} "
              f"{t['fused'][0] / t['floor'][0]:>8.2f}  {t['fused'][1]:.0f}/{t['eager'][1]:.0f}/{t['compiled'][1]:.0f}")
