"""`skillbank demo --quick`: the main job end to end, on a real memory, twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from skillbank.bench.babyai_bench import EVAL_SEED, LevelPlan
from skillbank.bench.demo_job import DEMO_PLANS, DemoPlan
from skillbank.cli.app import app
from skillbank.memory.store import SkillMemory
from tests.memory.pack_helpers import populate

pytestmark = pytest.mark.babyai

runner = CliRunner()

LEVEL_KEYS = {
    "level",
    "trained_on",
    "demos",
    "train_seeds",
    "skillbank_success",
    "flat_bc_success",
    "skills_used",
    "skillbank_steps_per_s",
    "flat_bc_steps_per_s",
}


def test_plans_keep_test_levels_unseen() -> None:
    for plan in DEMO_PLANS.values():
        trained = {p.level for p in plan.train_levels}
        assert plan.test_levels and not trained & set(plan.test_levels)
    assert [p.level for p in DEMO_PLANS["default"].train_levels] == [
        "GoToLocal",
        "PickupLoc",
        "Open",
        "PutNextLocal",
    ]
    with pytest.raises(ValueError, match="test_levels"):
        DemoPlan(
            name="bad",
            train_levels=(LevelPlan("GoTo", 1),),
            test_levels=("GoTo",),
            eval_episodes=1,
            flat_bc=DEMO_PLANS["quick"].flat_bc,
        )


def test_quick_demo_end_to_end_and_rerun(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    torch.set_num_threads(1)
    memory, data, out = tmp_path / "mem", tmp_path / "data", tmp_path / "demo.json"
    args = ["demo", "--quick", "--memory", str(memory), "--data", str(data), "--json", str(out)]
    plan = DEMO_PLANS["quick"]

    first = runner.invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    text = " ".join(first.stdout.split())
    assert "skillbank vs flat BC" in text and "no: unseen" in text
    for level in [p.level for p in plan.train_levels] + list(plan.test_levels):
        assert level in text
    payload = json.loads(out.read_text())
    assert {"machine", "command", "seed", "eval_seeds", "timings", "levels"} <= set(payload)
    assert payload["command"].startswith("skillbank")  # sys.argv: here pytest's
    assert payload["machine"]["versions"]["torch"]
    assert payload["eval_seeds"] == [EVAL_SEED, EVAL_SEED + plan.eval_episodes - 1]
    levels = payload["levels"]
    assert [r["level"] for r in levels] == [
        *(p.level for p in plan.train_levels),
        *plan.test_levels,
    ]
    for record in levels:
        assert set(record) >= LEVEL_KEYS
        assert 0.0 <= record["skillbank_success"] <= 1.0
        assert 0.0 <= record["flat_bc_success"] <= 1.0
        if record["trained_on"]:
            assert record["train_seeds"][1] < EVAL_SEED  # training and evaluation seeds disjoint
        else:
            assert record["demos"] == 0 and record["train_seeds"] is None
        assert set(record["skills_used"]) <= set(payload["skill_ids"])
    assert payload["skills_before"] == 0 and payload["num_skills"] >= 1
    assert payload["new_skill_ids"] == payload["skill_ids"]
    assert 0.0 <= payload["segmentation_f1"] <= 1.0 and payload["verify_problems"] == 0
    # Flat BC is sized to what the agent acts with and trained for the agent's learning time.
    assert payload["skillbank_params"] > 0 and payload["skillbank_vae_params"] > 0
    assert abs(payload["flat_bc_params"] / payload["skillbank_params"] - 1) <= 0.2
    assert payload["param_ratio"] == payload["flat_bc_params"] / payload["skillbank_params"]
    budget = payload["budget"]
    assert "CPU time" in budget["unit"] and budget["flat_bc_updates"] >= 1
    assert budget["flat_bc_train_cpu_s"] <= budget["skillbank_learn_cpu_s"] + 10.0
    learn_cpu_s = budget["skillbank_learn_cpu_s"]
    assert payload["flat_bc_config"]["max_seconds"] == pytest.approx(learn_cpu_s)
    assert payload["flat_bc_config"]["budget_clock"] == "process"
    assert payload["flat_bc_config"]["encoder"]["kind"] == "babyai"
    text_params = f"flat BC {payload['flat_bc_params']:,}"
    assert text_params in text and "equal CPU time" in text
    assert set(payload["timings"]) == {
        "collect_s",
        "skillbank_learn_s",
        "skillbank_learn_cpu_s",
        "flat_bc_train_s",
        "flat_bc_train_cpu_s",
        "evaluate_s",
        "total_s",
    }
    # The skills are in a real memory that passes every check.
    with SkillMemory(memory, create=False) as mem:
        assert mem.verify() == []
        stored = {r.skill_id for r in mem.list()}
    assert set(payload["skill_ids"]) <= stored

    # A second run reuses the demonstrations and explains them with the stored skills first.
    collected = sorted(p.name for p in data.rglob("*.npz"))
    second = runner.invoke(app, args, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    again = json.loads(out.read_text())
    assert sorted(p.name for p in data.rglob("*.npz")) == collected
    assert again["skills_before"] == payload["num_skills"]
    # (how many segments the stored skills explain depends on how well the tiny budget trained them)
    assert 0 <= again["num_reused"] <= again["num_segments"]
    assert set(payload["skill_ids"]) <= set(again["skill_ids"])
    with SkillMemory(memory, create=False) as mem:
        assert mem.verify() == []


def test_demo_refuses_a_memory_of_another_key_dimension(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "mem") as memory:
        populate(memory, seed=3, prefix="other")  # 8-dimensional keys; the agent's are 16
    result = runner.invoke(
        app,
        [
            *("demo", "--quick", "--memory", str(tmp_path / "mem")),
            *("--data", str(tmp_path / "data"), "--json", str(tmp_path / "demo.json")),
        ],
    )
    assert result.exit_code == 1
    assert "keys of dimension 8" in result.stderr and "hint:" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before collecting anything
