"""End-to-end benchmarks: what a user of `srkd run` waits for.

    pytest benchmarks/bench_e2e.py --benchmark-only

1. One SRMS student training step (student forward, loss, backward, Adam) with the fused KD loss
   against the same step with the plain-PyTorch reference loss. Catalogue N = 12,101 (Beauty),
   T = 3 teachers, top-k 50, tau 2, a batch of 32 users x 50 positions (1,600 rows); the
   teachers' logits for the batch are computed once beforehand (both variants read the same).
2. Evaluation throughput, full ranking over the whole catalogue, for a 12,101 and a 200,000 item
   catalogue (SASRec d=64, 2 blocks, 2,048 users with 50-item histories); users per second is
   in each result's extra_info.
3. Inference latency at batch 1 of the student (SASRec d=32, SRCD d=32) against the teacher
   (SASRec d=256), N = 12,101: what compression buys at serving time.

Timings on a shared machine drift: compare rows of the same run, never across runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import srkd_ext
from srkd_ext.data.split import EvalSet, SequenceSet
from srkd_ext.models import build_model
from srkd_ext.ops.fused_kd_loss_reference import fused_kd_loss_reference
from srkd_ext.train import evaluate

BEAUTY_ITEMS = 12_101
MAX_LEN = 50


def _histories(num_users: int, num_items: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, num_items + 1, (num_users, MAX_LEN), generator=g)


# --- 1. SRMS student training step: fused loss vs reference loss ------------------------------------
@pytest.fixture(scope="module")
def srms_step_inputs():
    torch.manual_seed(0)
    users = 32
    inputs = _histories(users, BEAUTY_ITEMS, seed=1)
    targets = torch.roll(inputs, -1, dims=1)
    targets[:, -1] = _histories(users, BEAUTY_ITEMS, seed=2)[:, 0]
    teachers = [
        build_model("sasrec", BEAUTY_ITEMS, MAX_LEN, hidden_dim=64, num_layers=2, num_heads=2).eval(),
        build_model("sasrec", BEAUTY_ITEMS, MAX_LEN, hidden_dim=32, num_layers=2, num_heads=2).eval(),
        build_model("gru4rec", BEAUTY_ITEMS, MAX_LEN, hidden_dim=64).eval(),
    ]
    with torch.no_grad():
        teacher_logits = [t.training_logits(inputs, targets)[0] for t in teachers]
    return inputs, targets, teacher_logits


@pytest.mark.parametrize("loss_impl", ["fused", "reference"])
def test_srms_student_training_step(benchmark, srms_step_inputs, loss_impl):
    if loss_impl == "fused" and not srkd_ext.kernels_available():
        pytest.skip("compiled kernels not built (`make build`): the fused path would run the reference")
    inputs, targets, teacher_logits = srms_step_inputs
    torch.manual_seed(0)
    student = build_model("sasrec", BEAUTY_ITEMS, MAX_LEN, hidden_dim=16, num_layers=2, num_heads=1)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    loss_fn = srkd_ext.fused_kd_loss if loss_impl == "fused" else fused_kd_loss_reference
    options = dict(temperature=2.0, top_k=50, alpha=0.5)

    def step():
        logits, columns = student.training_logits(inputs, targets)
        loss = loss_fn(logits, teacher_logits, columns, **options)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    benchmark.group = "SRMS student training step (N=12,101, T=3, k=50, 1,600 rows)"
    benchmark.extra_info["rows"] = int(teacher_logits[0].shape[0])
    loss = benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    assert torch.isfinite(loss)


# --- 2. Evaluation throughput, full ranking -----------------------------------------------------------
def _eval_set(num_users: int, num_items: int) -> EvalSet:
    histories = _histories(num_users, num_items, seed=3).numpy().astype(np.int64)
    offsets = np.arange(0, num_users * MAX_LEN + 1, MAX_LEN, dtype=np.int64)
    users = np.arange(num_users, dtype=np.int64)
    targets = np.random.default_rng(4).integers(1, num_items + 1, num_users).astype(np.int64)
    return EvalSet(users, SequenceSet(offsets, histories.reshape(-1), users), targets)


@pytest.mark.parametrize("num_items", [BEAUTY_ITEMS, 200_000], ids=["12k_items", "200k_items"])
def test_full_ranking_evaluation_throughput(benchmark, num_items):
    num_users = 2048
    torch.manual_seed(0)
    model = build_model("sasrec", num_items, MAX_LEN, hidden_dim=64, num_layers=2, num_heads=2).eval()
    evalset = _eval_set(num_users, num_items)
    benchmark.group = "full-ranking evaluation (SASRec d=64, 2,048 users)"
    result = benchmark.pedantic(lambda: evaluate(model, evalset, num_items), rounds=3, iterations=1,
                                warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable (one plain run)
        benchmark.extra_info["users_per_second"] = num_users / benchmark.stats.stats.median
    benchmark.extra_info["num_items"] = num_items
    assert result["users"] == num_users and 0.0 <= result["NDCG@10"] <= 1.0


# --- 3. Student vs teacher inference latency ---------------------------------------------------------
MODELS = {
    "teacher_sasrec_d256": ("sasrec", dict(hidden_dim=256, num_layers=2, num_heads=2)),
    "student_sasrec_d32": ("sasrec", dict(hidden_dim=32, num_layers=2, num_heads=2)),
    "student_srcd_d32": ("srcd", dict(hidden_dim=32, num_heads=2)),
}


@pytest.mark.parametrize("which", list(MODELS))
def test_inference_latency_batch1(benchmark, which):
    arch, hparams = MODELS[which]
    torch.manual_seed(0)
    model = build_model(arch, BEAUTY_ITEMS, MAX_LEN, **hparams).eval()
    inputs = _histories(1, BEAUTY_ITEMS, seed=5)

    def predict():
        with torch.inference_mode():
            return model.predict(inputs)

    benchmark.group = "inference latency, batch 1 (N=12,101, history 50)"
    benchmark.extra_info["params"] = model.num_parameters()
    scores = benchmark.pedantic(predict, rounds=50, iterations=1, warmup_rounds=5)
    assert scores.shape == (1, BEAUTY_ITEMS + 1)
