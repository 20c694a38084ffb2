"""GRU4Rec (Hidasi et al., 2016) with cross-entropy over the full catalogue and tied item scores."""

from __future__ import annotations

import torch
from torch import nn

from srkd_ext.models.base import SequentialRecommender, check_probability, padding_mask
from srkd_ext.models.dropout import FastDropout


class GRU4Rec(SequentialRecommender):
    """Item embeddings -> multi-layer GRU -> projection back to the item space.

    forward: input_ids [B, L] -> hidden [B, L, hidden_dim]. A recurrent network is causal by
    construction. The GRU state is held at zero across the left padding (the padding steps are
    masked out of the state update), so a user's output does not depend on how much padding
    precedes the history.
    """

    arch = "gru4rec"

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_dim: int = 64,
        gru_dim: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.2,
    ):
        gru_dim = gru_dim if gru_dim is not None else hidden_dim
        check_probability("dropout", dropout)
        super().__init__(
            num_items,
            max_len,
            hidden_dim,
            {"hidden_dim": hidden_dim, "gru_dim": gru_dim, "num_layers": num_layers, "dropout": dropout},
        )
        self.embedding_dropout = FastDropout(dropout)
        self.gru = nn.GRU(hidden_dim, gru_dim, num_layers=num_layers, batch_first=True, bias=True)
        self.output = nn.Linear(gru_dim, hidden_dim)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.check_input(input_ids)
        pad = padding_mask(input_ids)
        x = self.embedding_dropout(self.item_embedding(input_ids))
        # Left padding: feeding the padding steps through the GRU would move the state away from
        # zero before the first real item. Reversing is not causal, so instead roll each row so
        # its real items come first (right padding), run the GRU, and roll the outputs back.
        shift = (pad.cumprod(1)).sum(1)  # leading padding per row
        index = (torch.arange(input_ids.size(1), device=input_ids.device)[None, :] + shift[:, None]) % input_ids.size(1)
        rolled = torch.gather(x, 1, index[:, :, None].expand_as(x))
        out, _ = self.gru(rolled)
        unroll = (torch.arange(input_ids.size(1), device=input_ids.device)[None, :] - shift[:, None]) % input_ids.size(1)
        out = torch.gather(out, 1, unroll[:, :, None].expand(-1, -1, out.size(-1)))
        return self.output(out) * (~pad).unsqueeze(-1).to(out.dtype)
