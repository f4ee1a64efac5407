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

With ``window`` W > 0 there is one pointer, not one per group: it picks an *anchor* position,
and every group reads the tokens at offsets -W .. +W around it, each offset through its own
learned value table (a phrase, not a word). The target is then a mixture over anchors, one
phrase each: :meth:`TokenCopyHead.phrases` gives the anchors' log-weights and their phrases'
logits, for a mixture likelihood in training and the best anchor's phrase in action, so the
groups describe one thing of the task: "pick up the red key and go to a blue ball" cannot give
"blue key" (the type pointer on "key", the colour pointer on "blue"), which per-group pointers
did at a quarter of their decisions in failed BossLevel episodes.

With ``context`` L > 0 the pointers' keys are *contextual*: L pre-norm self-attention layers
(:class:`torch.nn.TransformerEncoderLayer`, padding masked) run over the token and position
embeddings first, as a pointer network's keys are its encoder's states (Vinyals et al., 2015),
so a word's key can say which part of the task it is in ("the red key" of the clause after "after
you"), not only which word at which position it is. The values stay the words' own: what is
copied is still the word.

With ``done_blocks`` K > 0 the pointers also read what is *done*: K target-shaped blocks (B,
K * C) (e.g. the targets each skill's finished calls were given, what the agent has held). Each
token's score is shifted by how well the values it names (its row of the value table, a
categorical per group) match each block, times a learned weight per pointer and block, so a word
naming a thing already handled can be passed over ("pick up the purple ball and pick up the
green ball": after the green ball, the pointers leave "green") — for every word at once, where a
free bilinear form of the block and the token learns word pairs by heart.

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

__all__ = ["CONTEXT_HEADS", "COPY_DIM", "TokenCopyHead"]

COPY_DIM = 32
"""Width of the copy head's token/position embeddings and queries."""

CONTEXT_HEADS = 2
"""Attention heads of each context layer (the width must divide by it)."""


class TokenCopyHead(nn.Module):
    """Per one-hot group, attention over token positions -> that group's logits.

    Args:
        tokens: Where the token sequence lies in the features (its one-hot positions are read).
        groups: Sizes of the target's one-hot groups (they sum to C, the logits' width).
        hidden_dim: Width of the controller's hidden state (the queries' input).
        dim: Width of the embeddings and queries.
        window: W; 0: one pointer per group, each reading the word it points at; W > 0: one
            anchor pointer, every group reading the words at offsets -W .. +W from it.
        done_blocks: K, the target-shaped blocks of the "done" input the pointers also read
            (its width is K * C); 0: none.
        context: L, self-attention layers making the keys contextual; 0: the embeddings alone.
    """

    def __init__(
        self,
        tokens: TokenSlice,
        groups: tuple[int, ...],
        hidden_dim: int,
        dim: int = COPY_DIM,
        window: int = 0,
        done_blocks: int = 0,
        context: int = 0,
    ) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"TokenCopyHead window must be >= 0, got {window}")
        if done_blocks < 0:
            raise ValueError(f"TokenCopyHead done_blocks must be >= 0, got {done_blocks}")
        if context < 0:
            raise ValueError(f"TokenCopyHead context must be >= 0, got {context}")
        if context and dim % CONTEXT_HEADS:
            raise ValueError(
                f"TokenCopyHead dim {dim} must divide into {CONTEXT_HEADS} heads with context"
            )
        self.tokens = tokens
        self.groups = groups
        self.dim = dim
        self.window = window
        self.pointers = 1 if window else len(groups)
        self.token_embed = nn.Linear(tokens.vocab, dim, bias=False)
        self.position_embed = nn.Parameter(torch.randn(tokens.positions, dim) * 0.1)
        self.context = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                CONTEXT_HEADS,
                dim_feedforward=2 * dim,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(context)
        )
        self.query = nn.Linear(hidden_dim, dim * self.pointers)
        # Per pointer and done block, the weight of a token's match with the block (0: inert).
        self.done_weight: nn.Parameter | None = None
        if done_blocks:
            self.done_weight = nn.Parameter(torch.zeros(self.pointers, done_blocks))
        # Token (at each offset) -> logits of every group's values; starts at zero (the copy
        # adds nothing yet).
        self.values = nn.Linear(tokens.vocab, (2 * window + 1) * sum(groups), bias=False)
        nn.init.zeros_(self.values.weight)
        mask = torch.zeros(len(groups), sum(groups))
        start = 0
        for g, size in enumerate(groups):
            mask[g, start : start + size] = 1.0
            start += size
        self.register_buffer("group_mask", mask, persistent=False)

    def _scores(
        self, features: torch.Tensor, hidden: torch.Tensor, done: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O), hidden (B, D_h) (and what is done (B, K * C)) -> the tokens'
        one-hots (B, P, V) and every pointer's scores (B, G or 1, P), -inf on padding."""
        batch = features.shape[0]
        t = self.tokens
        one_hot = features[:, t.start : t.end].reshape(batch, t.positions, t.vocab)  # (B, P, V)
        valid = one_hot.sum(-1) > 0.5  # (B, P)
        keys = self._keys(one_hot, valid)  # (B, P, d)
        queries = self.query(hidden).view(batch, self.pointers, self.dim)  # (B, G or 1, d)
        scores = torch.einsum("bgd,bpd->bgp", queries, keys) / math.sqrt(self.dim)
        if (done is None) != (self.done_weight is None):
            raise ValueError("TokenCopyHead: a done input (B, K * C) goes with done_blocks > 0")
        if done is not None and self.done_weight is not None:
            scores = scores + torch.einsum(
                "gk,bkp->bgp", self.done_weight, self._match(one_hot, done)
            )
        return one_hot, scores.masked_fill(~valid[:, None, :], float("-inf"))

    def _keys(self, one_hot: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The pointers' keys (B, P, d): token plus position embeddings, through the context
        layers (padding masked; a row without tokens attends everywhere, its scores are masked
        afterwards)."""
        keys: torch.Tensor = self.token_embed(one_hot) + self.position_embed  # (B, P, d)
        if len(self.context):
            padding = ~valid & valid.any(-1, keepdim=True)  # (B, P)
            for layer in self.context:
                keys = layer(keys, src_key_padding_mask=padding)
        return keys

    def phrases(
        self, features: torch.Tensor, hidden: torch.Tensor, done: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With a window: the anchors' log-weights (B, P) (-inf on padding) and each anchor's
        phrase logits (B, P, C). A row without tokens weighs every position alike, and every
        phrase there is empty (zero logits).

        Raises:
            ValueError: Without a window.
        """
        if not self.window:
            raise ValueError("TokenCopyHead.phrases needs a window > 0")
        one_hot, scores = self._scores(features, hidden, done)
        scores = scores[:, 0]  # (B, P)
        empty = ~torch.isfinite(scores).any(-1, keepdim=True)  # (B, 1)
        scores = torch.where(empty, torch.zeros_like(scores), scores)
        return torch.log_softmax(scores, dim=-1), self._phrase_values(one_hot)

    def forward(
        self, features: torch.Tensor, hidden: torch.Tensor, done: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Features (B, O) and hidden state (B, D_h) (and what is done (B, K * C), with
        ``done_blocks``) -> copied logits (B, C) (with a window, the phrases' logits weighted by
        their anchors' attention)."""
        one_hot, scores = self._scores(features, hidden, done)
        attention = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # (B, G or 1, P); no tokens: 0
        if self.window:
            return torch.einsum("bp,bpc->bc", attention[:, 0], self._phrase_values(one_hot))
        values = self.values(one_hot)  # (B, P, C)
        copied = torch.einsum("bgp,bpc->bgc", attention, values)  # (B, G, C)
        mask = self.group_mask
        assert isinstance(mask, torch.Tensor)
        return (copied * mask).sum(1)  # (B, C): group g's columns from its own attention

    def _match(self, one_hot: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """How well each token (B, P, V) names each done block (B, K * C): per block and
        position (B, K, P), the summed probability the token's own value row (a softmax per
        group, detached: the match reads the table, it does not train it) gives the block's
        values."""
        width = sum(self.groups)
        rows = self.values(one_hot).view(*one_hot.shape[:2], 2 * self.window + 1, width)
        own = rows[:, :, self.window].detach()  # (B, P, C): the token's own offset
        probs = torch.cat(
            [torch.softmax(part, dim=-1) for part in torch.split(own, list(self.groups), -1)], -1
        )
        blocks = done.view(done.shape[0], -1, width)  # (B, K, C)
        return torch.einsum("bkc,bpc->bkp", blocks, probs)

    def _phrase_values(self, one_hot: torch.Tensor) -> torch.Tensor:
        """One-hot tokens (B, P, V) -> per anchor position the logits (B, P, C) its phrase gives:
        the sum over offsets o in -W .. +W of offset o's table applied to the token at p + o
        (nothing past either end)."""
        batch, positions, _ = one_hot.shape
        w, width = self.window, sum(self.groups)
        tables = self.values(one_hot).view(batch, positions, 2 * w + 1, width)  # (B, P, 2W+1, C)
        padded = nn.functional.pad(tables, (0, 0, 0, 0, w, w))  # (B, P + 2W, 2W+1, C)
        return sum(  # type: ignore[return-value]
            padded[:, w + o : w + o + positions, o + w] for o in range(-w, w + 1)
        )
