"""One skill's module: a policy over observation features plus a termination head.

A skill is small on purpose (an MLP over the agent's observation features): many of them live in
the skill memory, and skills of one architecture run batched, all at once, through
:class:`StackedSkillPolicies` (one gathered forward pass over stacked weights). In grid worlds a
skill may first run a small CNN over the grid slices of its features
(:mod:`skillbank.nn.grid_trunk`, ``skill-policy-v3``); stacked, those run as one convolution per
layer for all skills (grouped convolutions).

Discrete actions get logits; continuous actions get a Gaussian mean and a learned log-std. The
termination head gives the logit of "this skill is done at this observation"; with
``duration_bins`` it also reads how many actions the skill has taken in this call (one-hot, in
doubling bins, :func:`duration_one_hot`), as a semi-Markov option's termination may: a state
that ends one of a skill's segments and starts another (after a pick-up, the agent holds the
object, as at the start of a drop) is told apart by the time spent.

Example:
    >>> config = SkillPolicyConfig(obs_dim=8, action=ActionSpec("discrete", 3))
    >>> policy = SkillPolicy(config)
    >>> params, stop = policy(torch.zeros(2, 8))
    >>> tuple(params.shape), tuple(stop.shape)
    ((2, 3), (2,))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skillbank.nn.grid_trunk import GridTrunk, GridTrunkSpec, StackedGridTrunks

__all__ = [
    "MAX_DURATION_BINS",
    "ActionSpec",
    "SkillPolicy",
    "SkillPolicyConfig",
    "StackedSkillPolicies",
    "action_log_prob",
    "duration_one_hot",
    "make_mlp",
    "with_argument",
]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """The action space a module acts in.

    Attributes:
        kind: ``"discrete"`` (integer action ids) or ``"continuous"`` (real vectors).
        size: Number of actions (discrete) or A, the action dims (continuous).
    """

    kind: str
    size: int

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "continuous"):
            raise ValueError(
                f"ActionSpec.kind must be 'discrete' or 'continuous', got {self.kind!r}"
            )
        if self.size < 1:
            raise ValueError(f"ActionSpec.size must be >= 1, got {self.size}")

    @property
    def input_dim(self) -> int:
        """Width of an action fed to a network (one-hot for discrete)."""
        return self.size

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions (..., ) ids or (..., A) values -> (..., A) float inputs."""
        if self.kind == "discrete":
            return nn.functional.one_hot(actions.long(), self.size).float()
        return actions.float()


def action_log_prob(
    params: torch.Tensor, actions: torch.Tensor, spec: ActionSpec, log_std: torch.Tensor | None
) -> torch.Tensor:
    """Log-likelihood of actions under a module's action head, per step.

    Args:
        params: (..., A) logits (discrete) or means (continuous).
        actions: (...,) ids or (..., A) values.
        spec: The action space.
        log_std: (A,) log-std for continuous actions; ignored for discrete.

    Returns:
        (...,) log-probabilities.
    """
    if spec.kind == "discrete":
        logp = torch.log_softmax(params, dim=-1)
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    assert log_std is not None
    var = torch.exp(2 * log_std)
    sq = (actions.float() - params) ** 2 / var
    return -0.5 * (sq + 2 * log_std + math.log(2 * math.pi)).sum(-1)


MAX_DURATION_BINS = 16
"""Most duration bins a termination head may read (bin 15 starts at 2**13 + 1 actions)."""


def duration_one_hot(steps: torch.Tensor | None, bins: int, batch: int) -> torch.Tensor:
    """Actions taken so far in a skill's call (B,) -> one-hot (B, bins) in doubling bins.

    Bin 0 holds 0 actions, bin 1 one, bin 2 two, bin 3 three to four, bin 4 five to eight, ...,
    the last bin everything longer. ``steps`` ``None`` (duration unknown) gives zeros.

    >>> duration_one_hot(torch.tensor([0, 1, 2, 3, 4, 5, 9, 100]), 6, 8).argmax(1).tolist()
    [0, 1, 2, 3, 3, 4, 5, 5]
    """
    if steps is None:
        return torch.zeros(batch, bins)
    s = steps.float().clamp(min=0.0)
    # 1 + ceil(log2(s)) for s >= 1: 1 -> 1, 2 -> 2, 3..4 -> 3, 5..8 -> 4, ... (exact at powers of 2)
    index = torch.where(s > 0, 1 + torch.ceil(torch.log2(s.clamp(min=1.0))), torch.zeros_like(s))
    return nn.functional.one_hot(index.long().clamp(max=bins - 1), bins).float()


def make_mlp(in_dim: int, hidden_dims: Sequence[int]) -> nn.Sequential:
    """Linear/ReLU stack: Linear layers at even indices, as ``mlp_tensors`` in the registry."""
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden_dims:
        layers += [nn.Linear(prev, width), nn.ReLU()]
        prev = width
    return nn.Sequential(*layers)


@dataclass(frozen=True, slots=True)
class SkillPolicyConfig:
    """Shape of a skill module (:attr:`arch_id`: ``skill-policy-v1``, ``-v2`` with an argument,
    ``-v3`` with a grid trunk).

    Attributes:
        obs_dim: O, observation features in.
        action: The action space.
        hidden_dims: Widths of the shared trunk.
        arg_dim: D, width of the skill's argument (which object, where), given by the controller
            at the decision point and read beside the features; 0: no argument (v1).
        grid: The CNN over the grid slices of the features (v3), ``None``: an MLP over the flat
            features (v1/v2).
        argument: What the argument is: ``"learned"`` (a code the controller learned to give)
            or ``"hindsight"`` (the content of the cell the skill should end facing, one-hot per
            group; see :class:`skillbank.nn.controller.TargetSpec`). Stored only when
            ``"hindsight"``, so older configs read as ``"learned"``.
        duration_bins: The termination head also reads the actions taken in this call, one-hot
            in this many doubling bins (:func:`duration_one_hot`); 0: it reads the hidden state
            alone. Stored only when > 0, so older configs read as 0.
    """

    obs_dim: int
    action: ActionSpec
    hidden_dims: tuple[int, ...] = (128, 128)
    arg_dim: int = 0
    grid: GridTrunkSpec | None = None
    argument: str = "learned"
    duration_bins: int = 0

    def __post_init__(self) -> None:
        if self.obs_dim < 1:
            raise ValueError(f"SkillPolicyConfig.obs_dim must be >= 1, got {self.obs_dim}")
        if self.duration_bins and not 2 <= self.duration_bins <= MAX_DURATION_BINS:
            raise ValueError(
                f"SkillPolicyConfig.duration_bins must be 0 or 2..{MAX_DURATION_BINS}, "
                f"got {self.duration_bins}"
            )
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError("SkillPolicyConfig.hidden_dims must be positive widths (at least one)")
        if self.arg_dim < 0:
            raise ValueError(f"SkillPolicyConfig.arg_dim must be >= 0, got {self.arg_dim}")
        if self.argument not in ("learned", "hindsight"):
            raise ValueError(
                f"SkillPolicyConfig.argument must be learned|hindsight, got {self.argument!r}"
            )
        if self.argument == "hindsight" and not self.arg_dim:
            raise ValueError("SkillPolicyConfig: a hindsight argument needs arg_dim > 0")
        if self.grid is not None and self.grid.end > self.obs_dim:
            raise ValueError(
                f"SkillPolicyConfig.grid reaches feature {self.grid.end}, obs_dim is {self.obs_dim}"
            )

    @property
    def arch_id(self) -> str:
        """``skill-policy-v3`` with a grid trunk, ``-v2`` with an argument, else ``-v1``."""
        if self.grid is not None:
            return "skill-policy-v3"
        return "skill-policy-v2" if self.arg_dim else "skill-policy-v1"

    @property
    def film_on_grid(self) -> bool:
        """The argument modulates the grid trunk's first convolution (not the first MLP layer)."""
        return bool(self.arg_dim) and self.grid is not None and self.grid.arg_film != "mlp"

    @property
    def film_dim(self) -> int:
        """Width of the argument FiLM's output (0 without an argument)."""
        if not self.arg_dim:
            return 0
        if self.grid is not None and self.film_on_grid:
            return self.grid.film_dim()
        return 2 * self.hidden_dims[0]

    def to_json(self) -> dict[str, Any]:
        """The config as stored in the skill memory."""
        data: dict[str, Any] = {
            "obs_dim": self.obs_dim,
            "action_kind": self.action.kind,
            "action_size": self.action.size,
            "hidden_dims": list(self.hidden_dims),
        }
        if self.arg_dim:
            data["arg_dim"] = self.arg_dim
        if self.grid is not None:
            data["grid_trunk"] = self.grid.to_json()
        if self.argument != "learned":
            data["argument"] = self.argument
        if self.duration_bins:
            data["duration_bins"] = self.duration_bins
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SkillPolicyConfig:
        """Rebuild from :meth:`to_json` output (extra keys are ignored)."""
        grid = data.get("grid_trunk")
        return cls(
            obs_dim=int(data["obs_dim"]),
            action=ActionSpec(str(data["action_kind"]), int(data["action_size"])),
            hidden_dims=tuple(int(v) for v in data["hidden_dims"]),
            arg_dim=int(data.get("arg_dim", 0)),
            grid=GridTrunkSpec.from_json(grid) if grid is not None else None,
            argument=str(data.get("argument", "learned")),
            duration_bins=int(data.get("duration_bins", 0)),
        )


def with_argument(
    features: torch.Tensor, argument: torch.Tensor | None, arg_dim: int
) -> torch.Tensor:
    """The input of a skill: features (B, O) beside its argument (B, D) -> (B, O + D).

    A skill without an argument (``arg_dim`` 0) reads the features alone; a missing argument
    is zeros.
    """
    if not arg_dim:
        return features
    if argument is None:
        argument = features.new_zeros(features.shape[0], arg_dim)
    return torch.cat([features, argument], dim=-1)


class SkillPolicy(nn.Module):
    """Policy plus termination head over observation features (and the skill's argument).

    With ``config.grid`` (v3) the features pass a :class:`GridTrunk` (CNN over the grid slices)
    before the MLP; without it the MLP reads the flat features (v1/v2).
    """

    def __init__(self, config: SkillPolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.grid: GridTrunk | None = None
        in_dim = config.obs_dim
        if config.grid is not None:
            self.grid = GridTrunk(config.obs_dim, config.grid)
            in_dim = self.grid.out_dim
        self.trunk = make_mlp(in_dim + config.arg_dim, config.hidden_dims)
        width = config.hidden_dims[-1]
        self.action_head = nn.Linear(width, config.action.size)
        self.termination_head = nn.Linear(width + config.duration_bins, 1)
        # v2: the argument also scales and shifts the first layer (FiLM), so a unit can read
        # "where is the object the argument names" -- a product of argument and observation.
        # v3 with arg_film "grid": it scales the first convolution's channels instead.
        self.film: nn.Linear | None = None
        if config.arg_dim:
            self.film = nn.Linear(config.arg_dim, config.film_dim)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.log_std: nn.Parameter | None = None
        if config.action.kind == "continuous":
            self.log_std = nn.Parameter(torch.full((config.action.size,), -0.5))

    def forward(
        self,
        features: torch.Tensor,
        argument: torch.Tensor | None = None,
        steps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O), argument (B, D) and actions taken in the call so far (B,) ->
        action params (B, A), termination logits (B,)."""
        arg_dim = self.config.arg_dim
        if arg_dim and argument is None:
            argument = features.new_zeros(features.shape[0], arg_dim)
        film = self.film(argument) if self.film is not None and argument is not None else None
        grid_film = film is not None and self.config.film_on_grid
        if self.grid is not None:
            # (B, F): grid CNN features, then the other features
            features = self.grid(features, film if grid_film else None)
        inputs = with_argument(features, argument, arg_dim)  # (B, F + D)
        if film is None or grid_film:
            hidden = self.trunk(inputs)  # (B, H)
        else:
            gamma, beta = film.chunk(2, dim=-1)  # (B, H0) each
            hidden = torch.relu(self.trunk[0](inputs) * (1 + gamma) + beta)  # (B, H0)
            hidden = self.trunk[2:](hidden)  # (B, H)
        stop_in = hidden
        if self.config.duration_bins:
            duration = duration_one_hot(steps, self.config.duration_bins, hidden.shape[0])
            stop_in = torch.cat([hidden, duration], dim=-1)  # (B, H + T)
        return self.action_head(hidden), self.termination_head(stop_in).squeeze(-1)

    def log_prob(
        self, features: torch.Tensor, actions: torch.Tensor, argument: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-step log-likelihood (B,) of actions (B,) or (B, A) given features (B, O)."""
        params, _ = self(features, argument)
        return action_log_prob(params, actions, self.config.action, self.log_std)


class StackedSkillPolicies(nn.Module):
    """N skill policies of one config, evaluated together in one gathered pass.

    The weights of every skill are stacked along a leading N axis, so a step of B environments
    costs one batched matrix product per layer, however many skills are stored.

    Args:
        policies: The skills, all with the same :class:`SkillPolicyConfig`.
    """

    def __init__(self, policies: Sequence[SkillPolicy]) -> None:
        super().__init__()
        if not policies:
            raise ValueError("StackedSkillPolicies needs at least one policy")
        config = policies[0].config
        if any(p.config != config for p in policies):
            raise ValueError("StackedSkillPolicies: every policy must share one config")
        self.config = config
        self.num_skills = len(policies)
        linears = [i for i, m in enumerate(policies[0].trunk) if isinstance(m, nn.Linear)]
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        for index in linears:
            layers: list[nn.Linear] = [p.trunk[index] for p in policies]  # type: ignore[misc]
            weights.append(torch.stack([layer.weight.detach() for layer in layers]))  # (N, D, I)
            biases.append(torch.stack([layer.bias.detach() for layer in layers]))  # (N, D)
        self.trunk_weights = weights
        self.trunk_biases = biases
        self.action_weight = torch.stack([p.action_head.weight.detach() for p in policies])
        self.action_bias = torch.stack([p.action_head.bias.detach() for p in policies])
        self.stop_weight = torch.stack([p.termination_head.weight.detach() for p in policies])
        self.stop_bias = torch.stack([p.termination_head.bias.detach() for p in policies])
        self.film_weight: torch.Tensor | None = None
        self.film_bias: torch.Tensor | None = None
        if config.arg_dim:
            films = [p.film for p in policies]
            self.film_weight = torch.stack([f.weight.detach() for f in films if f is not None])
            self.film_bias = torch.stack([f.bias.detach() for f in films if f is not None])
        self.grid: StackedGridTrunks | None = None
        if config.grid is not None:
            self.grid = StackedGridTrunks([p.grid for p in policies if p.grid is not None])
            split = sum(config.grid.grid_out_dim(g) for g in config.grid.grids)
            self.first_grid_weight = weights[0][:, :, :split].contiguous()  # (N, D, F_grid)
            self.first_rest_weight = weights[0][:, :, split:].contiguous()  # (N, D, R + D_arg)

    @torch.no_grad()
    def forward(
        self,
        features: torch.Tensor,
        argument: torch.Tensor | None = None,
        steps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O), argument (B, D), actions taken in the call (B,) -> params (N, B, A),
        termination logits (N, B)."""
        config = self.config
        if config.arg_dim and argument is None:
            argument = features.new_zeros(features.shape[0], config.arg_dim)
        film: torch.Tensor | None = None
        if self.film_weight is not None and self.film_bias is not None and argument is not None:
            film = torch.einsum("bi,ndi->nbd", argument, self.film_weight) + self.film_bias[:, None]
        if self.grid is not None:
            # The first layer reads [grid features | other features | argument]: the grid part
            # differs per skill, the rest is shared, so it is never copied N times.
            grid, rest = self.grid(features, film if config.film_on_grid else None)
            shared = with_argument(rest, argument, config.arg_dim)  # (B, R + D)
            pre = torch.einsum("bng,ndg->nbd", grid, self.first_grid_weight)
            pre = pre + torch.einsum("bi,ndi->nbd", shared, self.first_rest_weight)  # (N, B, D)
        else:
            inputs = with_argument(features, argument, config.arg_dim)  # (B, O + D)
            pre = torch.einsum("bi,ndi->nbd", inputs, self.trunk_weights[0])
        pre = pre + self.trunk_biases[0][:, None]  # (N, B, D)
        if film is not None and not config.film_on_grid:
            gamma, beta = film.chunk(2, dim=-1)  # (N, B, D) each
            pre = pre * (1 + gamma) + beta
        hidden = torch.relu(pre)  # (N, B, D)
        for weight, bias in zip(self.trunk_weights[1:], self.trunk_biases[1:], strict=True):
            hidden = torch.relu(torch.einsum("nbi,ndi->nbd", hidden, weight) + bias[:, None])
        params = (
            torch.einsum("nbd,nad->nba", hidden, self.action_weight) + self.action_bias[:, None]
        )
        width = hidden.shape[-1]
        stop = (
            torch.einsum("nbd,nod->nbo", hidden, self.stop_weight[:, :, :width])
            + self.stop_bias[:, None]
        )  # (N, B, 1)
        if config.duration_bins:
            duration = duration_one_hot(steps, config.duration_bins, hidden.shape[1])  # (B, T)
            stop = stop + torch.einsum("bt,not->nbo", duration, self.stop_weight[:, :, width:])
        return params, stop.squeeze(-1)  # (N, B, A), (N, B)
