"""Any Gymnasium environment plus a callable demonstrator, as a demonstration source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skillbank.envs.dataset import DatasetWriter, encode_episode, load_dataset
from skillbank.envs.gym_source import GymDemoSource, observation_arrays
from skillbank.envs.toy import make_toy_env
from skillbank.interfaces import DemoSource


def balance(obs: Any, info: Any) -> int:
    """A PD-style controller that keeps CartPole's pole up."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def cartpole(
    demonstrator: Any = balance, name: str = "cartpole-pd", **kwargs: Any
) -> GymDemoSource:
    return GymDemoSource(
        "CartPole-v1",
        demonstrator,
        name=name,
        success=lambda reward, terminated, truncated, info: truncated,
        **kwargs,
    )


def test_cartpole_episode() -> None:
    source = cartpole()
    assert isinstance(source, DemoSource)
    assert (source.env_id, source.demonstrator) == ("CartPole-v1", "cartpole-pd")
    episode = source.demonstrate(seed=0)
    assert episode is not None and episode.success
    assert episode.num_steps == 500
    assert episode.observations["obs"].shape == (501, 4)
    assert episode.observations["obs"].dtype == np.float32
    assert episode.actions is not None and episode.actions.dtype == np.int64
    assert episode.truncations[-1] and not episode.terminations.any()
    assert episode.task.env_id == "CartPole-v1" and episode.task.mission is None


def test_same_seed_same_bytes() -> None:
    first = cartpole().demonstrate(seed=4)
    second = cartpole().demonstrate(seed=4)
    assert first is not None and second is not None
    assert encode_episode(first) == encode_episode(second)


def test_failures_give_none_and_a_reason() -> None:
    source = cartpole(lambda obs, info: 0, name="always-left")
    assert source.demonstrate(seed=0) is None
    reason = source.attempt(seed=0)
    assert isinstance(reason, str) and "no success: terminated" in reason
    kept = cartpole(lambda obs, info: 0, name="always-left", keep_failures=True)
    episode = kept.demonstrate(seed=0)
    assert episode is not None and not episode.success and episode.terminations[-1]


def test_state_only_and_step_cap() -> None:
    episode = cartpole(state_only=True, max_steps=50).demonstrate(seed=1)
    assert episode is not None
    assert episode.state_only and episode.num_steps == 50 and episode.truncations[-1]


def test_env_instance_and_factory() -> None:
    toy = make_toy_env("goto")
    with pytest.raises(ValueError, match="env_id"):
        GymDemoSource(toy, lambda obs, info: 0)
    source = GymDemoSource(
        lambda: make_toy_env("goto", max_steps=5),
        lambda obs, info: 0,
        env_id="toy/goto",
        name="spinner",
        keep_failures=True,
    )
    episode = source.demonstrate(seed=0)
    assert episode is not None and episode.num_steps == 5 and not episode.success
    assert episode.task.mission is not None and episode.task.mission.startswith("go to the")
    assert episode.observations["obs"].shape == (6, make_toy_env("goto").observation_space.shape[0])


def test_default_success_rule() -> None:
    # Without a rule: info["success"] where the environment reports it (the toy world does) ...
    toy = GymDemoSource("toy/goto", lambda obs, info: 0, name="spinner", max_steps=3)
    assert toy.attempt(0) == "no success: truncated after 3 steps"
    # ... else terminated and not truncated: a fallen CartPole "terminated".
    episode = GymDemoSource("CartPole-v1", lambda obs, info: 0, name="left").demonstrate(0)
    assert episode is not None and episode.success


def test_exactly_one_demonstrator() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        GymDemoSource("CartPole-v1")
    with pytest.raises(ValueError, match="exactly one"):
        GymDemoSource("CartPole-v1", balance, make_demonstrator=lambda env: balance)


def test_observation_arrays() -> None:
    arrays, mission = observation_arrays(
        {
            "image": np.zeros((2, 2), np.uint8),
            "mission": "go to the door",
            "pos": (1, np.float32(2.0)),
            "more": {"x": np.ones(3)},
        }
    )
    assert mission == "go to the door"
    assert sorted(arrays) == ["image", "more/x", "pos/0", "pos/1"]
    assert arrays["image"].dtype == np.uint8
    assert observation_arrays(np.arange(3))[0].keys() == {"obs"}
    assert observation_arrays(5)[0]["obs"].shape == ()


def test_writes_through_dataset_writer(tmp_path: Path) -> None:
    source = cartpole(max_steps=30)
    writer = DatasetWriter(tmp_path / "ds", env_id=source.env_id, demonstrator=source.demonstrator)
    for seed in range(3):
        result = source.attempt(seed)
        if isinstance(result, str):
            writer.log_failure(seed, result)
        else:
            writer.write(result)
    info = writer.close()
    assert info.num_episodes + len(info.failures) == 3
    assert all(e.num_steps == 30 for e in load_dataset(tmp_path / "ds"))


@pytest.mark.babyai
def test_dict_observations_and_per_episode_demonstrator() -> None:
    pytest.importorskip("minigrid")
    from minigrid.utils.baby_ai_bot import BabyAIBot

    def bot_for(env: Any) -> Any:
        bot = BabyAIBot(env.unwrapped)
        return lambda obs, info: bot.replan()

    source = GymDemoSource("babyai/GoToLocal", make_demonstrator=bot_for, name="babyai-bot")
    for seed in range(3):
        episode = source.demonstrate(seed)
        assert episode is not None and episode.success
        assert episode.task.env_id == "babyai/GoToLocal"
        assert episode.task.mission is not None and episode.task.mission.startswith("go to")
        image = episode.observations["image"]
        assert image.shape == (episode.num_steps + 1, 7, 7, 3) and image.dtype == np.uint8
        assert episode.observations["direction"].shape == (episode.num_steps + 1,)
