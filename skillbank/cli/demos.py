"""CLI: `skillbank demos info | export-minari | import-minari`.

People get rich tables; ``--json`` gives machine-readable output on stdout. Errors print one line
plus a hint and exit 1 (``skillbank --debug`` shows the traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from skillbank.cli.common import JsonOption, console, emit_json, handle_errors
from skillbank.envs.dataset import Dataset, DatasetInfo, load_dataset
from skillbank.envs.minari_io import default_minari_name, export_minari, import_minari

__all__ = ["register"]

DirArgument = Annotated[Path, typer.Argument(help="Demonstration dataset directory.")]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Minari datasets directory (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets).",
    ),
]


def _shapes(dataset: Dataset) -> dict[str, Any]:
    """Per-step shapes and dtypes of the first episode's arrays (one file read)."""
    if not len(dataset):
        return {}
    episode = dataset[0]
    observations = {
        name: {"shape": list(array.shape[1:]), "dtype": str(array.dtype)}
        for name, array in episode.observations.items()
    }
    actions = (
        None
        if episode.actions is None
        else {"shape": list(episode.actions.shape[1:]), "dtype": str(episode.actions.dtype)}
    )
    return {"observations": observations, "actions": actions}


def _summary(info: DatasetInfo, *, verified: bool) -> dict[str, Any]:
    steps = [r.num_steps for r in info.episodes]
    num_state_only = sum(r.state_only for r in info.episodes)
    summary: dict[str, Any] = {
        "path": str(info.root),
        "env_id": info.env_id,
        "demonstrator": info.demonstrator,
        "format_version": info.format_version,
        "episodes": info.num_episodes,
        "steps": info.num_steps,
        "mean_steps": info.num_steps / len(steps) if steps else 0.0,
        "min_steps": min(steps, default=0),
        "max_steps": max(steps, default=0),
        "success_rate": info.success_rate,
        "failures": len(info.failures),
        "failed_seeds": sorted(info.failures),
        "state_only": info.state_only,
        "state_only_episodes": num_state_only,
        "dataset_hash": info.hash,
        "verified": verified,
        "meta": dict(info.meta),
    }
    if info.episodes:
        summary["seed_range"] = [info.seeds[0], info.seeds[-1]]
    return summary


def _table(title: str, payload: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in payload.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list) and len(value) > 12:
            value = ", ".join(map(str, value[:12])) + f", ... ({len(value)} in all)"
        table.add_row(key, str(value))
    return table


@handle_errors
def info_command(
    directory: DirArgument,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify", help="Hash every episode file (else check they exist)."
        ),
    ] = True,
    json_out: JsonOption = False,
) -> None:
    """Summarise a dataset: episodes, env, success rate, steps, failures, state-only or not."""
    dataset = load_dataset(directory, verify=verify)
    payload = {**_summary(dataset.info, verified=verify), **_shapes(dataset)}
    if json_out:
        emit_json(payload)
        return
    payload["failed_seeds"] = payload["failed_seeds"] or "-"
    console.print(_table(f"dataset {directory}", payload))


@handle_errors
def export_minari_command(
    directory: DirArgument,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Minari dataset id (default skillbank/<env>-v0)."),
    ] = None,
    root: RootOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write a dataset as a local Minari dataset (lossless HDF5)."""
    dataset = load_dataset(directory)
    dataset_id = name or default_minari_name(dataset.info)
    path = export_minari(dataset, dataset_id, root=root)
    payload = {"name": dataset_id, "path": str(path), "episodes": len(dataset)}
    if json_out:
        emit_json(payload)
    else:
        console.print(f"exported {len(dataset)} episode(s) to Minari dataset {dataset_id} ({path})")


@handle_errors
def import_minari_command(
    name: Annotated[str, typer.Argument(help="Minari dataset id, e.g. skillbank/toy-fetch-v0.")],
    out: Annotated[Path, typer.Option("--out", help="New dataset directory.")],
    root: RootOption = None,
    env_id: Annotated[
        str | None, typer.Option("--env-id", help="Env id for datasets skillbank did not write.")
    ] = None,
    demonstrator: Annotated[
        str | None,
        typer.Option("--demonstrator", help="Demonstrator for datasets skillbank did not write."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Write a local Minari dataset as a skillbank dataset."""
    info = import_minari(name, out, root=root, env_id=env_id, demonstrator=demonstrator)
    payload = _summary(info, verified=True)
    if json_out:
        emit_json(payload)
    else:
        console.print(f"imported {info.num_episodes} episode(s) of {info.env_id} into {out}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("info")(info_command)
    app.command("export-minari")(export_minari_command)
    app.command("import-minari")(import_minari_command)
