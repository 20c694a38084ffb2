"""Size and inference cost of a model: what a deployment decision is made on."""

from __future__ import annotations

import io
import statistics
import time

import torch

from srkd_ext.models.base import SequentialRecommender
from srkd_ext.models.serialization import model_payload


def profile_model(
    model: SequentialRecommender,
    max_len: int | None = None,
    *,
    batch_sizes=(1, 256),
    device="cpu",
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
) -> dict:
    """Parameters, saved size, and next-item inference timings on full-length random histories.

    Returns params (count), size_mb (bytes of the saved model / 2^20), and for each batch size b
    latency_ms_batch{b} (median wall time of one predict call) and throughput_batch{b} (users/s).
    """
    max_len = model.max_len if max_len is None else max_len
    buffer = io.BytesIO()
    torch.save(model_payload(model), buffer)
    result = {"params": model.num_parameters(), "size_mb": buffer.tell() / 2**20, "device": str(device)}
    was_training = model.training
    model.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.inference_mode():
            for batch in batch_sizes:
                inputs = torch.randint(1, model.num_items + 1, (batch, max_len), generator=generator).to(device)
                times = []
                for i in range(warmup + repeats):
                    _synchronize(device)
                    start = time.perf_counter()
                    model.predict(inputs)
                    _synchronize(device)
                    if i >= warmup:
                        times.append(time.perf_counter() - start)
                median = statistics.median(times)
                result[f"latency_ms_batch{batch}"] = median * 1e3
                result[f"throughput_batch{batch}"] = batch / median
    finally:
        model.train(was_training)
    return result


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
