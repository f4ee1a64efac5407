"""CLI: `skillbank demos collect ENV --episodes N --seed S --out DIR [--workers W] [--ray ADDRESS]
[--map]`.

Tries seeds S, S+1, ... until N episodes are stored (failed seeds are logged and skipped), at most
``--max-tries`` seeds. Running the same command again resumes an interrupted collection. A progress
bar with rate and ETA goes to stderr; the summary (or ``--json``) to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from skillbank import __version__
from skillbank.cli.common import JsonOption, console, emit_json, err_console, handle_errors
from skillbank.envs.collect import collect, demo_source_factory
from skillbank.envs.grid_map import DEFAULT_MAP_RADIUS
from skillbank.events import Event

__all__ = ["register"]


class _RateColumn(ProgressColumn):
    """Episodes per second, from rich's running speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- ep/s" if speed is None else f"{speed:.1f} ep/s", style="cyan")


class _ProgressObserver:
    """Turns collection events into a progress bar over stored episodes, with failures shown.

    Seeds found already done (a resumed collection) move the bar but not the rate: the rate and
    ETA restart at the first seed demonstrated in this run.
    """

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._task: TaskID = progress.add_task("collect", total=total, failed=0)
        self._restart_rate = False
        self.end: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        if event.name == "collect.start":
            self._progress.update(self._task, description=event.info.get("env_id", "collect"))
        elif event.name == "collect.seed":
            stored, failed = event.values["stored"], int(event.values["failed"])
            if event.values.get("resumed"):
                self._restart_rate = True
            elif self._restart_rate:
                self._restart_rate = False
                self._progress.reset(self._task, completed=int(stored - event.values["success"]))
            self._progress.update(self._task, completed=stored, failed=failed)
        elif event.name == "collect.end":
            self.end = dict(event.values)


@handle_errors
def collect_command(
    env: Annotated[
        str,
        typer.Argument(
            help="Environment: babyai/<Level>, metaworld/<task>-v3, toy/<task>, or a Gymnasium id."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Dataset directory (resumed if it exists).")],
    episodes: Annotated[
        int, typer.Option("--episodes", "-n", min=1, help="Episodes to store.")
    ] = 100,
    seed: Annotated[int, typer.Option("--seed", min=0, help="First seed; then S+1, S+2, ...")] = 0,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (default: every core)."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Collect on Ray: 'local', 'auto', or a cluster address (needs skillbank[ray]).",
        ),
    ] = None,
    max_tries: Annotated[
        int | None,
        typer.Option(
            "--max-tries", min=1, help="Most seeds to try (default: 10 x episodes, at least +100)."
        ),
    ] = None,
    explored_map: Annotated[
        bool,
        typer.Option(
            "--map",
            help="BabyAI: also record the agent's explored map (observation 'map', built from "
            "its own views and moves); evaluating a memory that reads it adds it too.",
        ),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Collect N demonstrations of ENV, in parallel, resumably; failed seeds are logged."""
    factory = demo_source_factory(env, map_radius=DEFAULT_MAP_RADIUS if explored_map else None)
    tries = max_tries if max_tries is not None else max(10 * episodes, episodes + 100)
    if tries < episodes:
        raise ValueError(f"--max-tries {tries} is below --episodes {episodes}")
    # Only facts that do not change between an interrupted run and its resumption: the dataset
    # must come out the same bytes whatever --workers or --ray say.
    meta = {
        "collected_by": f"skillbank {__version__}",
        "first_seed": str(seed),
    }
    if explored_map:
        meta["map_radius"] = str(DEFAULT_MAP_RADIUS)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        disable=json_out or not err_console.is_terminal,
    )
    observer = _ProgressObserver(progress, total=episodes)
    try:
        with progress:
            info = collect(
                factory,
                range(seed, seed + tries),
                out,
                num_episodes=episodes,
                num_workers=workers,
                ray_address=ray,
                meta=meta,
                observer=observer,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: what was collected is kept in {out}; run the same command again to "
            "resume",
            highlight=False,
        )
        raise typer.Exit(code=130) from None
    end = observer.end
    payload: dict[str, Any] = {
        "out": str(info.root),
        "env_id": info.env_id,
        "demonstrator": info.demonstrator,
        "episodes": info.num_episodes,
        "steps": info.num_steps,
        "failures": len(info.failures),
        "expert_success_rate": info.success_rate,
        "resumed_episodes": int(end.get("num_resumed", 0)),
        "seconds": end.get("seconds", 0.0),
        "episodes_per_s": end.get("episodes_per_s", 0.0),
        "dataset_hash": info.hash,
        "command": " ".join(sys.argv),
    }
    if json_out:
        emit_json(payload)
        return
    table = Table(title=f"collected {info.env_id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in payload.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("collect")(collect_command)
