"""`skillbank learn` and `skillbank eval` on toy datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillbank.cli.app import app
from tests.cli.demo_helpers import write_toy_demos


def test_learn_then_eval_writes_the_eval_json(tmp_path: Path) -> None:
    runner = CliRunner()
    pickup = write_toy_demos(tmp_path / "pickup", "pickup", 20)
    fetch = write_toy_demos(tmp_path / "fetch", "fetch", 20)
    memory = tmp_path / "mem"
    learned = runner.invoke(
        app, ["learn", str(pickup), str(fetch), "--memory", str(memory), "--seed", "1", "--json"]
    )
    assert learned.exit_code == 0, learned.output
    report = json.loads(learned.stdout)
    assert report["new_skill_ids"] and report["seed"] == 1

    out, trace = tmp_path / "eval.json", tmp_path / "trace.jsonl"
    evaluated = runner.invoke(
        app,
        ["eval", "toy/open-then-fetch", "--memory", str(memory), "--episodes", "4",
         "--seed", "9", "--json", str(out), "--trace", str(trace)],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    payload = json.loads(out.read_text())
    traced = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [e["seed"] for e in traced] == [9, 10, 11, 12]
    for episode in traced:  # each step's action is filed under the call that took it
        assert sum(len(call["actions"]) for call in episode["calls"]) == episode["steps"]
        assert {call["skill"] for call in episode["calls"]} <= set(report["skill_ids"])
    assert all("calls" not in e for e in payload["per_episode"]), "the trace stays in its file"
    for key in ("env", "episodes", "seed", "success_rate", "mean_steps", "steps_per_s"):
        assert key in payload
    assert payload["env"] == "toy/open-then-fetch" and payload["episodes"] == 4
    assert set(payload["skills_used"]) <= set(report["skill_ids"])
    per_episode = payload["per_episode"]
    assert [e["seed"] for e in per_episode] == [9, 10, 11, 12]
    assert sum(e["success"] for e in per_episode) / 4 == payload["success_rate"]
    assert sum(e["steps"] for e in per_episode) / 4 == pytest.approx(payload["mean_steps"])


def test_eval_without_memory_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "toy/goto", "--memory", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no skill memory" in result.output


def test_learn_with_composites_stores_and_runs_them(tmp_path: Path) -> None:
    runner = CliRunner()
    fetch = write_toy_demos(tmp_path / "fetch", "fetch", 40)
    memory = tmp_path / "mem"
    learned = runner.invoke(
        app, ["learn", str(fetch), "--memory", str(memory), "--composites", "--json"]
    )
    assert learned.exit_code == 0, learned.output
    report = json.loads(learned.stdout)
    assert report["composite_ids"], "fetch = go to, then pick up: a recurring pair of skills"
    out = tmp_path / "eval.json"
    evaluated = runner.invoke(
        app,
        ["eval", "toy/fetch", "--memory", str(memory), "--episodes", "8", "--json", str(out)],
    )
    assert evaluated.exit_code == 0, evaluated.output
    used = set(json.loads(out.read_text())["skills_used"])
    assert used and used <= set(report["skill_ids"]) | set(report["composite_ids"])


def test_learn_takes_agent_settings_and_refuses_bad_ones(tmp_path: Path) -> None:
    runner = CliRunner()
    pickup = write_toy_demos(tmp_path / "pickup", "pickup", 12)
    memory = tmp_path / "mem"
    bad = runner.invoke(
        app, ["learn", str(pickup), "--memory", str(memory), "--set", "skill.nope=3"]
    )
    assert bad.exit_code == 1
    assert "SkillTrainConfig has no field 'nope'" in bad.output and "fields:" in bad.output
    assert not memory.exists(), "a refused setting writes nothing"
    learned = runner.invoke(
        app,
        ["learn", str(pickup), "--memory", str(memory), "--json",
         "--set", "skill.num_epochs=2", "--set", "controller.hidden_dims=32,32"],
    )  # fmt: skip
    assert learned.exit_code == 0, learned.output
    assert json.loads(learned.stdout)["settings"] == [
        "skill.num_epochs=2",
        "controller.hidden_dims=32,32",
    ]


def test_a_settings_preset_is_refused_when_unknown_and_recorded_spelled_out(
    tmp_path: Path,
) -> None:
    from skillbank.agent import SETTING_PRESETS

    runner = CliRunner()
    pickup = write_toy_demos(tmp_path / "pickup", "pickup", 12)
    memory = tmp_path / "mem"
    bad = runner.invoke(app, ["learn", str(pickup), "--memory", str(memory), "--set", "@nope"])
    assert bad.exit_code == 1 and "no preset 'nope'" in bad.output and "@hindsight" in bad.output
    assert not memory.exists(), "a refused preset writes nothing"
    learned = runner.invoke(
        app, ["learn", str(pickup), "--memory", str(memory), "--set", "skill.num_epochs=2"]
    )
    assert learned.exit_code == 0, learned.output
    out = tmp_path / "eval.json"
    evaluated = runner.invoke(
        app,
        ["eval", "toy/fetch", "--memory", str(memory), "--episodes", "2", "--json", str(out),
         "--set", "@hindsight", "--set", "top_k=1"],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(out.read_text())["settings"] == [*SETTING_PRESETS["hindsight"], "top_k=1"]
