"""The controller: context (observation features, mission or task inside them) -> a query.

At each decision point the query attends over the stored skill keys with scaled dot products
against unit-normalised keys (so every key, not just the corners of their convex hull, can win);
the top-k keys pick the skill(s), and their softmax weights mix the actions when k > 1.

Example:
    >>> controller = Controller(ControllerConfig(obs_dim=8, latent_dim=4))
    >>> keys = torch.eye(4)
    >>> tuple(attention_logits(controller(torch.zeros(2, 8)), keys).shape)
    (2, 4)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skillbank.nn.grid_trunk import GridTrunk, GridTrunkSpec
from skillbank.nn.skill_policy import make_mlp

__all__ = ["Controller", "ControllerConfig", "attention_logits", "top_k_attention"]


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Shape of the controller (:attr:`arch_id`: ``skill-controller-v1``, ``-v2`` with arguments,
    ``-v3`` with a grid trunk).

    Attributes:
        obs_dim: O, observation features in (the mission or task id is part of them).
        latent_dim: Z, the skill key dimension the query lives in.
        hidden_dims: Widths of the MLP.
        arg_dim: D, width of the argument it hands the chosen skill; 0: none (v1).
        grid: The CNN over the grid slices of the features (v3; its ``arg_film`` is unused),
            ``None``: an MLP over the flat features (v1/v2).
    """

    obs_dim: int
    latent_dim: int
    hidden_dims: tuple[int, ...] = (128, 128)
    arg_dim: int = 0
    grid: GridTrunkSpec | None = None

    def __post_init__(self) -> None:
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

    @property
    def arch_id(self) -> str:
        """``skill-controller-v3`` with a grid trunk, ``-v2`` when it gives arguments, else
        ``-v1``."""
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
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControllerConfig:
        """Rebuild from :meth:`to_json` output (extra keys are ignored)."""
        grid = data.get("grid_trunk")
        return cls(
            obs_dim=int(data["obs_dim"]),
            latent_dim=int(data["latent_dim"]),
            hidden_dims=tuple(int(v) for v in data["hidden_dims"]),
            arg_dim=int(data.get("arg_dim", 0)),
            grid=GridTrunkSpec.from_json(grid) if grid is not None else None,
        )


class Controller(nn.Module):
    """MLP from observation features to a query in skill-key space (and the skill's argument).

    The argument head (v2) sees the same context as the query; its output, in [-1, 1], is what a
    parameterised skill reads beside its observations until it stops (e.g. which object to go to).
    """

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.config = config
        self.grid: GridTrunk | None = None
        in_dim = config.obs_dim
        if config.grid is not None:
            self.grid = GridTrunk(config.obs_dim, config.grid)
            in_dim = self.grid.out_dim
        self.trunk = make_mlp(in_dim, config.hidden_dims)
        self.query_head = nn.Linear(config.hidden_dims[-1], config.latent_dim)
        self.arg_head: nn.Linear | None = None
        if config.arg_dim:
            self.arg_head = nn.Linear(config.hidden_dims[-1], config.arg_dim)

    def _hidden(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, O) -> the MLP's last hidden layer (B, H)."""
        if self.grid is not None:
            features = self.grid(features)  # (B, F)
        hidden: torch.Tensor = self.trunk(features)
        return hidden

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, O) -> queries (B, Z)."""
        return self.query_head(self._hidden(features))  # type: ignore[no-any-return]

    def query_and_argument(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O) -> queries (B, Z) and arguments (B, D) (D = 0 without an arg head)."""
        hidden = self._hidden(features)
        query = self.query_head(hidden)
        if self.arg_head is None:
            return query, hidden.new_zeros(hidden.shape[0], 0)
        return query, torch.tanh(self.arg_head(hidden))


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
