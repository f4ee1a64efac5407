"""A composite skill: a learned sequence of stored skills, run by a small sub-controller.

The sub-controller is a :class:`~skillbank.nn.controller.Controller` (whatever encoder and widths
the top controller has) whose query head gives one query per position of the sequence and whose
argument head gives one argument per child call: at position p (children run so far) it reads the
observation features (B, O), takes query p (B, Z) and attends over the children's keys plus a
learned "done" key -> (B, C+1) logits (the last column: the composite is done), and hands the
chosen child argument p (B, D). Stored as ``skill-sequence-v1``: the controller's tensors under
``controller.``, the children's keys ``child_keys`` (C, Z) (copied: the composite keeps working
however the memory grows) and ``done_key`` (Z,). The children stay separate stored skills; the
composite only names them (``children``: skill ids).

Example:
    >>> from skillbank.nn.controller import ControllerConfig
    >>> config = CompositeSkillConfig.for_sequence(
    ...     ControllerConfig(obs_dim=6, latent_dim=4, hidden_dims=(8,), arg_dim=2),
    ...     children=("skill-a", "skill-b"), sequence=(0, 1), latent_dim=4, arg_dim=2)
    >>> skill = CompositeSkill(config, torch.eye(2, 4))
    >>> logits, argument = skill(torch.zeros(3, 6), torch.tensor([0, 1, 2]))
    >>> tuple(logits.shape), tuple(argument.shape)
    ((3, 3), (3, 2))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skillbank.nn.controller import Controller, ControllerConfig, attention_logits

__all__ = ["COMPOSITE_ARCH", "CompositeSkill", "CompositeSkillConfig"]

COMPOSITE_ARCH = "skill-sequence-v1"


@dataclass(frozen=True, slots=True)
class CompositeSkillConfig:
    """Shape of a composite skill (``skill-sequence-v1``).

    Attributes:
        controller: The sub-controller's config; ``latent_dim`` is (L + 1) * Z (a query per
            position, the last one asks "done?") and ``arg_dim`` L * D (an argument per call).
        children: C distinct child skill ids (in first-use order).
        sequence: L >= 2 positions into ``children``: the demonstrated order.
        latent_dim: Z, the skill key dimension.
        arg_dim: D, the argument width each child reads (0: unparameterised children).
    """

    controller: ControllerConfig
    children: tuple[str, ...]
    sequence: tuple[int, ...]
    latent_dim: int
    arg_dim: int

    def __post_init__(self) -> None:
        if not self.children or len(set(self.children)) != len(self.children):
            raise ValueError(f"CompositeSkillConfig.children must be distinct ids: {self.children}")
        if len(self.sequence) < 2 or not all(0 <= p < len(self.children) for p in self.sequence):
            raise ValueError(
                f"CompositeSkillConfig.sequence must hold >= 2 indices into children: "
                f"{self.sequence}"
            )
        if self.latent_dim < 1 or self.arg_dim < 0:
            raise ValueError("CompositeSkillConfig: latent_dim >= 1 and arg_dim >= 0")
        if self.controller.latent_dim != (len(self.sequence) + 1) * self.latent_dim:
            raise ValueError("CompositeSkillConfig.controller.latent_dim must be (L + 1) * Z")
        if self.controller.arg_dim != len(self.sequence) * self.arg_dim:
            raise ValueError("CompositeSkillConfig.controller.arg_dim must be L * D")

    @classmethod
    def for_sequence(
        cls,
        base: ControllerConfig,
        children: tuple[str, ...],
        sequence: tuple[int, ...],
        latent_dim: int,
        arg_dim: int,
    ) -> CompositeSkillConfig:
        """The config of a composite over ``children`` whose sub-controller is ``base`` (the
        top controller's config: same encoder and widths) with per-position heads."""
        length = len(sequence)
        controller = dataclasses.replace(
            base, latent_dim=(length + 1) * latent_dim, arg_dim=length * arg_dim
        )
        return cls(controller, children, sequence, latent_dim, arg_dim)

    @property
    def arch_id(self) -> str:
        """``skill-sequence-v1``."""
        return COMPOSITE_ARCH

    @property
    def length(self) -> int:
        """L, calls in the demonstrated sequence."""
        return len(self.sequence)

    def to_json(self) -> dict[str, Any]:
        """The config as stored in the skill memory."""
        return {
            "controller_arch": self.controller.arch_id,
            "controller": self.controller.to_json(),
            "children": list(self.children),
            "sequence": list(self.sequence),
            "latent_dim": self.latent_dim,
            "arg_dim": self.arg_dim,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompositeSkillConfig:
        """Rebuild from :meth:`to_json` output (extra keys are ignored)."""
        return cls(
            controller=ControllerConfig.from_json(data["controller"]),
            children=tuple(str(c) for c in data["children"]),
            sequence=tuple(int(p) for p in data["sequence"]),
            latent_dim=int(data["latent_dim"]),
            arg_dim=int(data["arg_dim"]),
        )


class CompositeSkill(nn.Module):
    """The sub-controller of a composite skill; see the module docstring.

    Args:
        config: Its shape.
        child_keys: (C, Z) the children's keys, in ``config.children`` order.
    """

    def __init__(self, config: CompositeSkillConfig, child_keys: torch.Tensor) -> None:
        super().__init__()
        if tuple(child_keys.shape) != (len(config.children), config.latent_dim):
            raise ValueError(
                f"CompositeSkill child_keys must be (C, Z) = "
                f"{(len(config.children), config.latent_dim)}, got {tuple(child_keys.shape)}"
            )
        self.config = config
        self.controller = Controller(config.controller)
        self.child_keys: torch.Tensor
        self.register_buffer("child_keys", child_keys.detach().clone().float())
        self.done_key = nn.Parameter(torch.randn(config.latent_dim))

    def forward(
        self, features: torch.Tensor, position: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O) at call positions (B,) -> choice logits (B, C+1), arguments (B, D).

        Column c < C of the logits picks child ``children[c]``; column C ends the composite.
        Positions past L use the last query ("done?") and the last argument.
        """
        z, d, length = self.config.latent_dim, self.config.arg_dim, self.config.length
        rows = torch.arange(features.shape[0])
        queries, arguments = self.controller.query_and_argument(features)  # (B, (L+1)Z), (B, LD)
        query = queries.view(-1, length + 1, z)[rows, position.clamp(max=length)]  # (B, Z)
        keys = torch.cat([self.child_keys, self.done_key[None]])  # (C+1, Z)
        logits = attention_logits(query, keys)  # (B, C+1)
        if not d:
            return logits, features.new_zeros(features.shape[0], 0)
        argument = arguments.view(-1, length, d)[rows, position.clamp(max=length - 1)]  # (B, D)
        return logits, argument
