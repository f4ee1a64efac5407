"""CLI: `skillbank learn DATASET... --memory DIR` and `skillbank eval ENV --memory DIR ...`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from skillbank.agent import AgentConfig, ProceduralMemoryAgent, expand_presets
from skillbank.bench.run_info import command_line, machine_info, package_versions
from skillbank.cli.common import (
    DEFAULT_MEMORY,
    JsonOption,
    MemoryOption,
    SettingsOption,
    console,
    emit_json,
    handle_errors,
)
from skillbank.cli.pack_memory import open_memory_or_pack, refuse_pack
from skillbank.envs.babyai import describe_cell
from skillbank.envs.babyai_missions import success_by_mission
from skillbank.envs.dataset import load_dataset
from skillbank.memory.store import SkillMemory

__all__ = ["register"]


def _run_info(seed: int) -> dict[str, object]:
    return {
        "command": command_line(),
        "machine": machine_info(),
        "versions": package_versions("minigrid", "metaworld"),
        "seed": seed,
    }


@handle_errors
def learn(
    datasets: Annotated[list[Path], typer.Argument(help="Dataset directories to learn from.")],
    memory: MemoryOption = DEFAULT_MEMORY,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every learning step.")] = 0,
    composites: Annotated[
        bool,
        typer.Option(
            "--composites",
            help="Also learn composite skills (recurring sequences of skills; experimental).",
        ),
    ] = False,
    settings: SettingsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Segment demonstrations into skills, store them, and train the controller."""
    torch.set_num_threads(1)
    refuse_pack(memory, "learn into")
    settings = expand_presets(settings or [])  # recorded as applied, presets spelled out
    config = AgentConfig(seed=seed, composites=composites).with_settings(settings)
    episodes = [list(load_dataset(path)) for path in datasets]
    with SkillMemory(memory) as store:
        report = ProceduralMemoryAgent(store, config).learn(episodes)
    payload = {**report.to_json(), **_run_info(seed), "settings": settings}
    if as_json:
        emit_json(payload)
        return
    console.print(
        f"learned from {report.num_episodes} episodes: {report.num_segments} segments, "
        f"{len(report.new_skill_ids)} new skills, {report.num_reused} segments reused; "
        f"{len(report.skill_ids)} skills in {memory} ({report.train_s:.1f}s)"
    )
    if report.composite_ids:
        console.print(
            f"{len(report.new_composite_ids)} new composite skills, "
            f"{len(report.composite_ids)} in all"
        )
    if report.segmentation_f1 is not None:
        console.print(
            f"segmentation boundary F1 {report.segmentation_f1:.3f}, "
            f"cluster purity {report.cluster_purity:.3f}"
        )


@handle_errors
def evaluate(
    env: Annotated[str, typer.Argument(help="Environment id, e.g. babyai/GoTo or toy/fetch.")],
    memory: MemoryOption = DEFAULT_MEMORY,
    episodes: Annotated[int, typer.Option("--episodes", help="Episodes to run.")] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the first episode.")] = 1_000_000,
    top_k: Annotated[int, typer.Option("--top-k", help="Skills mixed per decision.")] = 1,
    out: Annotated[
        Path | None, typer.Option("--json", help="Write the eval JSON to this file.")
    ] = None,
    settings: SettingsOption = None,
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace",
            help="Write every episode's skill calls (step, skill, argument, actions) to this "
            "JSON-lines file, one episode a line.",
        ),
    ] = None,
) -> None:
    """Run the learned agent on ENV and report success, steps and skills used.

    Settings that act at run time: top_k, sample_actions, sample_skills, sample_targets,
    interrupt_margin, stall_steps, max_skill_steps, num_envs (e.g. --set sample_skills=false)."""
    torch.set_num_threads(1)
    settings = expand_presets(settings or [])
    config = AgentConfig(top_k=top_k).with_settings(settings)
    hint = "run `skillbank learn DATASET --memory DIR` first, or pass a pack (DIR or .tar.gz)"
    with open_memory_or_pack(memory, hint=hint) as store:
        agent = ProceduralMemoryAgent(store, config)
        result = agent.evaluate(env, episodes=episodes, seed=seed, trace=trace is not None)
    payload = {**result.to_json(), **_run_info(seed), "settings": settings}
    if result.env.startswith("babyai") and result.outcomes:
        payload["success_by_mission"] = success_by_mission(
            [o.task for o in result.outcomes], [o.success for o in result.outcomes]
        )
    if trace is not None:  # the calls go to the trace file, not the eval JSON
        _write_trace(trace, result.env, payload["per_episode"])
        payload["per_episode"] = [
            {k: v for k, v in episode.items() if k != "calls"} for episode in payload["per_episode"]
        ]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    console.print(
        f"{result.env}: success {result.success_rate:.3f} over {result.episodes} episodes, "
        f"{result.mean_steps:.1f} steps/episode, {result.steps_per_s:.0f} env steps/s, "
        f"{len(result.skills_used)} skills used"
    )


def _write_trace(path: Path, env: str, episodes: list[dict[str, Any]]) -> None:
    """One JSON line per episode; BabyAI calls also name their target cell in words."""
    if env.startswith("babyai"):
        for episode in episodes:
            for call in episode.get("calls", []):
                with contextlib.suppress(ValueError):  # an argument that is no grid cell
                    call["target"] = describe_cell(call["argument"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as file:
        for episode in episodes:
            file.write(json.dumps(episode, sort_keys=True) + "\n")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("learn")(learn)
    app.command("eval")(evaluate)
