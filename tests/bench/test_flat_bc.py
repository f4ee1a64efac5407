"""Flat behavioural cloning: it learns, it is deterministic, and it acts through the harness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from skillbank.bench.baselines.flat_bc import (
    FlatBCConfig,
    FlatBCPolicy,
    count_parameters,
    train_flat_bc,
)
from skillbank.envs.rollout import evaluate_policy
from skillbank.errors import TrainingError
from skillbank.nn.encoders import BabyAIEncoderConfig, VectorEncoderConfig
from skillbank.types import Episode, TaskSpec

TINY_BABYAI = BabyAIEncoderConfig(
    out_dim=32, image_embed_dim=16, conv_channels=16, num_film=1, word_dim=16, mission_dim=32
)


def _vector_episode(seed: int, steps: int = 6) -> Episode:
    """Actions are a fixed linear function of the observation: a learnable target."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(steps + 1, 3)).astype(np.float32)
    actions = (obs[:-1] @ np.array([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]], np.float32)).astype(
        np.float32
    )
    return Episode(
        observations={"obs": obs},
        actions=actions,
        rewards=np.zeros(steps, np.float32),
        terminations=np.zeros(steps, np.bool_),
        truncations=np.zeros(steps, np.bool_),
        task=TaskSpec("test/linear"),
        success=True,
        seed=seed,
        demonstrator="test",
    )


def test_continuous_bc_learns_and_is_deterministic() -> None:
    episodes = [_vector_episode(s) for s in range(40)]
    config = FlatBCConfig(
        encoder=VectorEncoderConfig(obs_dim=3, hidden_dims=(32,), out_dim=32),
        memory_dim=16,
        epochs=30,
        episodes_per_batch=8,
        lr=3e-3,
        seed=3,
    )
    first = train_flat_bc(episodes, config)
    assert first.losses[-1] < 0.2 * first.losses[0]
    assert first.num_updates == 30 * 5 and first.num_transitions == 240
    assert first.num_params == count_parameters(first.model)
    second = train_flat_bc(episodes, config)
    assert first.losses == second.losses
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_memoryless_variant_and_max_updates() -> None:
    episodes = [_vector_episode(s) for s in range(8)]
    config = FlatBCConfig(
        encoder=VectorEncoderConfig(obs_dim=3, hidden_dims=(), out_dim=8),
        memory_dim=0,
        epochs=5,
        max_updates=3,
        episodes_per_batch=4,
    )
    result = train_flat_bc(episodes, config)
    assert result.num_updates == 3 and result.model.memory is None


def test_no_actions_is_a_training_error() -> None:
    episode = _vector_episode(0)
    state_only = Episode(**{**{f: getattr(episode, f) for f in episode.__slots__}, "actions": None})
    with pytest.raises(TrainingError, match="no demonstrations"):
        train_flat_bc([state_only], FlatBCConfig())
    with pytest.raises(ValueError, match="epochs"):
        FlatBCConfig(epochs=0)


class RandomPolicy:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_envs = 0

    def reset(self, num_envs: int) -> None:
        self.num_envs = num_envs

    def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        return self.rng.integers(0, 3, self.num_envs)  # left, right, forward

    def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
        pass


@pytest.mark.babyai
def test_babyai_bc_beats_random_on_gotoredball() -> None:
    pytest.importorskip("minigrid")
    from skillbank.envs.babyai import BabyAIDemoSource
    from skillbank.envs.rollout import babyai_env_factory

    source = BabyAIDemoSource("GoToRedBall")
    episodes = [e for e in (source.demonstrate(s) for s in range(150)) if e is not None]
    config = FlatBCConfig(
        encoder=TINY_BABYAI,
        memory_dim=32,
        num_actions=7,
        epochs=12,
        episodes_per_batch=16,
        lr=3e-3,
        seed=0,
    )
    result = train_flat_bc(episodes, config)
    assert result.losses[-1] < result.losses[0]
    make_env = babyai_env_factory("GoToRedBall")
    bc = evaluate_policy(make_env, FlatBCPolicy(result.model), episodes=64, seed=10**9)
    rand = evaluate_policy(make_env, RandomPolicy(0), episodes=64, seed=10**9)
    assert bc.success_rate > rand.success_rate + 0.15, (bc.success_rate, rand.success_rate)
