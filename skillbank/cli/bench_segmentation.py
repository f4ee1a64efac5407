"""CLI: `skillbank bench segmentation` — boundary F1 and cluster purity per level, as JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from skillbank.cli.common import SettingsOption, console, handle_errors

if TYPE_CHECKING:
    from skillbank.learning.segment import SegmenterConfig

__all__ = ["bench_segmentation", "register"]


@handle_errors
def bench_segmentation(
    json_out: Annotated[Path, typer.Option("--json", help="Write the JSON result here.")],
    levels: Annotated[
        str,
        typer.Option("--levels", help="Comma-separated BabyAI levels or toy tasks (toy/fetch)."),
    ] = "GoTo,PutNext,BossLevel",
    episodes: Annotated[
        int, typer.Option("--episodes", "-n", min=1, help="Demonstrations per level.")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of segmenter and agent.")] = 0,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Demonstration cache, reused (default: segmentation-data beside --json)."
        ),
    ] = None,
    learn: Annotated[
        bool,
        typer.Option("--learn/--no-learn", help="Also run the agent's learn (cluster purity)."),
    ] = True,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Torch CPU threads.")] = 1,
    segmenter: Annotated[
        list[str] | None,
        typer.Option(
            "--segmenter",
            help="A SegmenterConfig field, KEY=VALUE (repeatable), e.g. chunk_min_rise=0.6.",
        ),
    ] = None,
    settings: SettingsOption = None,
) -> None:
    """Segment bot demonstrations per level; score boundaries (±1 step) and skill clusters."""
    import torch

    from skillbank.bench.run_info import command_line
    from skillbank.bench.segmentation_bench import (
        SegmentationBenchConfig,
        run_segmentation_bench,
    )
    from skillbank.learning.segment import SegmenterConfig

    torch.set_num_threads(threads)
    segmenter_config = _segmenter_config(SegmenterConfig(), segmenter or [])
    names = tuple(name.strip() for name in levels.split(",") if name.strip())
    config = SegmentationBenchConfig(
        levels=names,
        episodes=episodes,
        seed=seed,
        data_dir=data_dir or json_out.parent / "segmentation-data",
        learn=learn,
        segmenter=segmenter_config,
        settings=tuple(settings or ()),
    )
    with console.status("segmenting demonstrations..."):
        result = run_segmentation_bench(config, command=command_line())
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    table = Table(title="segmentation against the demonstrator's subgoals (±1 step)")
    for title in ("level", "episodes", "F1", "precision", "recall", "purity", "skills", "s"):
        table.add_column(title, justify="right")
    for row in result["levels"]:
        purity = row["cluster_purity"]
        table.add_row(
            row["level"],
            str(row["episodes"]),
            f"{row['segmentation_f1']:.3f}",
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            "-" if purity is None else f"{purity:.3f}",
            "-" if row["num_skills"] is None else str(row["num_skills"]),
            f"{row['seconds']:.1f}",
        )
    console.print(table)
    console.print(f"wrote {json_out}", highlight=False)


def _segmenter_config(base: SegmenterConfig, settings: list[str]) -> SegmenterConfig:
    """``base`` with ``KEY=VALUE`` settings applied, each value read as its field's type."""
    fields = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"--segmenter {setting!r}: expected KEY=VALUE, KEY one of {sorted(fields)}"
            )
        kind = type(getattr(base, key))
        changes[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return dataclasses.replace(base, **changes)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("segmentation")(bench_segmentation)
