"""CLI: `skillbank bench flat-bc` — flat BC on one BabyAI level against BabyAI 1.1's anchors.

Example:
    skillbank bench flat-bc --level GoToRedBall --demos 5000 --eval-episodes 512 --seed 0 \\
        --json runs/flat-bc-gotoredball.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skillbank.cli.common import console, handle_errors

__all__ = ["bench_flat_bc", "register"]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--demos must be comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError(f"--demos must list counts >= 1, got {text!r}")
    return counts


@handle_errors
def bench_flat_bc(
    json_out: Annotated[Path, typer.Option("--json", help="Write the JSON result here.")],
    level: Annotated[str, typer.Option("--level", help="BabyAI level, e.g. GoToRedBall.")],
    demos: Annotated[
        str, typer.Option("--demos", help="Demonstration count(s), e.g. 5000 or 1000,2000,5000.")
    ],
    eval_episodes: Annotated[
        int, typer.Option("--eval-episodes", help="Evaluation episodes on unseen seeds.")
    ] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Seed of training.")] = 0,
    data_dir: Annotated[
        Path, typer.Option("--data", help="Demonstration cache (reused when present).")
    ] = Path("runs/flat-bc-data"),
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the demonstrations.")] = 20,
    episodes_per_batch: Annotated[
        int, typer.Option("--episodes-per-batch", help="Whole episodes per gradient update.")
    ] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 1e-3,
    max_minutes: Annotated[
        float | None,
        typer.Option("--max-minutes", help="Wall-time cap on training, per demo count."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="Torch device.")] = "cpu",
    threads: Annotated[int, typer.Option("--threads", help="Torch CPU threads.")] = 1,
) -> None:
    """Train flat BC on bot demonstrations of one level; report success vs the published anchor."""
    import torch

    from skillbank.bench.baselines.flat_bc import FlatBCConfig
    from skillbank.bench.flat_bc_bench import run_flat_bc_bench
    from skillbank.bench.run_info import command_line
    from skillbank.events import Event

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    config = FlatBCConfig(
        num_actions=7,
        epochs=epochs,
        episodes_per_batch=episodes_per_batch,
        lr=lr,
        max_seconds=None if max_minutes is None else 60.0 * max_minutes,
    )
    command = command_line()

    def show(event: Event) -> None:
        if event.name.startswith(("flat_bc_bench.", "flat_bc.epoch")):
            values = ", ".join(f"{k}={v:.4g}" for k, v in event.values.items())
            where = " ".join(str(v) for v in event.info.values())
            line = f"[dim]{time.strftime('%H:%M:%S')}[/] {event.name} {where} {values}"
            console.print(line, highlight=False, soft_wrap=True)

    with console.status(f"flat BC on {level}..."):
        result = run_flat_bc_bench(
            level,
            _counts(demos),
            config=config,
            eval_episodes=eval_episodes,
            seed=seed,
            data_dir=data_dir,
            device=device,
            observer=show,
        )
    payload = result.to_json(command)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    anchor = result.anchor
    title = f"flat BC on {level}, {eval_episodes} unseen seeds"
    if anchor:
        title += f" (anchor: {100 * anchor.success:.1f}% at {anchor.demos:,} demos)"
    table = Table(title=title)
    for column in ("demos", "success", "gap", "params", "train s", "updates", "epochs", "acc"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in payload["rows"]:
        gap = "—" if row["gap"] is None else f"{100 * row['gap']:+.1f}"
        acc = "—" if row["final_accuracy"] is None else f"{100 * row['final_accuracy']:.1f}%"
        table.add_row(
            f"{row['demos']:,}",
            f"{100 * row['success']:.1f}%",
            gap + ("" if row["at_anchor_demos"] else "*"),
            f"{row['num_params']:,}",
            f"{row['train_s']:.0f}",
            str(row["num_updates"]),
            str(row["epochs_run"]),
            acc,
        )
    console.print(table)
    if anchor and any(not row["at_anchor_demos"] for row in payload["rows"]):
        console.print("* gap at another demo count than the anchor's", highlight=False)
    console.print(f"wrote {json_out}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("flat-bc")(bench_flat_bc)
