"""A copy head: target logits read off the task's tokens by attention (a pointer over positions).

A controller that names hindsight targets (:class:`~skillbank.nn.controller.TargetSpec`: per
one-hot group of a cell, e.g. object type and colour, a categorical) must find the target in the
task description. An MLP over one-hot token positions learns that separately for every position
and word (held-out colour accuracy 0.40-0.90 on the demo data); a copy head shares it: per group,
a query from the controller's hidden state attends over the token positions (keys: token and
position embeddings), and the attended tokens' value rows (a learned token -> group-value table)
give the logits, as pointer/copy networks do (Vinyals et al., 2015; See et al., 2017). "go to the
red ball" -> the colour group attends to "red", and "red" -> the red colour, whatever its
position. Domain-agnostic: it reads any token sequence of the features and any one-hot groups.

Example:
    >>> from skillbank.nn.grid_trunk import TokenSlice
    >>> head = TokenCopyHead(TokenSlice(offset=0, vocab=5, positions=3), (2, 3), hidden_dim=8)
    >>> features = torch.zeros(4, 20)
    >>> tuple(head(features, torch.zeros(4, 8)).shape)
    (4, 5)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from skillbank.nn.grid_trunk import TokenSlice

__all__ = ["COPY_DIM", "TokenCopyHead"]

COPY_DIM = 32
"""Width of the copy head's token/position embeddings and queries."""


class TokenCopyHead(nn.Module):
    """Per one-hot group, attention over token positions -> that group's logits.

    Args:
        tokens: Where the token sequence lies in the features (its one-hot positions are read).
        groups: Sizes of the target's one-hot groups (they sum to C, the logits' width).
        hidden_dim: Width of the controller's hidden state (the queries' input).
        dim: Width of the embeddings and queries.
    """

    def __init__(
        self,
        tokens: TokenSlice,
        groups: tuple[int, ...],
        hidden_dim: int,
        dim: int = COPY_DIM,
    ) -> None:
        super().__init__()
        self.tokens = tokens
        self.groups = groups
        self.dim = dim
        self.token_embed = nn.Linear(tokens.vocab, dim, bias=False)
        self.position_embed = nn.Parameter(torch.randn(tokens.positions, dim) * 0.1)
        self.query = nn.Linear(hidden_dim, dim * len(groups))
        # Token -> logits of every group's values; starts at zero (the copy adds nothing yet).
        self.values = nn.Linear(tokens.vocab, sum(groups), bias=False)
        nn.init.zeros_(self.values.weight)
        mask = torch.zeros(len(groups), sum(groups))
        start = 0
        for g, size in enumerate(groups):
            mask[g, start : start + size] = 1.0
            start += size
        self.register_buffer("group_mask", mask, persistent=False)

    def forward(self, features: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Features (B, O) and hidden state (B, D_h) -> copied logits (B, C)."""
        batch = features.shape[0]
        t = self.tokens
        one_hot = features[:, t.start : t.end].reshape(batch, t.positions, t.vocab)  # (B, P, V)
        valid = one_hot.sum(-1) > 0.5  # (B, P)
        keys = self.token_embed(one_hot) + self.position_embed  # (B, P, d)
        queries = self.query(hidden).view(batch, len(self.groups), self.dim)  # (B, G, d)
        scores = torch.einsum("bgd,bpd->bgp", queries, keys) / math.sqrt(self.dim)
        scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        attention = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # (B, G, P); no tokens: 0
        values = self.values(one_hot)  # (B, P, C)
        copied = torch.einsum("bgp,bpc->bgc", attention, values)  # (B, G, C)
        mask = self.group_mask
        assert isinstance(mask, torch.Tensor)
        return (copied * mask).sum(1)  # (B, C): group g's columns from its own attention
