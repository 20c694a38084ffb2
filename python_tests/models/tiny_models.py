"""Tiny models and histories shared by the model tests."""

import pytest
import torch

import srkd_ext
from srkd_ext.models import build_model

NUM_ITEMS = 40
MAX_LEN = 12
TINY = {
    "sasrec": {"hidden_dim": 16, "num_layers": 2, "num_heads": 2},
    "gru4rec": {"hidden_dim": 16, "num_layers": 2},
    "caser": {"hidden_dim": 16, "window": 4, "num_horizontal": 3, "num_vertical": 2},
    "srcd": {"hidden_dim": 16, "num_heads": 2, "kernel_sizes": [2, 3]},
}


def needs_op(arch):
    if arch == "srcd" and not hasattr(srkd_ext, "cross_self_attention"):
        pytest.skip("SRCD needs srkd_ext.cross_self_attention (op-attn not merged)")


def tiny_model(arch, seed=0):
    needs_op(arch)
    torch.manual_seed(seed)
    return build_model(arch, NUM_ITEMS, MAX_LEN, dropout=0.0, **TINY[arch]).eval()


def histories(batch=5, length=MAX_LEN, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=g)
    for row in range(batch):  # left padding of different lengths, one row without padding
        x[row, : (row * 3) % length] = 0
    return x
