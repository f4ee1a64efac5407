"""Vectorised evaluation: seeds, per-env resets, success accounting, BabyAI observation layout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import pytest

from skillbank.envs.rollout import (
    BatchPolicy,
    RolloutResult,
    babyai_success,
    evaluate_policy,
    info_success,
)


class CountdownEnv(gym.Env[np.ndarray, np.int64]):
    """Succeeds when the agent presses action 1 exactly on the step equal to seed % 5."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        assert seed is not None
        self.target = seed % 5
        self.t = 0
        return np.array([self.target, self.t], np.float32), {}

    def step(self, action: Any) -> Any:
        pressed = int(action) == 1
        success = pressed and self.t == self.target
        self.t += 1
        terminated = pressed or self.t > 5
        obs = np.array([self.target, self.t], np.float32)
        return obs, float(success), terminated, False, {"success": success}


class OraclePolicy:
    """Presses 1 when t == target; checks the harness keeps per-env state straight."""

    def __init__(self) -> None:
        self.resets: list[int] = []
        self.done_calls: list[list[int]] = []

    def reset(self, num_envs: int) -> None:
        self.resets.append(num_envs)

    def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        x = obs["obs"]
        return (x[:, 0] == x[:, 1]).astype(np.int64)

    def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
        self.done_calls.append(env_indices.tolist())


class ConstantPolicy:
    def __init__(self, action: int) -> None:
        self.action = action
        self.num_envs = 0

    def reset(self, num_envs: int) -> None:
        self.num_envs = num_envs

    def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        return np.full(self.num_envs, self.action, dtype=np.int64)

    def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
        pass


@pytest.mark.parametrize("num_envs", [1, 3, 64])
def test_oracle_succeeds_on_every_seed(num_envs: int) -> None:
    policy = OraclePolicy()
    assert isinstance(policy, BatchPolicy)
    result = evaluate_policy(
        lambda i: CountdownEnv(),
        policy,
        episodes=10,
        seed=100,
        num_envs=num_envs,
        success_fn=info_success,
    )
    assert isinstance(result, RolloutResult)
    assert result.success_rate == 1.0
    assert result.seeds == tuple(range(100, 110))
    # Episode k has target (100 + k) % 5 and so takes target + 1 steps.
    assert result.steps == tuple((100 + k) % 5 + 1 for k in range(10))
    assert policy.resets == [min(num_envs, 10)]
    assert sum(len(c) for c in policy.done_calls) == 10


def test_constant_policy_success_matches_targets() -> None:
    # Pressing at once succeeds only when target == 0: seeds 0 and 5 of 0..9.
    result = evaluate_policy(
        lambda i: CountdownEnv(),
        ConstantPolicy(1),
        episodes=10,
        seed=0,
        num_envs=4,
        success_fn=babyai_success,
    )
    assert result.successes == tuple(k % 5 == 0 for k in range(10))
    assert result.success_rate == pytest.approx(0.2)
    assert result.tasks == ("",) * 10  # a bare vector observation states no task
    assert result.mean_steps == 1.0 and result.steps_per_s > 0


def test_max_steps_cuts_episodes() -> None:
    result = evaluate_policy(
        lambda i: CountdownEnv(),
        ConstantPolicy(0),
        episodes=3,
        seed=0,
        max_steps=2,
        success_fn=info_success,
    )
    assert result.steps == (2, 2, 2) and result.success_rate == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="episodes"):
        evaluate_policy(lambda i: CountdownEnv(), ConstantPolicy(0), episodes=0, seed=0)


@pytest.mark.babyai
def test_babyai_observations_match_the_demonstrator() -> None:
    pytest.importorskip("minigrid")
    from skillbank.envs.babyai import BabyAIDemoSource
    from skillbank.envs.rollout import babyai_env_factory

    episode = BabyAIDemoSource("GoToRedBall").demonstrate(7)
    assert episode is not None and episode.actions is not None
    actions = episode.actions
    seen: list[dict[str, npt.NDArray[Any]]] = []

    class Replay:
        def reset(self, num_envs: int) -> None:
            self.t = 0

        def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
            seen.append({k: v[0].copy() for k, v in obs.items()})
            self.t += 1
            return actions[self.t - 1 : self.t]

        def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
            pass

    result = evaluate_policy(babyai_env_factory("GoToRedBall"), Replay(), episodes=1, seed=7)
    assert result.success_rate == 1.0 and result.steps == (episode.num_steps,)
    assert result.tasks == (episode.task.mission,) and "red ball" in result.tasks[0]
    for t, obs in enumerate(seen):
        for name in ("image", "direction", "mission"):
            expected = episode.observations[name][t]
            assert obs[name].dtype == expected.dtype, name
            np.testing.assert_array_equal(obs[name], expected)


class LingeringEnv(gym.Env[np.ndarray, np.int64]):
    """Reports success from step 3 on while action 1 is pressed, never terminates, truncates at 8
    (like Meta-World: an arm that reached the goal can drift away again)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        success = self.t == 3  # reached once, then lost
        return np.full(1, self.t, np.float32), 0.0, False, self.t >= 8, {"success": success}


class PressPolicy:
    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        return np.ones(len(obs["obs"]), np.int64)

    def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
        pass


def test_an_episode_ends_at_its_first_reported_success() -> None:
    result = evaluate_policy(
        lambda i: LingeringEnv(), PressPolicy(), episodes=3, seed=0, success_fn=info_success
    )
    assert result.success_rate == 1.0 and result.steps == (3, 3, 3)
    judged_at_end = evaluate_policy(
        lambda i: LingeringEnv(),
        PressPolicy(),
        episodes=3,
        seed=0,
        success_fn=info_success,
        end_on_success=False,
    )
    assert judged_at_end.success_rate == 0.0 and judged_at_end.steps == (8, 8, 8)
