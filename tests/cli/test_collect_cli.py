"""`skillbank demos collect`: collection, resumption, and every error path."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from skillbank.cli.app import app
from skillbank.envs.dataset import MANIFEST_NAME, load_dataset

runner = CliRunner()


def _collect(*args: str) -> Any:
    return runner.invoke(app, ["demos", "collect", *args])


def test_collect_toy_json(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = _collect("toy/fetch", "--episodes", "6", "--seed", "3", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["env_id"] == "toy/fetch"
    assert payload["episodes"] == 6 and payload["failures"] == 0
    assert payload["expert_success_rate"] == 1.0
    dataset = load_dataset(out)
    assert dataset.seeds == (3, 4, 5, 6, 7, 8)
    assert dataset.info.meta["first_seed"] == "3"
    assert payload["dataset_hash"] == dataset.info.hash


def test_collect_resumes_and_table_output(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _collect("toy/goto", "-n", "3", "--out", str(out), "-w", "1").exit_code == 0
    result = _collect("toy/goto", "-n", "5", "--out", str(out), "-w", "1", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["episodes"] == 5 and payload["resumed_episodes"] == 3
    table = _collect("toy/goto", "-n", "5", "--out", str(out), "-w", "1")
    assert table.exit_code == 0 and "expert_success_rate" in table.stdout


@pytest.mark.babyai
def test_collect_babyai_logs_failures(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    out = tmp_path / "ds"
    result = _collect(
        "babyai/OpenDoorsOrderN2Debug", "-n", "3", "--out", str(out), "-w", "2", "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["episodes"] == 3 and payload["failures"] == 2  # seeds 1 and 3
    assert payload["expert_success_rate"] == pytest.approx(0.6)
    assert sorted(load_dataset(out).info.failures) == [1, 3]


@pytest.mark.babyai
def test_collect_babyai_with_the_explored_map_and_learning_refuses_mixed_entries(
    tmp_path: Path,
) -> None:
    pytest.importorskip("minigrid")
    from skillbank.agent import ProceduralMemoryAgent
    from skillbank.errors import TrainingError
    from skillbank.memory.store import SkillMemory

    mapped, plain = tmp_path / "mapped", tmp_path / "plain"
    result = _collect("babyai/GoToLocal", "-n", "3", "--out", str(mapped), "-w", "1", "--map")
    assert result.exit_code == 0, result.output
    episodes = list(load_dataset(mapped))
    assert all(e.observations["map"].shape[1:] == (13, 13, 17) for e in episodes)
    assert load_dataset(mapped).info.meta["map_radius"] == "6"
    assert _collect("babyai/GoToLocal", "-n", "2", "--out", str(plain), "-w", "1").exit_code == 0
    refused = _collect("toy/fetch", "-n", "1", "--out", str(tmp_path / "toy"), "--map")
    assert refused.exit_code != 0 and "BabyAI levels only" in refused.output
    # learning the two kinds together is refused before any training, with what to do
    with SkillMemory(tmp_path / "memory") as memory:
        with pytest.raises(TrainingError, match="has no observation") as caught:
            ProceduralMemoryAgent(memory).learn([episodes, list(load_dataset(plain))])
        assert "--map" in (caught.value.hint or "")
        assert len(memory) == 0


def test_unknown_id_lists_close_names(tmp_path: Path) -> None:
    result = _collect("toy/fetc", "--out", str(tmp_path / "ds"))
    assert result.exit_code == 1
    assert "toy/fetch" in result.stderr and "hint:" in result.stderr


def test_gym_id_without_demonstrator(tmp_path: Path) -> None:
    result = _collect("CartPole-v1", "--out", str(tmp_path / "ds"))
    assert result.exit_code == 1
    assert "no built-in demonstrator" in result.stderr and "GymDemoSource" in result.stderr


@pytest.mark.parametrize(
    ("env_id", "module", "extra"),
    [("babyai/GoToLocal", "minigrid", "babyai"), ("metaworld/reach-v3", "metaworld", "metaworld")],
)
def test_missing_extra_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env_id: str, module: str, extra: str
) -> None:
    real_import = builtins.__import__

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module or name.startswith(f"{module}."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    result = _collect(env_id, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 1
    assert f"pip install 'skillbank[{extra}]'" in result.stderr


def test_missing_ray_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    result = _collect("toy/goto", "-n", "2", "--out", str(tmp_path / "ds"), "--ray", "local")
    assert result.exit_code == 1
    assert "pip install 'skillbank[ray]'" in result.stderr


def test_corrupted_manifest_is_named(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _collect("toy/goto", "-n", "2", "--out", str(out), "-w", "1").exit_code == 0
    (out / MANIFEST_NAME).write_text("{not json")
    result = _collect("toy/goto", "-n", "2", "--out", str(out), "-w", "1")
    assert result.exit_code == 1
    assert MANIFEST_NAME in result.stderr and "not valid JSON" in result.stderr


def test_corrupted_episode_file_is_named(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _collect("toy/goto", "-n", "2", "--out", str(out), "-w", "1").exit_code == 0
    victim = out / "episodes" / "seed-0000000001.npz"
    victim.write_bytes(b"garbage")
    result = _collect("toy/goto", "-n", "3", "--out", str(out), "-w", "1")
    assert result.exit_code == 1
    assert "seed-0000000001.npz" in result.stderr


def test_out_dir_of_another_dataset_or_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _collect("toy/goto", "-n", "2", "--out", str(out), "-w", "1").exit_code == 0
    other = _collect("toy/fetch", "-n", "2", "--out", str(out), "-w", "1")
    assert other.exit_code == 1 and "toy/goto" in other.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = _collect("toy/goto", "-n", "2", "--out", str(foreign), "-w", "1")
    assert result.exit_code == 1 and "not empty" in result.stderr


def test_target_out_of_reach_says_so(tmp_path: Path) -> None:
    result = _collect("toy/goto", "-n", "5", "--max-tries", "3", "--out", str(tmp_path / "a"))
    assert result.exit_code == 1
    assert "--max-tries 3 is below --episodes 5" in result.stderr


@pytest.mark.babyai
def test_bot_that_always_fails_stops_at_max_tries(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    out = tmp_path / "ds"
    result = _collect("babyai/KeyInBox", "-n", "2", "--max-tries", "3", "--out", str(out))
    assert result.exit_code == 1
    assert "only 0 of 2 episodes" in result.stderr and "--max-tries" in result.stderr
    assert sorted(load_dataset(out).info.failures) == [0, 1, 2]
