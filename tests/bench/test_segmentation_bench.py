"""`skillbank bench segmentation`: result shape, breakdown bookkeeping, CLI wiring (toy world)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillbank.bench.segmentation_bench import (
    SegmentationBenchConfig,
    boundary_breakdown,
    run_segmentation_bench,
)
from skillbank.cli.app import app
from skillbank.envs.toy import ToyDemonstrator
from skillbank.learning.metrics import boundary_f1

ROW_KEYS = {
    "level",
    "episodes",
    "segmentation_f1",
    "precision",
    "recall",
    "cluster_purity",
    "num_skills",
    "seconds",
    "transitions",
    "spurious_in",
}


def test_breakdown_counts_add_up_to_boundary_f1() -> None:
    episodes = [ToyDemonstrator("fetch").demonstrate(seed) for seed in range(6)]
    assert all(e is not None and e.annotations is not None for e in episodes)
    # a deliberately poor prediction: the first true boundary moved by one step, one extra cut
    predicted = [
        (0, e.annotations.boundaries[1] + 1, e.num_steps - 1)  # type: ignore[union-attr]
        for e in episodes
        if e is not None
    ]
    kept = [e for e in episodes if e is not None]
    score = boundary_f1(predicted, [e.annotations.boundaries for e in kept])  # type: ignore[union-attr]
    breakdown = boundary_breakdown(kept, predicted)
    found = sum(v["found"] for v in breakdown["transitions"].values())
    true = sum(v["true"] for v in breakdown["transitions"].values())
    spurious = sum(breakdown["spurious_in"].values())
    assert true == score.num_true
    assert found == pytest.approx(score.recall * score.num_true)
    assert score.num_predicted - spurious == found
    assert all(set(v) == {"true", "found"} for v in breakdown["transitions"].values())


def test_bench_rows_on_toy_levels(tmp_path: Path) -> None:
    config = SegmentationBenchConfig(
        levels=("toy/fetch", "toy/pickup"), episodes=12, seed=0, data_dir=tmp_path, learn=False
    )
    result = run_segmentation_bench(config, command="skillbank bench segmentation")
    assert [r["level"] for r in result["levels"]] == ["toy/fetch", "toy/pickup"]
    assert {"machine", "versions", "seed", "command", "segmenter"} <= set(result)
    for row in result["levels"]:
        assert set(row) >= ROW_KEYS
        assert row["episodes"] == 12 and row["cluster_purity"] is None
        assert 0.0 <= row["segmentation_f1"] <= 1.0
    # the demonstrations are cached: a second run reuses them and gives the same numbers
    again = run_segmentation_bench(config)
    assert [r["segmentation_f1"] for r in again["levels"]] == [
        r["segmentation_f1"] for r in result["levels"]
    ]


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="episodes"):
        SegmentationBenchConfig(episodes=0)
    with pytest.raises(ValueError, match="levels"):
        SegmentationBenchConfig(levels=())


def test_cli_writes_json_with_purity(tmp_path: Path) -> None:
    out = tmp_path / "seg.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "segmentation",
            "--levels",
            "toy/fetch",
            "--episodes",
            "8",
            "--json",
            str(out),
            "--set",
            "cluster.max_clusters=2",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    (row,) = data["levels"]
    assert row["level"] == "toy/fetch" and 1 <= row["num_skills"] <= 2
    assert data["settings"] == ["cluster.max_clusters=2"]
    assert 0.0 <= row["cluster_purity"] <= 1.0
    assert row["learn_segmentation_f1"] == pytest.approx(row["segmentation_f1"])
    assert data["command"].startswith("skillbank")


@pytest.mark.babyai
def test_putnext_alias_names_a_registered_level(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    from skillbank.bench.segmentation_bench import load_level_demos

    env_id, episodes = load_level_demos("PutNext", 2, tmp_path / "PutNext", num_workers=1)
    assert env_id == "babyai/PutNextS7N4" and len(episodes) == 2
    assert all(e.annotations is not None and e.task.env_id == env_id for e in episodes)


def test_cli_segmenter_settings(tmp_path: Path) -> None:
    out = tmp_path / "seg.json"
    args = ["bench", "segmentation", "--levels", "toy/fetch", "-n", "6", "--no-learn"]
    args += ["--data", str(tmp_path / "data"), "--json", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--segmenter", "chunk_min_rise=0.6", "--segmenter", "chunk_min_count=3"]
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads(out.read_text())["segmenter"]
    assert recorded["chunk_min_rise"] == 0.6 and recorded["chunk_min_count"] == 3
    bad = CliRunner().invoke(app, [*args, "--segmenter", "no_such_field=1"])
    assert bad.exit_code != 0 and "no_such_field" in bad.output
    bad = CliRunner().invoke(app, [*args, "--learn", "--set", "cluster.no_such_field=1"])
    assert bad.exit_code != 0 and "no_such_field" in bad.output
