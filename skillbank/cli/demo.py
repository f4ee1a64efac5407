"""CLI: `skillbank demo` — the main job of ``make demo``.

Collects BabyAI bot demonstrations of primitive levels, learns skills from them into the skill
memory, solves a composite level never trained on by retrieving and composing those skills, and
prints a side-by-side table against flat behavioural cloning trained on the same demonstrations.
Writes the result as JSON (machine, versions, seeds, command line). Re-runnable: demonstrations are
reused and the agent explains them with the skills already in the memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skillbank.cli.common import DEFAULT_MEMORY, MemoryOption, console, handle_errors
from skillbank.errors import SkillMemoryError

__all__ = ["demo_command", "register"]

_SHOWN_EVENTS = {
    "demo.collected": "demonstrations ready",
    "learn.segmented": "segmented",
    "learn.skill": "new skill",
    "demo.learned": "skills learned",
    "demo.flat_bc_trained": "flat BC trained",
    "demo.evaluated": "evaluated",
}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


@handle_errors
def demo_command(
    memory: MemoryOption = DEFAULT_MEMORY,
    json_out: Annotated[Path, typer.Option("--json", help="Write the JSON result here.")] = Path(
        "runs/demo.json"
    ),
    data_dir: Annotated[
        Path, typer.Option("--data", help="Demonstrations (reused when present).")
    ] = Path("runs/demo-data"),
    quick: Annotated[
        bool, typer.Option("--quick", help="A tiny version (seconds; used by the tests).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every learning step.")] = 0,
    threads: Annotated[
        int, typer.Option("--threads", help="Torch CPU threads (1 is fastest on a loaded box).")
    ] = 1,
    composites: Annotated[
        bool, typer.Option("--composites", help="Also learn composite skills (skills of skills).")
    ] = False,
) -> None:
    """Learn primitive BabyAI skills, compose them on an unseen level, compare with flat BC."""
    import torch

    from skillbank.bench.demo_job import DEMO_PLANS, run_demo_job
    from skillbank.bench.run_info import command_line
    from skillbank.events import Event

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    plan = DEMO_PLANS["quick" if quick else "default"]
    command = command_line()
    levels = ", ".join(f"{p.level} ×{p.demos}" for p in plan.train_levels)
    console.print(
        f"[bold]skillbank demo[/] ({plan.name}): learn skills from {levels}; "
        f"solve {', '.join(plan.test_levels)} (never trained on) by retrieval and composition; "
        f"compare with flat BC on {plan.eval_episodes} episodes per level",
        soft_wrap=True,
    )

    def show(event: Event) -> None:
        label = _SHOWN_EVENTS.get(event.name)
        if label is None:
            return
        where = event.info.get("level") or event.info.get("id") or ""
        values = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in event.values.items()
        )
        line = f"[dim]{time.strftime('%H:%M:%S')}[/] {label} {where} {values}".replace("  ", " ")
        console.print(line, highlight=False, soft_wrap=True)

    with console.status("running the demo job..."):
        result = run_demo_job(
            plan,
            seed=seed,
            memory_dir=memory,
            data_dir=data_dir,
            observer=show,
            composites=composites,
        )
    payload = result.to_json(command)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    table = Table(title=f"skillbank vs flat BC — success on {plan.eval_episodes} unseen seeds")
    table.add_column("level", no_wrap=True)
    for column in ("trained", "demos", "skillbank", "flat BC", "ratio", "skills"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in result.levels:
        table.add_row(
            r.level,
            "yes" if r.trained_on else "[bold]no: unseen[/]",
            str(r.demos),
            _pct(r.skillbank_success),
            _pct(r.flat_bc_success),
            f"{r.skillbank_success / r.flat_bc_success:.2f}×" if r.flat_bc_success > 0 else "—",
            str(len(r.skills_used)),
        )
    console.print(table)
    t = result.timings
    f1 = "—" if result.segmentation_f1 is None else f"{result.segmentation_f1:.2f}"
    purity = "—" if result.cluster_purity is None else f"{result.cluster_purity:.2f}"
    console.print(
        f"skills: {len(result.skill_ids)} in {memory} ({len(result.new_skill_ids)} new, "
        f"{result.skills_before} before this run; {result.num_reused}/{result.num_segments} "
        f"segments explained by stored skills); segmentation F1 {f1}, purity {purity}\n"
        f"parameters: skillbank {result.skillbank_params:,} acting (skills + controller; "
        f"skill VAE {result.skillbank_vae_params:,} more, learning only), "
        f"flat BC {result.flat_bc_params:,} "
        f"({result.flat_bc_params / max(1, result.skillbank_params):.2f}×)\n"
        f"budget: equal CPU time — skillbank learn {t['skillbank_learn_cpu_s']:.0f} CPU s "
        f"({t['skillbank_learn_s']:.0f} s wall), flat BC train {t['flat_bc_train_cpu_s']:.0f} "
        f"CPU s ({t['flat_bc_train_s']:.0f} s wall; {result.flat_bc_updates} updates, "
        f"{result.flat_bc_epochs} epochs)\n"
        f"time: collect {t['collect_s']:.0f} s, evaluate {t['evaluate_s']:.0f} s, "
        f"total {t['total_s']:.0f} s\n"
        f"wrote {json_out}; inspect the skills with `skillbank skills ls --memory {memory}`",
        highlight=False,
        soft_wrap=True,
    )
    if result.verify_problems:
        raise SkillMemoryError(
            f"{memory} has {result.verify_problems} problem(s) after the demo",
            hint=f"see them with `skillbank verify --memory {memory}`",
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("demo")(demo_command)
