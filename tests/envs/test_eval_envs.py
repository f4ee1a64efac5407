"""Evaluation environments by id, and the default success rule."""

from __future__ import annotations

import pytest

from skillbank.envs.eval_envs import default_success, eval_env_factory
from skillbank.errors import EnvironmentNotFoundError


def test_toy_id_builds_fresh_envs_per_index() -> None:
    env_id, make = eval_env_factory("toy/fetch")
    assert env_id == "toy/fetch"
    first, second = make(0), make(1)
    assert first is not second
    obs, _ = first.reset(seed=3)
    assert obs is not None


def test_babyai_alias_resolves_to_its_canonical_id() -> None:
    pytest.importorskip("minigrid")
    env_id, make = eval_env_factory("BabyAI-GoToLocal-v0")
    assert env_id == "babyai/GoToLocal"
    obs, _ = make(0).reset(seed=0)
    assert "mission" in obs


def test_unknown_id_names_close_matches() -> None:
    with pytest.raises(EnvironmentNotFoundError, match="toy/fetch"):
        eval_env_factory("toy/fetc")


def test_default_success_prefers_info_success_then_positive_terminal_reward() -> None:
    assert default_success(0.0, False, True, {"success": 1.0})
    assert not default_success(1.0, True, False, {"success": 0.0})
    assert default_success(0.7, True, False, {})
    assert not default_success(0.0, True, False, {})
    assert not default_success(0.7, False, True, {})
