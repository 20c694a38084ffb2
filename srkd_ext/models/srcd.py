"""SRCD student encoder: an ordinary causal self-attention stream plus a cross self-attention
stream between two convolution branches, fused into one user representation.

    E [B, L, d] --+--> TransformerStack (causal self-attention) -------------------> S
                  +--> causal conv (kernel k_a) -> X_a --+
                  |                                       +-> q,k,v per branch
                  +--> causal conv (kernel k_b) -> X_b --+   -> srkd_ext.cross_self_attention
                                                             -> o_a (X_a attends to X_b), o_b
                                                             -> projection -> C
    fuse(S, C): gate  g = sigmoid(W [S; C]),  H = g * S + (1 - g) * C
                concat  H = W [S; C]
    -> LayerNorm -> scores against the tied item table.

The cross stream calls the fused op (C++/CUDA kernel, or its reference when the kernels are not
built); it is never re-implemented here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import srkd_ext
from srkd_ext.models.base import (
    SequentialRecommender,
    check_probability,
    padding_mask,
    right_aligned_positions,
)
from srkd_ext.models.dropout import FastDropout
from srkd_ext.models.transformer import TransformerStack

FUSIONS = ("gate", "concat")


class CausalConvBranch(nn.Module):
    """Conv1d over time with left padding (kernel - 1): output t sees inputs t-kernel+1..t. [B, L, d] -> [B, L, d]."""

    def __init__(self, hidden_dim: int, kernel_size: int):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel sizes must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(hidden_dim, hidden_dim, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.conv(F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0)))).transpose(1, 2)


class SRCD(SequentialRecommender):
    """forward: input_ids [B, L] -> hidden [B, L, hidden_dim], strictly causal."""

    arch = "srcd"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 32,
        num_layers: int = 1,
        num_heads: int = 2,
        inner_dim: int | None = None,
        kernel_sizes: tuple[int, int] | list[int] = (2, 4),
        cross_heads: int | None = None,
        fusion: str = "gate",
        dropout: float = 0.2,
        attention_dropout: float | None = None,
    ):
        inner_dim = inner_dim if inner_dim is not None else 4 * hidden_dim
        cross_heads = cross_heads if cross_heads is not None else num_heads
        kernel_sizes = [int(k) for k in kernel_sizes]
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        check_probability("dropout", dropout)
        check_probability("attention_dropout", attention_dropout)
        if len(kernel_sizes) != 2 or kernel_sizes[0] == kernel_sizes[1]:
            raise ValueError(f"kernel_sizes must be two different widths, got {kernel_sizes}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if hidden_dim % cross_heads != 0:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by cross_heads ({cross_heads})")
        super().__init__(
            num_items,
            max_len,
            hidden_dim,
            {
                "hidden_dim": hidden_dim,
                "num_layers": num_layers,
                "num_heads": num_heads,
                "inner_dim": inner_dim,
                "kernel_sizes": kernel_sizes,
                "cross_heads": cross_heads,
                "fusion": fusion,
                "dropout": dropout,
                "attention_dropout": attention_dropout,
            },
        )
        self.cross_heads = cross_heads
        self.fusion = fusion
        self.position_embedding = nn.Embedding(max_len, hidden_dim)
        self.embedding_dropout = FastDropout(dropout)
        self.self_stream = TransformerStack(hidden_dim, num_layers, num_heads, inner_dim, dropout, attention_dropout)
        self.branch_a = CausalConvBranch(hidden_dim, kernel_sizes[0])
        self.branch_b = CausalConvBranch(hidden_dim, kernel_sizes[1])
        self.qkv_a = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.qkv_b = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.cross_out = nn.Linear(2 * hidden_dim, hidden_dim)
        self.cross_dropout = FastDropout(dropout)
        self.cross_norm = nn.LayerNorm(hidden_dim)
        self.fuse = nn.Linear(2 * hidden_dim, hidden_dim)
        self.final_norm = nn.LayerNorm(hidden_dim)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def _heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, L, 3d] -> q, k, v each [B, H, L, d/H]."""
        batch, length, _ = x.shape
        x = x.view(batch, length, 3, self.cross_heads, self.hidden_dim // self.cross_heads)
        return [t.transpose(1, 2) for t in x.unbind(2)]

    def cross_stream(self, e: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """The extra user features: e [B, L, d] -> [B, L, d]."""
        batch, length, dim = e.shape
        q_a, k_a, v_a = self._heads(self.qkv_a(self.branch_a(e)))
        q_b, k_b, v_b = self._heads(self.qkv_b(self.branch_b(e)))
        o_a, o_b = srkd_ext.cross_self_attention(
            q_a, k_a, v_a, q_b, k_b, v_b, causal=True, key_padding_mask=pad
        )
        merged = torch.cat(
            [o_a.transpose(1, 2).reshape(batch, length, dim), o_b.transpose(1, 2).reshape(batch, length, dim)],
            dim=-1,
        )
        return self.cross_norm(self.cross_dropout(self.cross_out(merged)))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.check_input(input_ids)
        pad = padding_mask(input_ids)
        positions = right_aligned_positions(input_ids.size(1), self.max_len, input_ids.device)
        e = self.item_embedding(input_ids) * math.sqrt(self.hidden_dim) + self.position_embedding(positions)
        # Zero the padding so the convolutions' left edge sees nothing rather than bare positions.
        e = self.embedding_dropout(e) * (~pad).unsqueeze(-1).to(e.dtype)
        s = self.self_stream(e, pad)
        c = self.cross_stream(e, pad)
        both = torch.cat([s, c], dim=-1)
        if self.fusion == "gate":
            g = torch.sigmoid(self.fuse(both))
            h = g * s + (1.0 - g) * c
        else:
            h = self.fuse(both)
        return self.final_norm(h) * (~pad).unsqueeze(-1).to(h.dtype)
