"""CLI: `skillbank bench babyai` — the BabyAI curriculum, skillbank vs flat BC, written as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from skillbank.cli.common import SettingsOption, console, handle_errors
from skillbank.errors import SkillbankError

__all__ = ["bench_babyai", "register"]


def _demo_counts(text: str) -> dict[str, int]:
    """``"BossLevel=1000,GoTo=500"`` -> ``{"BossLevel": 1000, "GoTo": 500}``."""
    counts: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        level, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise ValueError(f"--demos {item!r}: write LEVEL=COUNT, e.g. BossLevel=1000")
        counts[level.strip()] = int(number)
    return counts


@handle_errors
def bench_babyai(
    json_out: Annotated[Path, typer.Option("--json", help="Write the JSON result here.")],
    budget: Annotated[
        str, typer.Option("--budget", help="smoke (CI, minutes), small, or full (hours on CPU).")
    ] = "smoke",
    seed: Annotated[int, typer.Option("--seed", help="Seed of every learning step.")] = 0,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="Demonstration cache, memory, table and plots (default: beside --json).",
        ),
    ] = None,
    no_agent: Annotated[
        bool, typer.Option("--no-agent", help="Run flat BC only (skillbank fields are null).")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="Torch device for flat BC.")] = "cpu",
    levels: Annotated[
        str | None,
        typer.Option("--levels", help="Run only these levels of the budget, e.g. GoToLocal,GoTo."),
    ] = None,
    demos: Annotated[
        str | None,
        typer.Option(
            "--demos",
            help="Change demonstration counts of levels run, e.g. BossLevel=1000,GoTo=500.",
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="Torch CPU threads (small networks on small batches run fastest on 1).",
        ),
    ] = 1,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw plots (needs the report extra).")
    ] = True,
    pack: Annotated[
        Path | None,
        typer.Option(
            "--pack",
            help="Also export the trained memory (latest versions) as a pack (must not exist).",
        ),
    ] = None,
    settings: SettingsOption = None,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="curriculum: one learn call per level, in order; "
            "joint: every level's demonstrations in one call, then every level evaluated.",
        ),
    ] = "curriculum",
    explored_map: Annotated[
        bool,
        typer.Option(
            "--map",
            help="Record the agent's explored map in the demonstrations (read by the agent's "
            "controller and by flat BC); cached apart, in OUT_DIR/demos-map.",
        ),
    ] = False,
) -> None:
    """Run the curriculum (primitive levels, then composite ones); write JSON, table, plots."""
    from skillbank.bench.babyai_bench import (
        BUDGETS,
        PROTOCOLS,
        markdown_table,
        run_babyai_bench,
        select_levels,
    )
    from skillbank.bench.run_info import command_line
    from skillbank.events import Event

    if budget not in BUDGETS:
        raise ValueError(f"--budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    wanted = [name.strip() for name in (levels or "").split(",") if name.strip()]
    plan = select_levels(BUDGETS[budget], wanted, _demo_counts(demos or ""))
    directory = out_dir or json_out.parent / f"bench-babyai-{budget}"
    command = command_line()
    if pack is not None and (no_agent or pack.exists()):
        raise SkillbankError(
            f"--pack {pack}: " + ("--no-agent trains no memory" if no_agent else "already exists"),
            hint="drop --no-agent, or remove the directory / choose another --pack path",
        )

    def show(event: Event) -> None:
        if event.name.startswith("bench."):
            values = ", ".join(f"{k}={v:.3g}" for k, v in event.values.items())
            console.print(f"{event.info.get('level', '')}: {event.name} {values}", highlight=False)

    with console.status(f"running the BabyAI benchmark ({budget})..."):
        result = run_babyai_bench(
            plan,
            seed=seed,
            out_dir=directory,
            include_agent=not no_agent,
            device=device,
            observer=show,
            settings=tuple(settings or ()),
            protocol=protocol,
            explored_map=explored_map,
        )
    payload = result.to_json(command)
    table = markdown_table(result.levels)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "table.md").write_text(table)
    payload["table"] = str(directory / "table.md")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    console.print(table, highlight=False, soft_wrap=True)
    if plots:
        # The report layer is its own entry point (cli and report do not import each other).
        drawn = subprocess.run(
            [sys.executable, "-m", "skillbank.report.plots", str(json_out), str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        if drawn.returncode != 0:
            raise SkillbankError(
                f"plots failed: {drawn.stderr.strip().splitlines()[-1:]}",
                hint="install the report extra: pip install 'skillbank[report]', or --no-plots",
            )
        payload["plots"] = drawn.stdout.split()
        json_out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if pack is not None:
        exported = _export_memory_pack(
            directory / f"memory-{budget}-seed{seed}", pack, command, seed
        )
        payload["pack"] = exported
        json_out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        num_bytes = exported["num_bytes"]
        assert isinstance(num_bytes, int)
        console.print(
            f"wrote pack {pack} (latest versions only, {num_bytes / 2**20:.2f} MB)",
            highlight=False,
        )
    console.print(f"wrote {json_out}", highlight=False)


def _export_memory_pack(memory_dir: Path, pack: Path, command: str, seed: int) -> dict[str, object]:
    """Export the latest version of every record of the trained memory (skills and agent
    components) to ``pack``: what the agent needs to act, without earlier versions."""
    import platform

    import torch

    from skillbank import __version__
    from skillbank.memory.packs import export_pack
    from skillbank.memory.store import SkillMemory

    versions = (
        f"skillbank={__version__} torch={torch.__version__} python={platform.python_version()}"
    )
    recorded = f"{command}  # seed={seed} {versions}"
    with SkillMemory(memory_dir, create=False) as store:
        report = export_pack(store, pack, command=recorded, latest_only=True)
    return {
        "path": str(pack),
        "command": recorded,
        "num_skills": len(report.skill_ids),
        "latest_only": True,
        "num_bytes": report.num_bytes,
    }


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("babyai")(bench_babyai)
