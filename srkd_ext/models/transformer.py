"""Pre-LN causal transformer blocks, shared by SASRec and SRCD's ordinary self-attention stream."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srkd_ext.models.dropout import FastDropout


def causal_attention_mask(pad: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask (True = may attend) for left-padded sequences: pad [B, L] -> [B, 1, L, L].

    Query t sees keys s <= t that are not padding. A padding query would see no key at all (and
    softmax over nothing is NaN), so it is allowed to see itself; its output is never used.
    """
    length = pad.size(1)
    causal = torch.ones(length, length, dtype=torch.bool, device=pad.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=pad.device)
    return ((causal & ~pad[:, None, :]) | eye)[:, None]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention; x [B, L, d] -> [B, L, d]."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float):
        super().__init__()
        if hidden_dim % num_heads != 0:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads).unbind(2)
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(o.transpose(1, 2).reshape(batch, length, dim))


class TransformerBlock(nn.Module):
    """x + Attn(LN(x)), then + FFN(LN(x)); position-wise except for the causal attention."""

    def __init__(self, hidden_dim: int, num_heads: int, inner_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden_dim)
        self.attn = CausalSelfAttention(hidden_dim, num_heads, attention_dropout)
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, inner_dim),
            nn.GELU(),
            nn.Linear(inner_dim, hidden_dim),
        )
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), attn_mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class TransformerStack(nn.Module):
    """n blocks and a final LayerNorm; outputs at padded positions are zero.

    dropout applies to the embeddings' residual branches (attention and FFN outputs);
    attention_dropout to the attention probabilities (inside scaled_dot_product_attention, which
    then takes its slower math path on CPU: 0 keeps the fused kernel).
    """

    def __init__(
        self, hidden_dim: int, num_layers: int, num_heads: int, inner_dim: int, dropout: float,
        attention_dropout: float,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_dim, num_heads, inner_dim, dropout, attention_dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_dim)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        # No real position attends to a padded one, so padded states need no zeroing between
        # blocks; they are zeroed once at the end.
        attn_mask = causal_attention_mask(pad)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.final_norm(x) * (~pad).unsqueeze(-1).to(x.dtype)
