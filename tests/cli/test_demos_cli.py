"""`skillbank demos info | export-minari | import-minari`, including their error output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from skillbank.cli import demos
from skillbank.envs.dataset import MANIFEST_NAME, DatasetWriter, episode_filename
from skillbank.envs.toy import ToyDemonstrator, toy_obs_dim
from skillbank.types import Episode

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    # The demos group on its own, so these tests depend only on the commands they test.
    group = typer.Typer()
    demos.register(group)
    return group


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    demo = ToyDemonstrator("pickup")
    root = tmp_path / "ds"
    with DatasetWriter(root, env_id=demo.env_id, demonstrator=demo.demonstrator) as writer:
        for seed in range(6):
            episode = demo.demonstrate(seed)
            if seed == 5:  # one watched episode, actions unseen
                episode = Episode(
                    episode.observations,
                    None,
                    episode.rewards,
                    episode.terminations,
                    episode.truncations,
                    episode.task,
                    episode.success,
                    episode.seed,
                    episode.demonstrator,
                )
            writer.write(episode)
        writer.log_failure(6, "made up failure")
    return root


def test_info_json(app: typer.Typer, dataset: Path) -> None:
    result = runner.invoke(app, ["info", str(dataset), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["env_id"] == "toy/pickup"
    assert payload["demonstrator"] == "toy-scripted"
    assert payload["episodes"] == 6
    assert payload["failures"] == 1 and payload["failed_seeds"] == [6]
    assert payload["success_rate"] == pytest.approx(6 / 7)
    assert payload["state_only"] is False and payload["state_only_episodes"] == 1
    assert payload["steps"] >= 6 and payload["min_steps"] <= payload["mean_steps"]
    assert payload["verified"] is True and len(payload["dataset_hash"]) == 64
    assert payload["observations"] == {"obs": {"shape": [toy_obs_dim()], "dtype": "float32"}}
    assert payload["actions"] == {"shape": [], "dtype": "int64"}


def test_info_table(app: typer.Typer, dataset: Path) -> None:
    result = runner.invoke(app, ["info", str(dataset)])
    assert result.exit_code == 0, result.output
    assert "toy/pickup" in result.stdout and "success_rate" in result.stdout


def test_info_reports_corruption(app: typer.Typer, dataset: Path) -> None:
    path = dataset / episode_filename(3)
    path.write_bytes(path.read_bytes()[:-10])
    result = runner.invoke(app, ["info", str(dataset)])
    assert result.exit_code == 1
    assert "seed-0000000003.npz" in result.output and "manifest says" in result.output
    assert "hint:" in result.output
    # Without verification the manifest alone is read.
    assert runner.invoke(app, ["info", str(dataset), "--no-verify"]).exit_code == 0


def test_info_wrong_version(app: typer.Typer, dataset: Path) -> None:
    manifest = dataset / MANIFEST_NAME
    payload = json.loads(manifest.read_text())
    payload["format_version"] = 7
    manifest.write_text(json.dumps(payload))
    result = runner.invoke(app, ["info", str(dataset)])
    assert result.exit_code == 1 and "format version 7" in result.output


def test_info_missing_directory(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such dataset directory" in result.output


def test_export_then_import(app: typer.Typer, dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "minari"
    result = runner.invoke(app, ["export-minari", str(dataset), "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert exported["name"] == "skillbank/toy-pickup-v0" and exported["episodes"] == 6

    result = runner.invoke(
        app,
        ["import-minari", exported["name"], "--out", str(tmp_path / "back"), "--root", str(root)],
    )
    assert result.exit_code == 0, result.output
    assert "imported 6 episode(s)" in result.stdout
    original = json.loads(runner.invoke(app, ["info", str(dataset), "--json"]).stdout)
    back = json.loads(runner.invoke(app, ["info", str(tmp_path / "back"), "--json"]).stdout)
    assert back["dataset_hash"] == original["dataset_hash"]
    assert back["failed_seeds"] == [6] and back["state_only_episodes"] == 1

    again = runner.invoke(app, ["export-minari", str(dataset), "--root", str(root)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_export_with_name(app: typer.Typer, dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "minari"
    result = runner.invoke(
        app, ["export-minari", str(dataset), "--name", "mine/pickup-v3", "--root", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert (root / "mine" / "pickup-v3" / "data").is_dir()


def test_import_unknown_name(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["import-minari", "nope-v0", "--out", str(tmp_path / "o"), "--root", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "no local Minari dataset named 'nope-v0'" in result.output
