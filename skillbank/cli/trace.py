"""CLI: `skillbank trace` — replay an eval trace's BabyAI episodes: did walks see their target?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from skillbank.cli.common import console, handle_errors
from skillbank.errors import SkillbankError

__all__ = ["register", "trace"]

_ROWS = (
    ("episodes", "episodes"),
    ("steps", "steps"),
    ("calls", "skill calls"),
    ("walks", "walks (moves only, an object as target)"),
    ("walks_seeing_target_at_start", "  target in view at the start"),
    ("walks_seeing_target", "  target in view at some step"),
    ("walks_ending_facing_target", "  ending facing the target"),
    ("walks_at_cap", "  stopped by max_skill_steps"),
    ("walks_at_cap_never_seeing_target", "    never seeing the target"),
    ("share_of_steps_in_blind_capped_walks", "steps in those blind walks (share)"),
    ("missions_of_several_clauses", "missions of several clauses"),
    ("finishing_no_clause", "  finishing none of them"),
    ("finishing_some_clauses", "  finishing some, not all"),
    ("levels_with_a_locked_door", "levels with a locked door"),
    ("unlocking_a_door", "  unlocking one"),
    ("toggles_at_a_locked_door_without_its_key", "toggles at a locked door without its key"),
    ("sequenced_missions", "missions sequenced by then / after you"),
    ("doing_the_second_part_first", "  doing the part due second first"),
)


def _read_trace(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SkillbankError(
            f"no trace at {path}",
            hint="write one with `skillbank eval babyai/LEVEL --memory M --trace FILE`",
        )
    episodes = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            episodes.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise SkillbankError(
                f"{path}:{number} is not JSON ({error.msg})",
                hint="pass the JSON-lines file `skillbank eval --trace` wrote",
            ) from None
    return episodes


@handle_errors
def trace(
    env: Annotated[str, typer.Argument(help="The BabyAI level evaluated, e.g. babyai/BossLevel.")],
    trace_file: Annotated[Path, typer.Argument(help="The file `skillbank eval --trace` wrote.")],
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Replay at most this many episodes of each outcome."),
    ] = None,
    max_skill_steps: Annotated[
        int,
        typer.Option("--max-skill-steps", min=1, help="The cap the evaluation ran skills under."),
    ] = 64,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the counts here as JSON.")
    ] = None,
) -> None:
    """Replay a BabyAI eval trace in the simulator and count, for failed and successful episodes
    apart, the walks that saw their target, ended facing it, or ran to the step cap blind, and
    the missions of several clauses that finished none or only some of them."""
    from skillbank.envs.babyai_replay import summarise_replays

    episodes = _read_trace(trace_file)
    summary = summarise_replays(env, episodes, max_skill_steps=max_skill_steps, limit=limit)
    table = Table(title=f"{env}: {trace_file}")
    table.add_column("")
    for outcome in summary:
        table.add_column(outcome, justify="right")
    for key, label in _ROWS:
        values = [summary[outcome][key] for outcome in summary]
        table.add_row(label, *(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values))
    console.print(table)
    if json_out is not None:
        payload = {"env": env, "trace": str(trace_file), "max_skill_steps": max_skill_steps}
        payload |= {"limit": limit, **summary}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("trace")(trace)
