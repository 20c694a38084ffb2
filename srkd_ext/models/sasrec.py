"""SASRec (Kang & McAuley, 2018): self-attentive sequential recommendation.

Teachers (hidden_dim 128-256) and small students (hidden_dim 8-32) are the same class; size is
configuration only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from srkd_ext.models.base import (
    SequentialRecommender,
    check_probability,
    padding_mask,
    right_aligned_positions,
)
from srkd_ext.models.dropout import FastDropout
from srkd_ext.models.transformer import TransformerStack


class SASRec(SequentialRecommender):
    """Item + learned position embeddings -> pre-LN causal transformer blocks -> tied item scores.

    forward: input_ids [B, L] (int64, left-padded with 0, L <= max_len) -> hidden [B, L, hidden_dim].
    """

    arch = "sasrec"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_dim: int | None = None,
        dropout: float = 0.2,
        attention_dropout: float | None = None,
    ):
        inner_dim = inner_dim if inner_dim is not None else 4 * hidden_dim
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        check_probability("dropout", dropout)
        check_probability("attention_dropout", attention_dropout)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        super().__init__(
            num_items,
            max_len,
            hidden_dim,
            {
                "hidden_dim": hidden_dim,
                "num_layers": num_layers,
                "num_heads": num_heads,
                "inner_dim": inner_dim,
                "dropout": dropout,
                "attention_dropout": attention_dropout,
            },
        )
        self.position_embedding = nn.Embedding(max_len, hidden_dim)
        self.embedding_dropout = FastDropout(dropout)
        self.encoder = TransformerStack(hidden_dim, num_layers, num_heads, inner_dim, dropout, attention_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Small normal init as in SASRec/RecBole; the tied table doubles as the output layer.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Scaled item embeddings plus right-aligned position embeddings: [B, L] -> [B, L, d]."""
        positions = right_aligned_positions(input_ids.size(1), self.max_len, input_ids.device)
        x = self.item_embedding(input_ids) * math.sqrt(self.hidden_dim) + self.position_embedding(positions)
        return self.embedding_dropout(x)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.check_input(input_ids)
        return self.encoder(self.embed(input_ids), padding_mask(input_ids))
