"""Environments to evaluate in, by id: per-index factories and the default success rule.

:func:`eval_env_factory` turns any accepted environment id into ``make_env(index)`` for
:func:`~skillbank.envs.rollout.evaluate_policy`: BabyAI levels are built as their demos are
recorded, Meta-World tasks seeded like their demos (no MT1 task pre-sampling), everything else
through :func:`~skillbank.envs.registry.make_env`.

Example:
    >>> env_id, make = eval_env_factory("toy/fetch")
    >>> env_id
    'toy/fetch'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from skillbank.envs.metaworld_source import metaworld_env_factory
from skillbank.envs.registry import make_env, resolve_env_id
from skillbank.envs.rollout import babyai_env_factory, babyai_success, info_success

__all__ = ["default_success", "eval_env_factory"]


def eval_env_factory(
    env_id: str, *, map_radius: int | None = None, coarse_radius: int | None = None
) -> tuple[str, Callable[[int], Any]]:
    """(canonical id, ``make_env(index)``) of any accepted environment id; BabyAI levels add the
    explored map of ``map_radius`` (and its coarse view of ``coarse_radius``) to their
    observations, if given.

    Raises:
        EnvironmentNotFoundError: Unknown id.
        MissingExtraError: The id needs an extra that is not installed.
    """
    spec = resolve_env_id(env_id)
    if spec.family == "babyai":
        return spec.env_id, babyai_env_factory(
            spec.name, map_radius=map_radius, coarse_radius=coarse_radius
        )
    if spec.family == "metaworld":
        return spec.env_id, metaworld_env_factory(spec.name)

    def make(index: int) -> Any:
        return make_env(spec.env_id)

    return spec.env_id, make


def default_success(
    reward: float, terminated: bool, truncated: bool, info: Mapping[str, Any]
) -> bool:
    """``info["success"]`` where the environment reports it, else a positive terminal reward."""
    if "success" in info:
        return info_success(reward, terminated, truncated, info)
    return babyai_success(reward, terminated, truncated, info)
