"""CLI: `skillbank bench demos` — demonstrations per second, parallel vs serial, as JSON."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skillbank.bench.demos_bench import DemosBenchConfig, run_demos_bench
from skillbank.cli.common import console, handle_errors

__all__ = ["bench_demos", "register"]

_COLUMNS = (
    ("source", "source", "{}"),
    ("episodes", "episodes", "{}"),
    ("serial_per_s", "serial demos/s", "{:.2f}"),
    ("parallel_per_s", "parallel demos/s", "{:.2f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("num_workers", "workers", "{}"),
    ("expert_success_rate", "expert success", "{:.3f}"),
    ("identical_output", "same bytes", "{}"),
)


@handle_errors
def bench_demos(
    json_out: Annotated[Path, typer.Option("--json", help="Write the JSON report here.")],
    episodes: Annotated[
        int, typer.Option("--episodes", "-n", min=1, help="Seeds per source (both runs).")
    ] = 400,
    seed: Annotated[int, typer.Option("--seed", min=0, help="First seed.")] = 0,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=2, help="Workers of the parallel run (default: all)."),
    ] = None,
    babyai_level: Annotated[
        str, typer.Option("--babyai", help="BabyAI level, or 'none' to skip.")
    ] = "GoTo",
    metaworld_task: Annotated[
        str, typer.Option("--metaworld", help="Meta-World task, or 'none' to skip.")
    ] = "push-v3",
    repeats: Annotated[
        int,
        typer.Option("--repeats", min=1, help="Serial/parallel pairs per source (medians)."),
    ] = 1,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Where the datasets go (default: temporary).")
    ] = None,
) -> None:
    """Collect the same seeds serially and in parallel, per source; report demos/s and speedup."""
    cfg = DemosBenchConfig(
        num_seeds=episodes,
        seed=seed,
        num_workers=workers,
        babyai_level=None if babyai_level.lower() == "none" else babyai_level,
        metaworld_task=None if metaworld_task.lower() == "none" else metaworld_task,
        workdir=workdir,
        repeats=repeats,
    )
    command = shlex.join(["skillbank", *sys.argv[1:]])
    with console.status("collecting each source serially, then in parallel..."):
        report = run_demos_bench(cfg, command=command)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    table = Table(title="demonstration throughput (same seeds, side by side)")
    for _, title, _ in _COLUMNS:
        table.add_column(title, justify="right")
    for row in report["results"]:
        table.add_row(*(fmt.format(row[key]) for key, _, fmt in _COLUMNS))
    console.print(table)
    load = report["machine"]["load_average"]
    console.print(f"load average at the end: {load[0]:.2f} (1 min)", highlight=False)
    console.print(f"wrote {json_out}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("demos")(bench_demos)
