"""GPU benchmark of cross_self_attention, forward + backward; skipped without CUDA.

    .venv/bin/python -m pytest benchmarks/bench_cross_self_attention_cuda.py --benchmark-only -s

B=256, H=2, D=32, L in {50, 200, 512}, float32 and bfloat16, causal: the fused op, two
scaled_dot_product_attention calls and the eager reference, timed in the same run (CUDA
events), with each one's peak allocated memory during forward + backward.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timing_stats import timed_ms

import srkd_ext
from srkd_ext.ops.cross_self_attention_reference import cross_self_attention_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")

BATCH, HEADS, HEAD_DIM = 256, 2, 32


def sdpa_pair(q_a, k_a, v_a, q_b, k_b, v_b):
    return (F.scaled_dot_product_attention(q_a, k_b, v_b, is_causal=True),
            F.scaled_dot_product_attention(q_b, k_a, v_a, is_causal=True))


IMPLEMENTATIONS = {
    "fused": lambda x: srkd_ext.cross_self_attention(*x, causal=True),
    "sdpa": lambda x: sdpa_pair(*x),
    "eager": lambda x: cross_self_attention_reference(*x, causal=True),
}

_medians: dict = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    for key in sorted(k for k in _medians if k[2] == "fused"):
        length, dtype, _ = key
        line = f"L={length} {dtype}: " + ", ".join(
            f"{impl} {_medians[(length, dtype, impl)][0]:.3f} ms (peak {_medians[(length, dtype, impl)][1]:.0f} MB)"
            for impl in IMPLEMENTATIONS if (length, dtype, impl) in _medians)
        for base in ("sdpa", "eager"):
            if (length, dtype, base) in _medians:
                line += f"; fused {_medians[(length, dtype, base)][0] / _medians[key][0]:.2f}x vs {base}"
        print(line)


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length", [50, 200, 512])
def test_cuda_forward_backward(benchmark, length, dtype, impl):
    if impl == "fused" and not srkd_ext.cuda_kernels_available():
        pytest.skip("srkd_ext built without CUDA kernels")
    gen = torch.Generator(device="cuda").manual_seed(length)
    shape = (BATCH, HEADS, length, HEAD_DIM)
    inputs = [torch.randn(shape, generator=gen, device="cuda", dtype=dtype).requires_grad_() for _ in range(6)]
    grads = [torch.randn(shape, generator=gen, device="cuda", dtype=dtype) for _ in range(2)]
    fn = IMPLEMENTATIONS[impl]

    def step():
        torch.autograd.grad(fn(inputs), inputs, grads)
        torch.cuda.synchronize()

    step()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    benchmark.group = f"cuda cross_self_attention L={length} {dtype}"
    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=2)
    benchmark.extra_info["peak_mb"] = peak_mb
    _medians[(length, str(dtype), impl)] = (timed_ms(benchmark), peak_mb)
