"""`skillbank bench flat-bc`: flat BC on one level against the published low-data anchor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from skillbank.bench.babyai_bench import EVAL_SEED
from skillbank.bench.baselines.flat_bc import FlatBCConfig
from skillbank.bench.flat_bc_bench import ANCHORS, FlatBCAnchor, run_flat_bc_bench
from skillbank.cli.app import app
from skillbank.nn.encoders import BabyAIEncoderConfig

runner = CliRunner()

TINY = FlatBCConfig(
    encoder=BabyAIEncoderConfig(
        out_dim=8, image_embed_dim=4, conv_channels=4, num_film=1, word_dim=4, mission_dim=8
    ),
    memory_dim=8,
    num_actions=7,
    epochs=2,
)


def test_anchors_are_the_published_low_data_figures() -> None:
    assert ANCHORS["GoToRedBall"].demos == 5000 and ANCHORS["GoToRedBall"].success == 0.993
    assert ANCHORS["GoTo"].demos == 10000 and ANCHORS["GoTo"].success == 0.961
    with pytest.raises(ValueError, match="FlatBCAnchor"):
        FlatBCAnchor("GoTo", 0, 0.5, "nowhere")


@pytest.mark.babyai
def test_counts_train_on_prefixes_of_one_cached_dataset(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    torch.set_num_threads(1)
    result = run_flat_bc_bench(
        "GoToRedBall", (12, 6), config=TINY, eval_episodes=4, seed=0, data_dir=tmp_path
    )
    assert [r.demos for r in result.rows] == [6, 12]
    assert [r.train_seeds for r in result.rows] == [(0, 5), (0, 11)]  # the bot never fails here
    assert result.rows[0].num_transitions < result.rows[1].num_transitions
    assert all(r.epochs_run == 2 and r.num_params > 0 for r in result.rows)
    payload = result.to_json("skillbank bench flat-bc")
    assert payload["anchor"]["success"] == 0.993 and payload["level"] == "GoToRedBall"
    for row in payload["rows"]:
        assert row["gap"] == pytest.approx(row["success"] - 0.993)
        assert row["at_anchor_demos"] is False
        assert row["eval_seeds"] == [EVAL_SEED, EVAL_SEED + 3]
    assert payload["flat_bc_config"]["encoder"]["conv_channels"] == 4
    # The same seed on the same data gives the same numbers, and the data is reused.
    again = run_flat_bc_bench(
        "GoToRedBall", (6,), config=TINY, eval_episodes=4, seed=0, data_dir=tmp_path
    )
    assert again.rows[0].final_loss == result.rows[0].final_loss
    assert again.rows[0].success == result.rows[0].success
    with pytest.raises(ValueError, match="demo_counts"):
        run_flat_bc_bench(
            "GoToRedBall", (), config=TINY, eval_episodes=4, seed=0, data_dir=tmp_path
        )


@pytest.mark.babyai
def test_cli_writes_the_result_file(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    torch.set_num_threads(1)
    out = tmp_path / "flat.json"
    args = [
        *("bench", "flat-bc", "--level", "GoToRedBall", "--demos", "8"),
        *("--eval-episodes", "4", "--epochs", "1", "--max-minutes", "1"),
        *("--data", str(tmp_path / "data"), "--json", str(out)),
    ]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "anchor: 99.3% at 5,000 demos" in " ".join(result.stdout.split())
    payload = json.loads(out.read_text())
    assert {"machine", "command", "seed", "rows", "anchor", "flat_bc_config"} <= set(payload)
    assert payload["machine"]["versions"]["torch"]
    assert payload["flat_bc_config"]["max_seconds"] == 60.0
    (row,) = payload["rows"]
    assert row["demos"] == 8 and row["train_seeds"][1] < EVAL_SEED
    assert {"success", "gap", "num_params", "train_s", "num_updates"} <= set(row)


def test_cli_rejects_bad_demo_counts(tmp_path: Path) -> None:
    args = ["bench", "flat-bc", "--level", "GoTo", "--demos", "ten", "--json", str(tmp_path / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "--demos" in result.stderr
