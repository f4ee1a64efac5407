"""`skillbank bench demos`: the report's shape and the side-by-side runs' agreement (no timings)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillbank.bench.demos_bench import (
    DemosBenchConfig,
    bench_source,
    run_demos_bench,
    serial_collect,
)
from skillbank.bench.run_info import machine_info, package_versions
from skillbank.cli.app import app
from skillbank.envs.collect import collect
from skillbank.envs.toy import ToyDemonstrator

REQUIRED = {
    "source",
    "episodes",
    "serial_per_s",
    "parallel_per_s",
    "speedup",
    "expert_success_rate",
}


def test_serial_loop_writes_what_the_collector_writes(tmp_path: Path) -> None:
    factory = functools.partial(ToyDemonstrator, "open-pickup")
    serial = serial_collect(factory, range(6), tmp_path / "serial")
    parallel = collect(factory, range(6), tmp_path / "parallel", num_workers=2)
    assert serial.hash == parallel.hash and serial.num_episodes == 6


def test_bench_source_row(tmp_path: Path) -> None:
    row = bench_source(
        "toy-fetch", functools.partial(ToyDemonstrator, "fetch"), range(4), tmp_path, num_workers=2
    )
    assert set(row) >= REQUIRED
    assert row["episodes"] == 4 and row["seeds_tried"] == 4 and row["num_workers"] == 2
    assert row["identical_output"] is True
    assert row["expert_success_rate"] == 1.0
    assert row["speedup"] == pytest.approx(row["parallel_per_s"] / row["serial_per_s"])
    assert len(row["runs"]) == 1 and row["repeats"] == 1
    # Again in the same directory, twice: the datasets are rebuilt (not resumed) every time.
    again = bench_source(
        "toy-fetch",
        functools.partial(ToyDemonstrator, "fetch"),
        range(4),
        tmp_path,
        num_workers=2,
        repeats=2,
    )
    assert again["dataset_hash"] == row["dataset_hash"] and again["identical_output"] is True
    assert len(again["runs"]) == 2
    speedups = sorted(run["speedup"] for run in again["runs"])
    assert again["speedup"] == pytest.approx(sum(speedups) / 2)  # the median of two


@pytest.mark.babyai
@pytest.mark.metaworld
def test_report_for_babyai_and_metaworld(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    pytest.importorskip("metaworld")
    cfg = DemosBenchConfig(
        num_seeds=3, seed=10, num_workers=2, babyai_level="GoToLocal", metaworld_task="reach-v3"
    )
    report = run_demos_bench(cfg, command="skillbank bench demos -n 3")
    assert report["command"] == "skillbank bench demos -n 3"
    assert report["seeds"] == {"first": 10, "count": 3}
    assert {"cpu", "cores", "load_average"} <= set(report["machine"])
    assert report["versions"]["minigrid"] and report["versions"]["mujoco"] == "3.3.0"
    sources = [row["source"] for row in report["results"]]
    assert sources == ["babyai/GoToLocal", "metaworld/reach-v3"]
    for row in report["results"]:
        assert set(row) >= REQUIRED
        assert row["identical_output"] is True
        assert 0.0 < row["expert_success_rate"] <= 1.0


@pytest.mark.babyai
def test_cli_writes_json(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    out = tmp_path / "runs" / "demos.json"
    args = [
        "--json",
        str(out),
        "-n",
        "2",
        "-w",
        "2",
        "--babyai",
        "GoToLocal",
        "--metaworld",
        "none",
    ]
    result = CliRunner().invoke(app, ["bench", "demos", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [row["source"] for row in report["results"]] == ["babyai/GoToLocal"]
    assert "speedup" in result.stdout


def test_cli_unknown_level(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    result = CliRunner().invoke(
        app, ["bench", "demos", "--json", str(tmp_path / "o.json"), "--babyai", "GoToLocl"]
    )
    assert result.exit_code == 1 and "babyai/GoToLocal" in result.stderr


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_seeds"):
        DemosBenchConfig(num_seeds=0)
    with pytest.raises(ValueError, match="num_workers"):
        DemosBenchConfig(num_workers=1)
    with pytest.raises(ValueError, match="repeats"):
        DemosBenchConfig(repeats=0)
    with pytest.raises(ValueError, match="babyai_level or a metaworld_task"):
        DemosBenchConfig(babyai_level=None, metaworld_task=None)
    assert machine_info()["cores"] >= 1 and package_versions()["python"]
