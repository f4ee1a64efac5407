"""Flat behavioural cloning: it learns, it is deterministic, and it acts through the harness."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from skillbank.bench.baselines.flat_bc import (
    FlatBCConfig,
    FlatBCNet,
    FlatBCPolicy,
    count_parameters,
    flat_bc_parameter_count,
    match_parameter_count,
    scale_width,
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


def _vector_config(**overrides: Any) -> FlatBCConfig:
    """Flat BC on :func:`_vector_episode`'s 3-d observations, with a small memory."""
    encoder = VectorEncoderConfig(obs_dim=3, hidden_dims=(32,), out_dim=32)
    return FlatBCConfig(encoder=encoder, memory_dim=16, episodes_per_batch=8, **overrides)


def test_continuous_bc_learns_and_is_deterministic() -> None:
    episodes = [_vector_episode(s) for s in range(40)]
    config = _vector_config(epochs=30, lr=3e-3, seed=3)
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


def test_wall_time_budget_stops_training_early() -> None:
    episodes = [_vector_episode(s) for s in range(40)]
    config = _vector_config(epochs=100_000, max_seconds=0.5)
    result = train_flat_bc(episodes, config)
    assert result.num_updates < 100_000 * 5 and len(result.losses) == len(set(result.losses))
    assert result.train_seconds < 5.0
    with pytest.raises(ValueError, match="max_seconds"):
        FlatBCConfig(max_seconds=0.0)
    # On the process clock the budget is this process's CPU time (sleeping others don't count).
    cpu = train_flat_bc(episodes, dataclasses.replace(config, budget_clock="process"))
    assert cpu.num_updates < 100_000 * 5 and cpu.train_cpu_seconds < 5.0
    with pytest.raises(ValueError, match="budget_clock"):
        FlatBCConfig(budget_clock="gpu")


@pytest.mark.parametrize("target", [50_000, 739_207, 1_950_000, 6_000_000])
def test_width_search_matches_a_parameter_count(target: int) -> None:
    config, count = match_parameter_count(FlatBCConfig(num_actions=7), target, 7)
    assert abs(count / target - 1) <= 0.2, (count, target)
    assert count == flat_bc_parameter_count(config, 7)
    assert config.encoder is not None
    # The count is the real network's: build it and count again.
    assert count == count_parameters(FlatBCNet(config.encoder, config.memory_dim, 7, True))
    # Other settings are kept; only widths change, the CNN's only when the target is below it.
    assert config.num_actions == 7 and config.encoder.num_film == 2
    assert isinstance(config.encoder, BabyAIEncoderConfig)
    assert (config.encoder.conv_channels == 64) == (target > 200_000)
    # A tiny starting point grows as far as it needs to.
    _, tiny_count = match_parameter_count(FlatBCConfig(encoder=TINY_BABYAI), target, 7)
    assert abs(tiny_count / target - 1) <= 0.2, (tiny_count, target)


def test_width_scaling_is_monotone_and_keeps_vector_inputs() -> None:
    base = FlatBCConfig(encoder=VectorEncoderConfig(obs_dim=39, hidden_dims=(64, 64)))
    counts = [flat_bc_parameter_count(scale_width(base, w), 4, False) for w in (0.5, 1, 2)]
    assert counts[0] < counts[1] < counts[2]
    wide = scale_width(base, 2)
    assert isinstance(wide.encoder, VectorEncoderConfig)
    assert wide.encoder.obs_dim == 39 and wide.encoder.hidden_dims == (128, 128)
    assert wide.memory_dim == 256
    with pytest.raises(ValueError, match="width"):
        scale_width(base, 0)
    with pytest.raises(ValueError, match="encoder"):
        flat_bc_parameter_count(FlatBCConfig(), 7)


def test_flat_bc_reads_the_explored_map_when_the_demonstrations_carry_it() -> None:
    pytest.importorskip("minigrid")
    from skillbank.bench.baselines.flat_bc import encoder_for
    from skillbank.envs.babyai import BabyAIDemoSource

    mapped = BabyAIDemoSource("GoToRedBall", map_radius=2).demonstrate(0)
    plain = BabyAIDemoSource("GoToRedBall").demonstrate(0)
    assert mapped is not None and plain is not None
    encoder = encoder_for(None, mapped)
    assert isinstance(encoder, BabyAIEncoderConfig)
    assert (encoder.map_size, encoder.map_planes) == (5, 17)
    assert encoder_for(None, plain) == BabyAIEncoderConfig()
    tiny = BabyAIEncoderConfig(out_dim=8, conv_channels=4, image_embed_dim=4, num_film=0)
    assert encoder_for(tiny, mapped) == dataclasses.replace(tiny, map_size=5, map_planes=17)
    config = FlatBCConfig(encoder=tiny, memory_dim=8, num_actions=7, epochs=1)
    result = train_flat_bc([mapped], config)
    assert result.config.encoder is not None and result.config.encoder.map_size == 5


def test_flat_bc_reads_the_coarse_map_view_when_the_demonstrations_carry_it() -> None:
    pytest.importorskip("minigrid")
    from skillbank.bench.baselines.flat_bc import encoder_for
    from skillbank.envs.babyai import BabyAIDemoSource
    from skillbank.envs.grid_map import COARSE_MAP_PLANES, episode_with_map

    plain = BabyAIDemoSource("GoToRedBall").demonstrate(0)
    assert plain is not None
    both = episode_with_map(plain, 2, coarse_radius=1)
    tiny = BabyAIEncoderConfig(out_dim=8, conv_channels=4, image_embed_dim=4, num_film=0)
    encoder = encoder_for(tiny, both)
    assert isinstance(encoder, BabyAIEncoderConfig)
    assert (encoder.map_size, encoder.coarse_size) == (5, 3)
    assert encoder.coarse_planes == len(COARSE_MAP_PLANES)
    config = FlatBCConfig(encoder=tiny, memory_dim=8, num_actions=7, epochs=1)
    result = train_flat_bc([both], config)
    assert result.config.encoder is not None and result.config.encoder.coarse_size == 3
