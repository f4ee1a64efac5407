"""The root ``skillbank`` command: wires the command groups together."""

from __future__ import annotations

from typing import Annotated

import typer

from skillbank.cli.common import state

__all__ = ["app", "main"]

app = typer.Typer(
    name="skillbank",
    help="Procedural-memory agents: learn, store, retrieve and compose skills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state.debug = debug


def main() -> None:
    """Entry point of the ``skillbank`` console script."""
    app()


def _wire() -> None:
    # Each module owns its commands and registers them here; command modules never import each
    # other. Owners: memory (skills, verify, gc, tour), demo (demo: the main job), demos /
    # demos_collect (demos ...), agent (learn, eval), trace (trace), bench_* (bench ...).
    from skillbank.cli import (
        agent,
        bench_babyai,
        bench_demos,
        bench_flat_bc,
        bench_memory,
        bench_segmentation,
        demo,
        demos,
        demos_collect,
        memory,
        trace,
    )

    memory.register(app)
    agent.register(app)
    trace.register(app)
    demo.register(app)

    demos_app = typer.Typer(
        help="Collect, inspect and convert demonstrations.", no_args_is_help=True
    )
    demos.register(demos_app)
    demos_collect.register(demos_app)
    app.add_typer(demos_app, name="demos")

    bench_app = typer.Typer(help="Benchmarks that write JSON result files.", no_args_is_help=True)
    for module in (bench_memory, bench_demos, bench_babyai, bench_flat_bc, bench_segmentation):
        module.register(bench_app)
    app.add_typer(bench_app, name="bench")


_wire()
