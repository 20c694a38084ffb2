"""CPU benchmark of cross_self_attention, forward + backward, against its baselines in one run.

    .venv/bin/python -m pytest benchmarks/bench_cross_self_attention.py --benchmark-only

Shapes from issue 4: B=256, H=2, D=32, L in {50, 200}, float32, causal. Each L times
  fused   srkd_ext.cross_self_attention (one call, both directions)
  sdpa    two torch.nn.functional.scaled_dot_product_attention calls (is_causal=True)
  eager   the plain-PyTorch reference (matmul, mask, softmax, matmul)
and, with a left-padding key mask (the model's real input), fused vs two SDPA calls with a
boolean attn_mask. At the end the speed-ups over the baselines of the same run are printed and
written to .benchmarks/cross_self_attention_cpu.json with the bytes autograd saves between
forward and backward (the evidence that no [B, H, L, L] tensor is kept) and each
implementation's peak resident memory, measured in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from timing_stats import timed_ms

import srkd_ext
from srkd_ext.ops.cross_self_attention_reference import cross_self_attention_reference

BATCH, HEADS, HEAD_DIM = 256, 2, 32
LENGTHS = (50, 200)
ROUNDS = {"fused": 20, "sdpa": 20, "eager": 2, "fused_masked": 10, "sdpa_masked": 5}
RESULTS_PATH = Path(__file__).resolve().parents[1] / ".benchmarks" / "cross_self_attention_cpu.json"


def left_padding(batch: int, length: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    pad = torch.randint(0, length // 2, (batch,), generator=gen)
    return torch.arange(length)[None, :] < pad[:, None]


def sdpa_pair(q_a, k_a, v_a, q_b, k_b, v_b, key_padding_mask=None):
    if key_padding_mask is None:
        return (F.scaled_dot_product_attention(q_a, k_b, v_b, is_causal=True),
                F.scaled_dot_product_attention(q_b, k_a, v_a, is_causal=True))
    length = q_a.shape[-2]
    allowed = ~key_padding_mask[:, None, None, :] & torch.ones(length, length, dtype=torch.bool).tril()
    return (F.scaled_dot_product_attention(q_a, k_b, v_b, attn_mask=allowed),
            F.scaled_dot_product_attention(q_b, k_a, v_a, attn_mask=allowed))


IMPLEMENTATIONS = {
    "fused": lambda x, mask: srkd_ext.cross_self_attention(*x, causal=True),
    "sdpa": lambda x, mask: sdpa_pair(*x),
    "eager": lambda x, mask: cross_self_attention_reference(*x, causal=True),
    "fused_masked": lambda x, mask: srkd_ext.cross_self_attention(*x, causal=True, key_padding_mask=mask),
    "sdpa_masked": lambda x, mask: sdpa_pair(*x, key_padding_mask=mask),
}


def make_case(length: int):
    gen = torch.Generator().manual_seed(length)
    inputs = [torch.randn(BATCH, HEADS, length, HEAD_DIM, generator=gen).requires_grad_() for _ in range(6)]
    grads = [torch.randn(BATCH, HEADS, length, HEAD_DIM, generator=gen) for _ in range(2)]
    return inputs, grads, left_padding(BATCH, length)


def saved_bytes(fn, inputs, mask) -> int:
    """Bytes of the tensors autograd keeps between forward and backward (views of one storage
    counted once)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(inputs, mask)
    return sum(storages.values())


_results: dict = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not _results:
        return
    lines = ["", "cross_self_attention CPU, forward + backward, B=256 H=2 D=32 float32, "
             f"{torch.get_num_threads()} threads (medians)"]
    for length in LENGTHS:
        r = _results.get(length, {})
        if "fused" not in r:
            continue
        ms = {k: v["median_ms"] for k, v in r.items() if "median_ms" in v}
        line = f"  L={length}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
        for base in ("sdpa", "eager"):
            if base in ms:
                line += f"; fused {ms[base] / ms['fused']:.2f}x faster than {base}"
        if "sdpa_masked" in ms and "fused_masked" in ms:
            line += f"; masked: fused {ms['sdpa_masked'] / ms['fused_masked']:.2f}x faster than sdpa"
        lines.append(line)
        # On a shared machine the minimum is the least disturbed round: report its ratios too.
        mins = {k: v["min_ms"] for k, v in r.items() if "min_ms" in v}
        if "fused" in mins and "sdpa" in mins:
            lines.append(f"    minimum rounds: fused {mins['fused']:.1f} ms, sdpa {mins['sdpa']:.1f} ms "
                         f"({mins['sdpa'] / mins['fused']:.2f}x)")
        saved = {k: v["saved_for_backward_mb"] for k, v in r.items() if "saved_for_backward_mb" in v}
        if saved:
            lines.append("    saved for backward (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in saved.items())
                         + f"   (one [B,H,L,L] float32 = {BATCH * HEADS * length * length * 4 / 2**20:.1f} MB)")
        peaks = {k: v["peak_rss_mb"] for k, v in r.items() if "peak_rss_mb" in v}
        if peaks:
            lines.append("    peak RSS over a bare process (MB): "
                         + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    print("\n".join(lines))
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({str(k): v for k, v in _results.items()}, indent=2))


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("length", LENGTHS)
def test_forward_backward(benchmark, length, impl):
    if not srkd_ext.kernels_available() and impl.startswith("fused"):
        pytest.skip("srkd_ext kernels not built")
    inputs, grads, mask = make_case(length)
    fn = IMPLEMENTATIONS[impl]

    def step():
        torch.autograd.grad(fn(inputs, mask), inputs, grads)

    step()  # warm-up (first-call initialisation is not the kernel's cost)
    benchmark.group = f"cross_self_attention L={length}"
    benchmark.pedantic(step, rounds=ROUNDS[impl], iterations=1)
    entry = _results.setdefault(length, {}).setdefault(impl, {})
    entry["median_ms"] = timed_ms(benchmark)
    entry["min_ms"] = timed_ms(benchmark, "min")
    entry["saved_for_backward_mb"] = saved_bytes(fn, inputs, mask) / 2**20
    benchmark.extra_info.update(entry)


_PEAK_SCRIPT = """
import sys, torch
sys.path.insert(0, {bench_dir!r})
import bench_cross_self_attention as b

def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

inputs, grads, mask = b.make_case({length})
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident size
base = status_mb("VmRSS:")
torch.autograd.grad(b.IMPLEMENTATIONS[{impl!r}](inputs, mask), inputs, grads)
print(status_mb("VmHWM:") - base)
"""


@pytest.mark.parametrize("impl", ["fused", "sdpa", "eager"])
@pytest.mark.parametrize("length", LENGTHS)
def test_peak_memory(benchmark, length, impl):
    """Peak resident memory of one forward + backward in a fresh process, above the memory
    the inputs already hold (Linux: /proc/self/status VmHWM after resetting it)."""
    if not srkd_ext.kernels_available() and impl == "fused":
        pytest.skip("srkd_ext kernels not built")
    script = _PEAK_SCRIPT.format(bench_dir=str(Path(__file__).parent), length=length, impl=impl)

    def run():
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    benchmark.group = f"cross_self_attention peak memory L={length}"
    peak_mb = benchmark.pedantic(run, rounds=1, iterations=1)
    _results.setdefault(length, {}).setdefault(impl, {})["peak_rss_mb"] = peak_mb
    benchmark.extra_info["peak_rss_mb"] = peak_mb

