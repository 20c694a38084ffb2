"""Caser (Tang & Wang, 2018): convolutional sequence embedding, made causal per position.

The original Caser convolves one window of the last W items. To train on every position at
once, each position t gets its own window, the W items ending at t, and both convolutions are
written as causal convolutions over time:

- horizontal filters of height h (1..W) span the full embedding width: a Conv1d over time with
  kernel h on the sequence left-padded by W - 1 zeros, followed by a max over the W - h + 1
  outputs whose receptive field lies inside the window ending at t;
- vertical filters are weighted sums over the W embeddings of the window: a Conv1d with one input
  channel applied to every embedding dimension separately.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srkd_ext.models.base import SequentialRecommender, check_probability, padding_mask
from srkd_ext.models.dropout import FastDropout


class Caser(SequentialRecommender):
    """forward: input_ids [B, L] -> hidden [B, L, hidden_dim]; position t sees items t-W+1..t."""

    arch = "caser"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 64,
        window: int = 5,
        num_horizontal: int = 16,
        num_vertical: int = 4,
        dropout: float = 0.2,
    ):
        check_probability("dropout", dropout)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        super().__init__(
            num_items,
            max_len,
            hidden_dim,
            {
                "hidden_dim": hidden_dim,
                "window": window,
                "num_horizontal": num_horizontal,
                "num_vertical": num_vertical,
                "dropout": dropout,
            },
        )
        self.window = window
        self.horizontal = nn.ModuleList(
            nn.Conv1d(hidden_dim, num_horizontal, kernel_size=h) for h in range(1, window + 1)
        )
        self.vertical = nn.Conv1d(1, num_vertical, kernel_size=window)
        self.dropout = FastDropout(dropout)
        self.fc = nn.Linear(num_horizontal * window + num_vertical * hidden_dim, hidden_dim)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.check_input(input_ids)
        pad = padding_mask(input_ids)
        batch, length = input_ids.shape
        e = self.item_embedding(input_ids)  # [B, L, d]; padding rows are zero
        e_t = e.transpose(1, 2)  # [B, d, L]

        # Every window ending at t holds W slots; before the first item they are zero (padding),
        # exactly like the model's own left padding, so outputs do not depend on window length.
        windows = F.pad(e_t, (self.window - 1, 0))  # [B, d, L + W - 1]
        features = []
        for h, conv in enumerate(self.horizontal, start=1):
            c = F.relu(conv(windows))  # [B, n_h, L + W - h]: every height-h span of the padded input
            features.append(F.max_pool1d(c, self.window - h + 1, stride=1))  # max inside each window
        horizontal = torch.cat(features, dim=1).transpose(1, 2)  # [B, L, n_h * W]

        v = self.vertical(windows.reshape(batch * self.hidden_dim, 1, -1))  # [B * d, n_v, L]
        vertical = v.view(batch, self.hidden_dim, -1, length).permute(0, 3, 2, 1).reshape(batch, length, -1)

        z = torch.cat([horizontal, vertical], dim=-1)
        hidden = F.relu(self.fc(self.dropout(z)))
        return hidden * (~pad).unsqueeze(-1).to(hidden.dtype)
