"""The Meta-World demonstrator: the CW10 tasks, seeding, success filtering."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import pytest

from skillbank.errors import EnvironmentNotFoundError, MissingExtraError
from skillbank.interfaces import DemoSource
from skillbank.types import Episode

pytest.importorskip("metaworld")

from skillbank.envs.metaworld_source import (
    DEMONSTRATOR,
    MetaWorldDemoSource,
    make_metaworld_env,
    metaworld_env_factory,
    metaworld_tasks,
)

pytestmark = pytest.mark.metaworld

# Continual World's CW10 sequence (Wołczyk et al., 2021), in v3 names.
CW10 = (
    "hammer-v3",
    "push-wall-v3",
    "faucet-close-v3",
    "push-back-v3",
    "stick-pull-v3",
    "handle-press-side-v3",
    "push-v3",
    "shelf-place-v3",
    "window-close-v3",
    "peg-unplug-side-v3",
)


@pytest.mark.parametrize("task", CW10)
def test_cw10_task(task: str) -> None:
    source = MetaWorldDemoSource(task)
    assert isinstance(source, DemoSource)
    # The scripted policies succeed on most seeds, not all (stick-pull misses seed 0).
    episode = next((e for seed in range(5) if (e := source.demonstrate(seed)) is not None), None)
    assert isinstance(episode, Episode)
    t = episode.num_steps
    assert 1 <= t < 500
    assert set(episode.observations) == {"obs"}
    obs = episode.observations["obs"]
    assert obs.shape == (t + 1, 39) and obs.dtype == np.float32
    assert np.isfinite(obs).all()
    assert episode.actions is not None
    assert episode.actions.shape == (t, 4) and episode.actions.dtype == np.float32
    assert np.abs(episode.actions).max() <= 1.0
    assert episode.rewards.shape == (t,) and episode.rewards.dtype == np.float32
    assert episode.success and episode.terminations[-1] and not episode.terminations[:-1].any()
    assert not episode.truncations.any()
    assert episode.task.env_id == f"metaworld/{task}" and episode.task.mission is None
    assert episode.demonstrator == DEMONSTRATOR
    assert episode.annotations is None  # the scripted policies do not expose their phases
    # Goal-observable: the last three features are the goal, fixed over the episode.
    assert (obs[:, -3:] == obs[0, -3:]).all() and np.abs(obs[0, -3:]).sum() > 0


def test_all_fifty_tasks_are_known() -> None:
    tasks = metaworld_tasks()
    assert len(tasks) == 50
    assert set(CW10) <= set(tasks)


def test_same_seed_gives_identical_bytes_and_history_does_not_leak() -> None:
    first = MetaWorldDemoSource("push-v3").demonstrate(11)
    source = MetaWorldDemoSource("push-v3")
    source.demonstrate(12)
    second = source.demonstrate(11)
    assert first is not None and second is not None
    assert first.observations["obs"].tobytes() == second.observations["obs"].tobytes()
    assert first.actions is not None and second.actions is not None
    assert first.actions.tobytes() == second.actions.tobytes()
    assert first.rewards.tobytes() == second.rewards.tobytes()


def test_seeds_change_object_and_goal_positions() -> None:
    source = MetaWorldDemoSource("push-v3")
    starts = []
    for seed in range(4):
        episode = source.demonstrate(seed)
        assert episode is not None
        starts.append(episode.observations["obs"][0])
    # Object position (4:7) and goal (36:39) differ between seeds.
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(starts[i][4:7], starts[j][4:7])
            assert not np.array_equal(starts[i][36:39], starts[j][36:39])


def test_seeding_leaves_global_numpy_state_alone() -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    MetaWorldDemoSource("reach-v3").demonstrate(0)
    assert np.random.random() == expected


def test_failed_episode_is_a_reason() -> None:
    # Found by scanning seeds: stick-pull's scripted policy misses on seed 0 (of 0-4).
    source = MetaWorldDemoSource("stick-pull-v3")
    reason = source.attempt(0)
    assert isinstance(reason, str) and "did not succeed" in reason
    assert source.demonstrate(0) is None


def test_task_names_resolve() -> None:
    assert MetaWorldDemoSource("metaworld/push-v3").env_id == "metaworld/push-v3"
    assert MetaWorldDemoSource("push").env_id == "metaworld/push-v3"


def test_unknown_task_lists_close_names() -> None:
    with pytest.raises(EnvironmentNotFoundError, match="metaworld/push-v3"):
        MetaWorldDemoSource("psh-v3")


def test_missing_metaworld_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def refuse_metaworld(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "metaworld" or name.startswith("metaworld."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse_metaworld)
    with pytest.raises(MissingExtraError) as info:
        MetaWorldDemoSource("push-v3")
    assert "skillbank[metaworld]" in info.value.hint


def test_eval_env_resets_to_the_demonstration_positions_of_a_seed() -> None:
    env = make_metaworld_env("metaworld/push-v3")
    episode = MetaWorldDemoSource("push-v3").demonstrate(5)
    assert episode is not None and episode.actions is not None
    obs, _ = env.reset(seed=5)
    assert obs.shape == (39,)
    np.testing.assert_allclose(obs, episode.observations["obs"][0], atol=1e-6)
    other, _ = env.reset(seed=6)
    assert not np.allclose(other[36:39], obs[36:39])  # another seed, another goal
    env.reset(seed=5)
    for action in episode.actions:  # replaying the demonstration succeeds here too
        obs, _, terminated, truncated, info = env.step(action)
        assert not terminated and not truncated
    assert info["success"]
    env.close()


def test_eval_env_truncates_after_500_steps_and_factory_checks_the_name() -> None:
    make = metaworld_env_factory("reach")
    env = make(0)
    env.reset(seed=0)
    truncated = False
    for step in range(1, 501):
        *_, truncated, _ = env.step(np.zeros(4, np.float32))
        assert truncated == (step == 500)
    env.reset(seed=1)  # usable again after a reset
    env.close()
    with pytest.raises(EnvironmentNotFoundError, match="reach-v3"):
        metaworld_env_factory("reech")
