"""The controller: context (observation features, mission or task inside them) -> a query.

At each decision point the query attends over the stored skill keys with scaled dot products
against unit-normalised keys (so every key, not just the corners of their convex hull, can win);
the top-k keys pick the skill(s), and their softmax weights mix the actions when k > 1.

With a :class:`TargetSpec` (``skill-controller-target-v1``) the argument is not a learned code
but the content the chosen skill should end facing: a target head gives, per one-hot group of a
grid cell (object type, colour, state ...), a categorical over its values, and the argument is
the argmax of each group as one-hot (a "hindsight" target: trained on the content of the
interaction cell where each demonstrated segment ended, as in hindsight relabelling, Andrychowicz
et al., 2017; Ghosh et al., 2019). With ``target_tokens`` (``skill-controller-target-v2``) the
target is copied off the task's tokens by attention (:mod:`skillbank.nn.token_copy`) and a prior
from the query fills in what no token names; with ``copy_window`` W > 0
(``skill-controller-target-v3``) one pointer picks an anchor token and every group reads the
phrase around it (offsets -W .. +W), so the target's type and colour come from one phrase.

With ``history_skills`` N > 0 (``skill-controller-history-v1``) the controller also reads the
episode's *call history*, a (B, 2N + 1) vector (:func:`history_features`): a one-hot of the last
skill called (or "none yet") and each skill's call count (capped at :data:`HISTORY_COUNT_CAP`,
scaled to [0, 1]), joined to the trunk's input. Two states that look alike (before and after
"go next to Y") then differ by what has been done, as in options with a previous-option input
(Bacon et al., 2017; the call history of HAL, Jiang et al., 2019). With ``history_targets`` as
well (``skill-controller-history-v2``, a target head only) it also reads, per skill, the targets
its finished calls were given (their one-hots OR-ed, N x C more inputs): "picked up the purple
ball" and "went to the purple ball" then differ, so a mission's next part can be told from the
one just done. With ``held_cell`` (also ``-history-v2``) it reads what the agent has held so far
in the episode: the contents of that cell of the target's grid (an inventory slot), OR-ed over
every step up to now (C more inputs). With ``copy_done`` (``skill-controller-history-v3``) the
copy head's pointers read those targets / that inventory too: each token's score shifts by how
well the values it names match them (:class:`~skillbank.nn.token_copy.TokenCopyHead`
``done_blocks``), so a word naming something already handled can be passed over directly, not
only through the trunk.

Example:
    >>> controller = Controller(ControllerConfig(obs_dim=8, latent_dim=4))
    >>> keys = torch.eye(4)
    >>> tuple(attention_logits(controller(torch.zeros(2, 8)), keys).shape)
    (2, 4)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skillbank.nn.grid_trunk import GridSlice, GridTrunk, GridTrunkSpec, TokenSlice
from skillbank.nn.skill_policy import make_mlp
from skillbank.nn.token_copy import COPY_DIM, TokenCopyHead

__all__ = [
    "HISTORY_COUNT_CAP",
    "Controller",
    "ControllerConfig",
    "TargetSpec",
    "attention_logits",
    "call_history",
    "group_cross_entropy",
    "group_one_hot",
    "history_features",
    "top_k_attention",
]

HISTORY_COUNT_CAP = 1
"""Default cap of the call counts: above it they read as this many (count / cap, in [0, 1]);
1: whether each skill has been called (measured best, see ``ControllerTrainConfig.history``)."""


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """Where a hindsight target is read: one cell of a grid slice of the features.

    Attributes:
        grid: The grid slice (its ``channels`` C are the cell's features).
        cell: The interaction cell, an index into the H * W cells (row-major).
        groups: Sizes of the cell's one-hot groups, summing to C.
    """

    grid: GridSlice
    cell: int
    groups: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.cell < self.grid.height * self.grid.width:
            raise ValueError(
                f"TargetSpec.cell {self.cell} is outside the "
                f"{self.grid.height}x{self.grid.width} grid"
            )
        if not self.groups or min(self.groups) < 1 or sum(self.groups) != self.grid.channels:
            raise ValueError(
                f"TargetSpec.groups {self.groups} must be positive and sum to the grid's "
                f"{self.grid.channels} channels"
            )

    @property
    def dim(self) -> int:
        """C, the width of a target (the cell's features)."""
        return self.grid.channels

    @property
    def start(self) -> int:
        """First feature of the cell in the flat features."""
        return self.grid.cell_start(self.cell)

    def content(self, features: torch.Tensor, cell: int | None = None) -> torch.Tensor:
        """The content of the interaction cell (or another ``cell`` of the grid) in features
        (B, O): (B, C), 0/1 (one-hot per group)."""
        start = self.grid.cell_start(self.cell if cell is None else cell)
        return (features[:, start : start + self.dim] > 0.5).float()

    def beside(self) -> tuple[int, ...]:
        """The cells sharing a side with the interaction cell (up to four, row-major order)."""
        row, col = divmod(self.cell, self.grid.width)
        around = ((row - 1, col), (row, col - 1), (row, col + 1), (row + 1, col))
        return tuple(
            r * self.grid.width + c
            for r, c in around
            if 0 <= r < self.grid.height and 0 <= c < self.grid.width
        )

    def contents_beside(self, features: torch.Tensor) -> torch.Tensor:
        """The contents of the cells :meth:`beside` in features (B, O): (B, M, C), 0/1."""
        starts = [self.grid.cell_start(cell) for cell in self.beside()]
        cells = [features[:, start : start + self.dim] for start in starts]
        return (torch.stack(cells, dim=1) > 0.5).float()

    def to_json(self) -> dict[str, Any]:
        """The spec as stored in a controller config."""
        return {"grid": self.grid.to_json(), "cell": self.cell, "groups": list(self.groups)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetSpec:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            GridSlice.from_json(data["grid"]),
            int(data["cell"]),
            tuple(int(g) for g in data["groups"]),
        )


def group_one_hot(
    logits: torch.Tensor, groups: tuple[int, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Logits (B, C) -> every group's argmax as one-hot (B, C); with a ``generator``, a value
    drawn from the group's softmax instead."""
    parts = []
    for part in torch.split(logits, list(groups), dim=-1):
        if generator is None:
            index = part.argmax(-1)
        else:
            index = torch.multinomial(torch.softmax(part, -1), 1, generator=generator).squeeze(1)
        parts.append(nn.functional.one_hot(index, part.shape[-1]).to(logits.dtype))
    return torch.cat(parts, dim=-1)


def group_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, groups: tuple[int, ...]
) -> torch.Tensor:
    """Summed over groups, the cross-entropy (B,) of logits (B, C) against one-hot targets
    (B, C); a group with no value set in the target (all zeros) counts nothing."""
    loss = logits.new_zeros(logits.shape[0])
    for part, want in zip(
        torch.split(logits, list(groups), dim=-1),
        torch.split(target, list(groups), dim=-1),
        strict=True,
    ):
        loss = loss - (torch.log_softmax(part, dim=-1) * want).sum(-1)
    return loss


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Shape of the controller (:attr:`arch_id`: ``skill-controller-v1``, ``-v2`` with arguments,
    ``-v3`` with a grid trunk, ``skill-controller-target-v1`` with a hindsight target head,
    ``skill-controller-history-v1`` with a call-history input beside any of these).

    Attributes:
        obs_dim: O, observation features in (the mission or task id is part of them).
        latent_dim: Z, the skill key dimension the query lives in.
        hidden_dims: Widths of the MLP.
        arg_dim: D, width of the argument it hands the chosen skill; 0: none (v1).
        grid: The CNN over the grid slices of the features (v3; its ``arg_film`` is unused),
            ``None``: an MLP over the flat features (v1/v2).
        target: The argument is a target cell content (a target head, no arg head); then
            ``arg_dim`` must equal ``target.dim``. ``None``: a learned argument (or none).
        history_skills: N, the primitive skills (key rows ``0 .. N-1``) whose calls so far in
            the episode the controller reads (``skill-controller-history-v1``); 0: none.
        history_cap: Call counts above this read as this many (with a history).
        history_targets: With a history and a target head, the history also holds per skill
            the targets of its finished calls (N x C inputs, ``skill-controller-history-v2``).
        held_cell: With a history and a target head, the cell of the target's grid that shows
            what the agent holds; the history also holds its contents OR-ed over the episode's
            steps so far (C inputs, ``skill-controller-history-v2``). ``None``: not read.
        target_tokens: With a target head, the token sequence (e.g. the mission) a
            :class:`~skillbank.nn.token_copy.TokenCopyHead` copies target values from
            (``skill-controller-target-v2``: the copy plus a prior from the query, see
            :meth:`Controller._target_logits`); ``None``: a linear head over the hidden state.
        copy_dim: Width of the copy head's embeddings (with ``target_tokens``).
        copy_window: W, with ``target_tokens``: 0: one pointer per group; W > 0: one anchor
            pointer whose phrase (offsets -W .. +W) gives every group
            (``skill-controller-target-v3``).
        copy_done: With a copy head and ``history_targets`` and/or ``held_cell``, the copy
            head's pointers also read that part of the history, the *done* input
            (``skill-controller-history-v3``).
        copy_context: L, with ``target_tokens``: self-attention layers over the tokens that
            make the copy head's keys contextual (``skill-controller-target-v4`` without a
            history); 0: the token and position embeddings alone.
    """

    obs_dim: int
    latent_dim: int
    hidden_dims: tuple[int, ...] = (128, 128)
    arg_dim: int = 0
    grid: GridTrunkSpec | None = None
    target: TargetSpec | None = None
    history_skills: int = 0
    history_cap: int = HISTORY_COUNT_CAP
    target_tokens: TokenSlice | None = None
    copy_dim: int = COPY_DIM
    copy_window: int = 0
    history_targets: bool = False
    held_cell: int | None = None
    copy_done: bool = False
    copy_context: int = 0

    def __post_init__(self) -> None:
        extended = self.history_targets or self.held_cell is not None
        if extended and not (self.history_skills and self.target is not None):
            raise ValueError(
                "ControllerConfig.history_targets and .held_cell need a call history "
                "(history_skills > 0) and a target head (target)"
            )
        if self.copy_done and not (extended and self.target_tokens is not None):
            raise ValueError(
                "ControllerConfig.copy_done needs a copy head (target_tokens) and a history "
                "holding targets or what was held (history_targets or held_cell)"
            )
        if self.held_cell is not None and self.target is not None:
            cells = self.target.grid.height * self.target.grid.width
            if not 0 <= self.held_cell < cells:
                raise ValueError(f"ControllerConfig.held_cell {self.held_cell} is off the grid")
        if self.copy_dim < 1:
            raise ValueError(f"ControllerConfig.copy_dim must be >= 1, got {self.copy_dim}")
        if self.copy_window < 0:
            raise ValueError(f"ControllerConfig.copy_window must be >= 0, got {self.copy_window}")
        if self.copy_window and self.target_tokens is None:
            raise ValueError("ControllerConfig.copy_window needs target_tokens (a copy head)")
        if self.copy_context < 0:
            raise ValueError(f"ControllerConfig.copy_context must be >= 0, got {self.copy_context}")
        if self.copy_context and self.target_tokens is None:
            raise ValueError("ControllerConfig.copy_context needs target_tokens (a copy head)")
        if self.target_tokens is not None:
            if self.target is None:
                raise ValueError("ControllerConfig.target_tokens needs a target head (target)")
            if self.target_tokens.end > self.obs_dim:
                raise ValueError("ControllerConfig.target_tokens reach past obs_dim")
        if self.history_skills < 0 or self.history_cap < 1:
            raise ValueError(
                "ControllerConfig.history_skills must be >= 0 and .history_cap >= 1, got "
                f"{self.history_skills} and {self.history_cap}"
            )
        if self.obs_dim < 1 or self.latent_dim < 1:
            raise ValueError("ControllerConfig.obs_dim and .latent_dim must be >= 1")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError("ControllerConfig.hidden_dims must be positive widths (at least one)")
        if self.arg_dim < 0:
            raise ValueError(f"ControllerConfig.arg_dim must be >= 0, got {self.arg_dim}")
        if self.grid is not None and self.grid.end > self.obs_dim:
            raise ValueError(
                f"ControllerConfig.grid reaches feature {self.grid.end}, obs_dim is {self.obs_dim}"
            )
        if self.target is not None:
            if self.arg_dim != self.target.dim:
                raise ValueError(
                    f"ControllerConfig.arg_dim must be the target's width {self.target.dim} "
                    f"with a target head, got {self.arg_dim}"
                )
            if self.target.grid.offset + self.target.grid.size > self.obs_dim:
                raise ValueError("ControllerConfig.target's grid reaches past obs_dim")

    @property
    def history_dim(self) -> int:
        """H = 2 N + 1 (+ N C with ``history_targets``), the width of the call-history input
        (0 without one)."""
        if not self.history_skills:
            return 0
        targets = self.history_skills * self.arg_dim if self.history_targets else 0
        held = self.arg_dim if self.held_cell is not None else 0
        return 2 * self.history_skills + 1 + targets + held

    @property
    def done_blocks(self) -> int:
        """K, the target-shaped blocks of the copy head's *done* input (the history past the
        call counts: N with ``history_targets``, one more with ``held_cell``) with
        ``copy_done``; 0 without."""
        if not self.copy_done:
            return 0
        return (self.history_skills if self.history_targets else 0) + (
            1 if self.held_cell is not None else 0
        )

    @property
    def arch_id(self) -> str:
        """``skill-controller-history-v3`` with a copy head reading what is done,
        ``skill-controller-history-v2`` with a call history holding targets,
        ``skill-controller-history-v1`` with a call-history input (any trunk and heads),
        ``skill-controller-target-v4`` with a copy head whose keys read the tokens' context,
        ``-target-v3`` with a target copied off a phrase of the tokens,
        ``-target-v2`` with a target copied off tokens, ``-target-v1`` with a
        target head, ``skill-controller-v3`` with a grid trunk, ``-v2`` when it gives
        arguments, else ``-v1``."""
        if self.history_skills:
            if self.copy_done:
                return "skill-controller-history-v3"
            v2 = self.history_targets or self.held_cell is not None
            return f"skill-controller-history-v{2 if v2 else 1}"
        if self.target is not None:
            if self.target_tokens is None:
                return "skill-controller-target-v1"
            if self.copy_context:
                return "skill-controller-target-v4"
            return (
                "skill-controller-target-v3" if self.copy_window else "skill-controller-target-v2"
            )
        if self.grid is not None:
            return "skill-controller-v3"
        return "skill-controller-v2" if self.arg_dim else "skill-controller-v1"

    def to_json(self) -> dict[str, Any]:
        """The config as stored in the skill memory."""
        data: dict[str, Any] = {
            "obs_dim": self.obs_dim,
            "latent_dim": self.latent_dim,
            "hidden_dims": list(self.hidden_dims),
        }
        if self.arg_dim:
            data["arg_dim"] = self.arg_dim
        if self.grid is not None:
            data["grid_trunk"] = self.grid.to_json()
        if self.target is not None:
            data["target"] = self.target.to_json()
        if self.target_tokens is not None:
            data["target_tokens"] = self.target_tokens.to_json()
            data["copy_dim"] = self.copy_dim
            if self.copy_window:
                data["copy_window"] = self.copy_window
            if self.copy_context:
                data["copy_context"] = self.copy_context
        if self.history_skills:
            data["history_skills"] = self.history_skills
            data["history_cap"] = self.history_cap
            if self.history_targets:
                data["history_targets"] = True
            if self.held_cell is not None:
                data["held_cell"] = self.held_cell
            if self.copy_done:
                data["copy_done"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControllerConfig:
        """Rebuild from :meth:`to_json` output (extra keys are ignored)."""
        grid, target = data.get("grid_trunk"), data.get("target")
        tokens = data.get("target_tokens")
        return cls(
            obs_dim=int(data["obs_dim"]),
            latent_dim=int(data["latent_dim"]),
            hidden_dims=tuple(int(v) for v in data["hidden_dims"]),
            arg_dim=int(data.get("arg_dim", 0)),
            grid=GridTrunkSpec.from_json(grid) if grid is not None else None,
            target=TargetSpec.from_json(target) if target is not None else None,
            history_skills=int(data.get("history_skills", 0)),
            history_cap=int(data.get("history_cap", HISTORY_COUNT_CAP)),
            target_tokens=TokenSlice.from_json(tokens) if tokens is not None else None,
            copy_dim=int(data.get("copy_dim", COPY_DIM)),
            copy_window=int(data.get("copy_window", 0)),
            history_targets=bool(data.get("history_targets", False)),
            held_cell=int(data["held_cell"]) if data.get("held_cell") is not None else None,
            copy_done=bool(data.get("copy_done", False)),
            copy_context=int(data.get("copy_context", 0)),
        )


class Controller(nn.Module):
    """MLP from observation features to a query in skill-key space (and the skill's argument).

    The argument head (v2) sees the same context as the query; its output, in [-1, 1], is what a
    parameterised skill reads beside its observations until it stops (e.g. which object to go to).
    With a target head instead, the argument is the predicted target content (one-hot per group).
    With ``history_skills`` > 0 every method also takes the call history (B, H) of
    :func:`history_features`, joined to the features after the grid trunk.
    """

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.config = config
        self.grid: GridTrunk | None = None
        in_dim = config.obs_dim
        if config.grid is not None:
            self.grid = GridTrunk(config.obs_dim, config.grid)
            in_dim = self.grid.out_dim
        in_dim += config.history_dim
        self.trunk = make_mlp(in_dim, config.hidden_dims)
        self.query_head = nn.Linear(config.hidden_dims[-1], config.latent_dim)
        self.arg_head: nn.Linear | None = None
        self.target_head: nn.Linear | None = None
        self.target_copy: TokenCopyHead | None = None
        if config.target is not None and config.target_tokens is not None:
            # target-v2: a prior per chosen skill (from its query) + values copied off tokens
            self.target_head = nn.Linear(config.latent_dim, config.target.dim)
            self.target_copy = TokenCopyHead(
                config.target_tokens,
                config.target.groups,
                config.hidden_dims[-1],
                config.copy_dim,
                config.copy_window,
                config.done_blocks,
                config.copy_context,
            )
        elif config.target is not None:
            self.target_head = nn.Linear(config.hidden_dims[-1], config.target.dim)
        elif config.arg_dim:
            self.arg_head = nn.Linear(config.hidden_dims[-1], config.arg_dim)

    def _done(self, history: torch.Tensor | None) -> torch.Tensor | None:
        """The copy head's *done* input (B, K * C): the history past its call counts, with
        ``copy_done``; ``None`` without."""
        if not self.config.copy_done or history is None:
            return None
        return history[:, 2 * self.config.history_skills + 1 :]

    def _target_logits(
        self,
        features: torch.Tensor,
        hidden: torch.Tensor,
        query: torch.Tensor,
        done: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Target logits (B, C) from features (B, O), the hidden state (B, D_h) and the query
        (B, Z) computed from it (and the copy head's done input (B, K * C)).

        target-v1: a linear head over the hidden state. target-v2: values copied off the task's
        tokens plus a prior from the query (B, Z), detached, so it says what the chosen skill
        ends facing when no token names it (an empty cell after a pick-up) and cannot learn the
        episode by heart the way a head over the whole hidden state does.
        """
        assert self.target_head is not None
        if self.target_copy is None:
            return self.target_head(hidden)  # type: ignore[no-any-return]
        prior = self.target_head(query.detach())  # (B, C)
        return prior + self.target_copy(features, hidden, done)  # type: ignore[no-any-return]

    def _phrase_logits(
        self,
        features: torch.Tensor,
        hidden: torch.Tensor,
        query: torch.Tensor,
        done: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """target-v3: the anchors' log-weights (B, P) and every anchor's target logits
        (B, P, C): its phrase plus the prior from the detached query."""
        assert self.target_head is not None and self.target_copy is not None
        prior = self.target_head(query.detach())  # (B, C)
        log_weight, phrases = self.target_copy.phrases(features, hidden, done)
        return log_weight, prior[:, None, :] + phrases

    def _best_phrase_logits(
        self,
        features: torch.Tensor,
        hidden: torch.Tensor,
        query: torch.Tensor,
        done: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """target-v3 in action: the target logits (B, C) of the most likely anchor's phrase, or
        with a ``generator`` of an anchor drawn by its weight (the prior alone where the task
        has no tokens: every phrase is empty)."""
        log_weight, logits = self._phrase_logits(features, hidden, query, done)
        if generator is None:
            anchor = log_weight.argmax(-1)
        else:
            anchor = torch.multinomial(log_weight.exp(), 1, generator=generator).squeeze(1)
        return logits[torch.arange(len(logits)), anchor]  # (B, C)

    def target_loss(
        self, features: torch.Tensor, target: torch.Tensor, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The negative log-likelihood (B,) of one-hot targets (B, C) (groups with no value set
        count nothing): :func:`group_cross_entropy` of the target logits; target-v3: of the
        mixture over anchors, -log sum_p w_p P(target | phrase p), so the target is one phrase.

        Raises:
            ValueError: If the controller has no target head.
        """
        if self.target_head is None or self.config.target is None:
            raise ValueError("Controller.target_loss: this controller has no target")
        groups = self.config.target.groups
        hidden = self._hidden(features, history)
        query = self.query_head(hidden)
        done = self._done(history)
        if not self.config.copy_window:
            logits = self._target_logits(features, hidden, query, done)
            return group_cross_entropy(logits, target, groups)
        log_weight, logits = self._phrase_logits(features, hidden, query, done)
        batch, positions, width = logits.shape
        wanted = target[:, None, :].expand(batch, positions, width).reshape(-1, width)
        nll = group_cross_entropy(logits.reshape(-1, width), wanted, groups).view(batch, positions)
        return -torch.logsumexp(log_weight - nll, dim=-1)  # (B,)

    def _hidden(self, features: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
        """Features (B, O) and call history (B, H) -> the MLP's last hidden layer (B, D_h)."""
        if (history is None) != (self.config.history_dim == 0):
            raise ValueError(
                "Controller: a call history (B, H) is needed exactly when "
                f"ControllerConfig.history_skills > 0 (here {self.config.history_skills})"
            )
        if self.grid is not None:
            features = self.grid(features)  # (B, F)
        if history is not None:
            features = torch.cat([features, history], dim=-1)  # (B, F + H)
        hidden: torch.Tensor = self.trunk(features)
        return hidden

    def forward(self, features: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """Features (B, O) (and call history (B, H)) -> queries (B, Z)."""
        return self.query_head(self._hidden(features, history))  # type: ignore[no-any-return]

    def query_and_argument(
        self,
        features: torch.Tensor,
        history: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O) (and call history (B, H)) -> queries (B, Z) and arguments (B, D)
        (D = 0 without an arg head). A target is every group's most likely value; with a
        ``generator``, drawn from its softmax (target-v3: the anchor too, from its weights)."""
        hidden = self._hidden(features, history)
        query = self.query_head(hidden)
        if self.target_head is not None:
            assert self.config.target is not None
            done = self._done(history)
            if self.config.copy_window:
                logits = self._best_phrase_logits(features, hidden, query, done, generator)
            else:
                logits = self._target_logits(features, hidden, query, done)
            return query, group_one_hot(logits, self.config.target.groups, generator)
        if self.arg_head is None:
            return query, hidden.new_zeros(hidden.shape[0], 0)
        return query, torch.tanh(self.arg_head(hidden))

    def query_and_target_logits(
        self, features: torch.Tensor, history: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O) (and call history (B, H)) -> queries (B, Z) and target logits (B, C)
        (a target head only).

        Raises:
            ValueError: If the controller has no target head.
        """
        if self.target_head is None:
            raise ValueError("Controller.query_and_target_logits: this controller has no target")
        hidden = self._hidden(features, history)
        query = self.query_head(hidden)
        return query, self._target_logits(features, hidden, query, self._done(history))


def history_features(
    last: torch.Tensor,
    counts: torch.Tensor,
    cap: int = HISTORY_COUNT_CAP,
    targets: torch.Tensor | None = None,
    held: torch.Tensor | None = None,
) -> torch.Tensor:
    """The call-history input (B, 2N + 1 [+ N C] [+ C]) of a controller over N skills.

    Args:
        last: (B,) the key row of the last skill called, -1: none yet (rows >= N read as none).
        counts: (B, N) calls of each skill so far.
        cap: Counts above this read as this many.
        targets: (B, N, C) per skill, the targets of its finished calls OR-ed (0/1), or
            ``None`` (a history without targets).
        held: (B, C) what the agent has held so far (0/1), or ``None``.

    Returns:
        One-hot of the last call over N + 1 slots (slot N: none), then the counts capped at
        ``cap`` and divided by it, then the targets flattened, then what was held.
    """
    num_skills = counts.shape[-1]
    slot = torch.where((last >= 0) & (last < num_skills), last, num_skills)  # (B,)
    one_hot = nn.functional.one_hot(slot, num_skills + 1).float()  # (B, N + 1)
    scaled = counts.clamp(0, cap).float() / cap  # (B, N)
    parts = [one_hot, scaled]
    if targets is not None:
        parts.append(targets.flatten(1).float())
    if held is not None:
        parts.append(held.float())
    return torch.cat(parts, dim=-1)


def call_history(
    prefixes: Sequence[Sequence[int]], num_skills: int, cap: int = HISTORY_COUNT_CAP
) -> torch.Tensor:
    """:func:`history_features` (B, 2N + 1) of B call sequences (key rows, oldest first);
    rows outside ``0 .. N-1`` (unknown skills) are left out."""
    last = torch.full((len(prefixes),), -1, dtype=torch.long)  # (B,)
    counts = torch.zeros(len(prefixes), num_skills, dtype=torch.long)  # (B, N)
    for b, prefix in enumerate(prefixes):
        known = [k for k in prefix if 0 <= k < num_skills]
        if known:
            last[b] = known[-1]
            counts[b] = torch.bincount(torch.tensor(known), minlength=num_skills)
    return history_features(last, counts, cap)


def attention_logits(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Scaled dot product of queries (B, Z) with unit-normalised keys (N, Z) -> (B, N)."""
    unit = keys / keys.norm(dim=-1, keepdim=True).clamp(min=1e-8)  # (N, Z)
    scores: torch.Tensor = torch.matmul(queries, unit.T)  # (B, N)
    return scores / math.sqrt(keys.shape[-1])


def top_k_attention(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse attention: the k best skills per row and their softmax weights.

    Args:
        logits: (B, N) attention logits.
        k: How many skills to keep (clipped to N).

    Returns:
        indices (B, K) best first, weights (B, K) summing to 1 per row.
    """
    k = max(1, min(k, logits.shape[-1]))
    values, indices = logits.topk(k, dim=-1)  # (B, K)
    return indices, torch.softmax(values, dim=-1)
