"""Dropout drawn from torch.rand: the same regulariser as nn.Dropout, several times cheaper on CPU.

torch's CPU dropout draws its mask with bernoulli_, which is much slower than generating uniform
floats (torch.rand) and thresholding them; at the sizes of a recommender's activations the
mask generation dominated the step time. Gradients flow through the multiplication by the
scaled mask, exactly as in nn.Dropout, and the draw comes from torch's default generator, so
torch.manual_seed makes it reproducible.
"""

from __future__ import annotations

import torch
from torch import nn


class FastDropout(nn.Module):
    """x -> x * mask / (1 - p) in training (mask ~ Bernoulli(1 - p)), identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
