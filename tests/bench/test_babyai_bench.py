"""The BabyAI curriculum benchmark, end to end on tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from skillbank.bench.babyai_bench import (
    BUDGETS,
    EVAL_SEED,
    PARAM_TOLERANCE,
    BenchBudget,
    LevelPlan,
    fair_flat_bc_config,
    markdown_table,
    run_babyai_bench,
    select_levels,
)
from skillbank.bench.baselines.flat_bc import FlatBCConfig
from skillbank.nn.encoders import BabyAIEncoderConfig
from skillbank.report.plots import main, pca_2d

pytestmark = pytest.mark.babyai

TINY = BenchBudget(
    name="tiny",
    levels=(LevelPlan("GoToRedBall", 12),),
    eval_episodes=8,
    flat_bc=FlatBCConfig(
        encoder=BabyAIEncoderConfig(
            out_dim=8, image_embed_dim=4, conv_channels=4, num_film=1, word_dim=4, mission_dim=8
        ),
        memory_dim=8,
        num_actions=7,
        epochs=1,
    ),
    agent_scale=0.1,
    note="test",
)

LEVEL_KEYS = {
    "level",
    "demos",
    "skillbank_success",
    "flat_bc_success",
    "segmentation_f1",
    "cluster_purity",
    "flat_bc_train_s",
    "skillbank_train_s",
    "train_seeds",
    "eval_seeds",
}


def test_budgets_follow_the_curriculum() -> None:
    for budget in BUDGETS.values():
        names = [p.level for p in budget.levels]
        assert names[0] == "GoToLocal"
        if budget.name != "smoke":
            assert budget.eval_episodes >= 512
            assert names.index("PutNextLocal") < names.index("GoTo") < names.index("BossLevel")
    assert BUDGETS["full"].total_demos <= 20_000
    assert "512" in BUDGETS["smoke"].note


def test_flat_bc_only_run_writes_every_field(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    result = run_babyai_bench(TINY, seed=0, out_dir=tmp_path, include_agent=False)
    (level,) = result.levels
    assert level.demos == 12 and level.demos_cumulative == 12
    assert level.train_seeds[0] == 0 and level.train_seeds[1] < EVAL_SEED
    assert level.eval_seeds == (EVAL_SEED, EVAL_SEED + 7)
    assert 0.0 <= level.flat_bc_success <= 1.0 and level.skillbank_success is None
    payload = json.loads(json.dumps(result.to_json("skillbank bench babyai")))
    assert set(payload["levels"][0]) >= LEVEL_KEYS
    assert {"machine", "seed", "command", "budget", "eval_episodes"} <= set(payload)
    assert payload["machine"]["versions"]["torch"]
    assert "| GoToRedBall | 12 |" in markdown_table(result.levels)
    assert f"| {level.flat_bc_params:,} |" in markdown_table(result.levels)
    # Without the agent there is nothing to match: the configured network and epochs.
    assert level.flat_bc_budget_s is None and level.flat_bc_epochs == 1
    assert payload["flat_bc_budget"].startswith("epochs=1")
    # Demonstrations are cached: a second run reuses them and gives the same baseline.
    again = run_babyai_bench(TINY, seed=0, out_dir=tmp_path, include_agent=False)
    assert again.levels[0].flat_bc_success == level.flat_bc_success


def test_joint_protocol_learns_every_level_in_one_call(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    import dataclasses

    budget = dataclasses.replace(
        TINY, levels=(LevelPlan("GoToRedBall", 10), LevelPlan("GoToLocal", 10))
    )
    result = run_babyai_bench(budget, seed=0, out_dir=tmp_path, protocol="joint")
    first, second = result.levels
    assert result.protocol == "joint" and result.to_json()["protocol"] == "joint"
    # both methods learned from all 20 demonstrations before either level was evaluated
    assert first.demos == second.demos == 10
    assert first.demos_cumulative == second.demos_cumulative == 20
    # one learn call, one flat BC: the same for every row
    assert first.skillbank_train_s == second.skillbank_train_s
    assert first.num_skills == second.num_skills == result.skill_keys.shape[0]
    assert first.flat_bc_train_s == second.flat_bc_train_s
    assert first.flat_bc_budget_s == second.flat_bc_budget_s
    assert first.flat_bc_budget_s is not None and first.flat_bc_budget_s > 0
    for level in result.levels:
        assert level.skillbank_success is not None and 0.0 <= level.skillbank_success <= 1.0
        # scored per level, on that level's episodes
        assert level.segmentation_f1 is not None and 0.0 <= level.segmentation_f1 <= 1.0
        assert level.cluster_purity is not None and 0.0 < level.cluster_purity <= 1.0
    with pytest.raises(ValueError, match="protocol"):
        run_babyai_bench(budget, seed=0, out_dir=tmp_path, protocol="together")


def test_a_run_with_the_explored_map_gives_it_to_both_methods(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    from skillbank.bench.babyai_bench import collect_level_demos
    from skillbank.events import NullObserver

    result = run_babyai_bench(TINY, seed=0, out_dir=tmp_path, explored_map=True)
    assert result.explored_map and result.to_json()["explored_map"] is True
    episodes, _, _ = collect_level_demos(
        "GoToRedBall", 12, tmp_path / "demos-map" / "GoToRedBall", NullObserver()
    )  # cached apart from map-less demonstrations, and reused
    assert all("map" in e.observations for e in episodes)
    assert not (tmp_path / "demos").exists()
    level = result.levels[0]
    assert level.skillbank_success is not None and level.flat_bc_success is not None


def test_fair_flat_bc_matches_the_agents_parameters_and_time() -> None:
    for agent_params in (80_000, 561_065, 1_950_000):
        config, count = fair_flat_bc_config(TINY.flat_bc, agent_params, 12.5)
        assert abs(count / agent_params - 1) <= PARAM_TOLERANCE
        assert config.max_seconds == 12.5 and config.epochs == TINY.flat_bc.epochs
        assert config.budget_clock == "process"
        assert config.num_actions == 7 and config.encoder is not None


def test_pca_map_of_keys() -> None:
    keys = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0.1], [3, 0, 0]], np.float32)
    xy = pca_2d(keys)
    assert xy.shape == (4, 2)
    assert abs(np.corrcoef(xy[:, 0], keys[:, 0])[0, 1]) > 0.99
    assert pca_2d(keys[:1]).shape == (1, 2)


def test_plots_from_a_result_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    levels = [
        {
            "level": "GoToLocal",
            "demos": 10,
            "demos_cumulative": 10,
            "skillbank_success": 0.5,
            "flat_bc_success": 0.25,
        },
        {
            "level": "GoTo",
            "demos": 10,
            "demos_cumulative": 20,
            "skillbank_success": None,
            "flat_bc_success": 0.1,
        },
    ]
    result = tmp_path / "result.json"
    keys = np.random.default_rng(0).normal(size=(5, 8)).tolist()
    ids = [f"skill-{i}" for i in range(5)]
    result.write_text(json.dumps({"levels": levels, "skill_keys": keys, "skill_ids": ids}))
    main([str(result), str(tmp_path / "plots")])
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == ["success.png", "skill-keys.png"]
    for image in written:
        assert Path(image).read_bytes()[:4] == b"\x89PNG"
    # a joint run: every level learned from the same demonstrations, bars per level
    joint = [{**r, "demos_cumulative": 20} for r in levels]
    result.write_text(json.dumps({"levels": joint, "protocol": "joint"}))
    main([str(result), str(tmp_path / "joint")])
    (image,) = capsys.readouterr().out.split()
    assert Path(image).name == "success.png" and Path(image).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cli_smoke_budget_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    from skillbank.cli.app import app

    out = tmp_path / "smoke.json"
    run = CliRunner().invoke(
        app,
        [
            "bench",
            "babyai",
            "--budget",
            "smoke",
            "--json",
            str(out),
            "--out-dir",
            str(tmp_path / "run"),
        ],
    )
    assert run.exit_code == 0, run.output
    payload = json.loads(out.read_text())
    assert [r["level"] for r in payload["levels"]] == ["GoToLocal", "PickupLoc"]
    for record in payload["levels"]:
        assert set(record) >= LEVEL_KEYS
        assert record["skillbank_success"] is not None
        assert record["segmentation_f1"] is not None
    assert [Path(p).name for p in payload["plots"]] == ["success.png", "skill-keys.png"]
    assert all(Path(p).is_file() for p in payload["plots"])
    assert (tmp_path / "run" / "table.md").is_file()


def test_select_levels_keeps_order_and_changes_demo_counts() -> None:
    small = BUDGETS["small"]
    plan = select_levels(small, ["BossLevel", "GoToLocal"], {"BossLevel": 1000})
    assert [(p.level, p.demos) for p in plan.levels] == [("GoToLocal", 500), ("BossLevel", 1000)]
    assert "BossLevel" in plan.note and plan.eval_episodes == small.eval_episodes
    assert select_levels(small).levels == small.levels


@pytest.mark.parametrize(
    ("levels", "demos", "message"),
    [
        (["Nowhere"], {}, "not in the small budget"),
        (["GoToLocal"], {"GoTo": 10}, "which are not run"),
        (["GoToLocal"], {"GoToLocal": 0}, ">= 1"),
    ],
)
def test_select_levels_rejects_what_the_budget_cannot_run(
    levels: list[str], demos: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        select_levels(BUDGETS["small"], levels, demos)


def test_cli_rejects_a_malformed_demo_count(tmp_path: Path) -> None:
    from skillbank.cli.app import app

    run = CliRunner().invoke(
        app,
        ["bench", "babyai", "--json", str(tmp_path / "x.json"), "--demos", "BossLevel:1000"],
    )
    assert run.exit_code != 0
    assert "LEVEL=COUNT" in run.output
    assert not (tmp_path / "x.json").exists()


def test_cli_rejects_an_unknown_protocol(tmp_path: Path) -> None:
    from skillbank.cli.app import app

    run = CliRunner().invoke(
        app,
        ["bench", "babyai", "--json", str(tmp_path / "x.json"), "--protocol", "together"],
    )
    assert run.exit_code != 0
    assert "curriculum" in run.output and "joint" in run.output
    assert not (tmp_path / "x.json").exists()
