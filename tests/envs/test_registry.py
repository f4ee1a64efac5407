"""Environment ids: every spelling resolves, unknown ids suggest close names, missing extras name
the pip command, and importing the registry needs no optional simulator."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest

from skillbank.envs.registry import (
    EnvSpec,
    babyai_levels,
    list_env_ids,
    make_env,
    metaworld_tasks,
    resolve_env_id,
)
from skillbank.envs.toy import TOY_TASKS, ToyEnv
from skillbank.errors import EnvironmentNotFoundError, MissingExtraError


@pytest.mark.parametrize("task", TOY_TASKS)
def test_toy_ids(task: str) -> None:
    spec = resolve_env_id(f"toy/{task}")
    assert spec == EnvSpec(f"toy/{task}", "toy", task, f"skillbank/Toy-{task}-v0")
    assert isinstance(make_env(f"toy/{task}"), ToyEnv)
    assert isinstance(gym.make(spec.gym_id or "").unwrapped, ToyEnv)


def test_plain_gymnasium_id() -> None:
    assert resolve_env_id("CartPole-v1") == EnvSpec(
        "CartPole-v1", "gym", "CartPole-v1", "CartPole-v1"
    )
    assert make_env("CartPole-v1").action_space.n == 2


@pytest.mark.babyai
@pytest.mark.parametrize(
    ("given", "env_id", "gym_id"),
    [
        ("babyai/GoToLocal", "babyai/GoToLocal", "BabyAI-GoToLocal-v0"),
        ("BabyAI-GoToLocal-v0", "babyai/GoToLocal", "BabyAI-GoToLocal-v0"),
        ("babyai/BossLevel", "babyai/BossLevel", "BabyAI-BossLevel-v0"),
        ("babyai/GoToObjS6", "babyai/GoToObjS6-v1", "BabyAI-GoToObjS6-v1"),
        ("babyai/GoToObjS6-v1", "babyai/GoToObjS6-v1", "BabyAI-GoToObjS6-v1"),
    ],
)
def test_babyai_ids(given: str, env_id: str, gym_id: str) -> None:
    pytest.importorskip("minigrid")
    spec = resolve_env_id(given)
    assert (spec.env_id, spec.family, spec.gym_id) == (env_id, "babyai", gym_id)


@pytest.mark.babyai
def test_babyai_levels_are_the_registered_ids() -> None:
    pytest.importorskip("minigrid")
    levels = babyai_levels()
    registered = [k for k in gym.registry if k.startswith("BabyAI-")]
    assert len(levels) == len(registered) and "GoToLocal" in levels and "BossLevel" in levels
    for level in levels:
        assert resolve_env_id(f"babyai/{level}").env_id == f"babyai/{level}"
    assert make_env("babyai/GoToLocal").spec is not None


@pytest.mark.metaworld
def test_metaworld_ids() -> None:
    pytest.importorskip("metaworld")
    tasks = metaworld_tasks()
    assert len(tasks) == 50 and "reach-v3" in tasks and "hammer-v3" in tasks
    assert resolve_env_id("metaworld/reach-v3") == EnvSpec(
        "metaworld/reach-v3", "metaworld", "reach-v3", None
    )
    assert resolve_env_id("metaworld/reach").env_id == "metaworld/reach-v3"


@pytest.mark.metaworld
def test_make_metaworld_env() -> None:
    pytest.importorskip("metaworld")
    env = make_env("metaworld/reach-v3", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,)
    env.close()


def test_list_env_ids() -> None:
    toy = list_env_ids("toy")
    assert toy == [f"toy/{t}" for t in TOY_TASKS]
    everything = list_env_ids()
    assert set(toy) <= set(everything)
    assert "CartPole-v1" in list_env_ids("gym")
    with pytest.raises(ValueError, match="family"):
        list_env_ids("atari")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wrong", "suggested"),
    [
        ("toy/fech", "toy/fetch"),
        ("toy/open-the-fetch", "toy/open-then-fetch"),
        ("CartPol-v1", "CartPole-v1"),
        ("babyai/GoToLocl", "babyai/GoToLocal"),
        ("babyai/gotolocal", "babyai/GoToLocal"),
        ("metaworld/rech-v3", "metaworld/reach-v3"),
        ("toy-fetch", "toy/fetch"),
    ],
)
def test_unknown_id_lists_closest_names(wrong: str, suggested: str) -> None:
    with pytest.raises(EnvironmentNotFoundError) as caught:
        resolve_env_id(wrong)
    assert wrong in caught.value.message
    closest = caught.value.message.split("closest: ")[1].split(", ")
    assert suggested in closest
    assert "babyai/<Level>" in caught.value.hint


def test_empty_id() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        resolve_env_id("  ")


@pytest.mark.parametrize(
    ("env_id", "module", "extra"),
    [
        ("babyai/GoToLocal", "minigrid", "babyai"),
        ("BabyAI-GoToLocal-v0", "minigrid", "babyai"),
        ("metaworld/reach-v3", "metaworld", "metaworld"),
    ],
)
def test_missing_extra_names_the_pip_command(
    env_id: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingExtraError) as caught:
        resolve_env_id(env_id)
    assert caught.value.hint == f"pip install 'skillbank[{extra}]'"
    assert module in caught.value.message
    with pytest.raises(MissingExtraError):
        list_env_ids(extra)  # type: ignore[arg-type]


def test_listing_skips_missing_families(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minigrid", None)
    monkeypatch.setitem(sys.modules, "metaworld", None)
    assert list_env_ids() == [f"toy/{t}" for t in TOY_TASKS]


def test_envs_import_without_optional_simulators() -> None:
    code = (
        "import sys\n"
        "import skillbank.envs.registry, skillbank.envs.toy, skillbank.envs.dataset\n"
        "import skillbank.envs.gym_source, skillbank.envs.minari_io\n"
        "loaded = {'minigrid', 'metaworld', 'mujoco', 'minari'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
        "for name in ('minigrid', 'metaworld', 'minari'):\n"
        "    sys.modules[name] = None\n"
        "from skillbank.envs.registry import resolve_env_id\n"
        "assert resolve_env_id('toy/fetch').family == 'toy'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.babyai
def test_papers_putnext_resolves_to_its_sized_level() -> None:
    spec = resolve_env_id("babyai/PutNext")
    assert spec.env_id == "babyai/PutNextS7N4"
    assert spec.gym_id == "BabyAI-PutNextS7N4-v0"
