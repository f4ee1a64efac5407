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
    # Each group module owns its commands and registers them here; groups never import each other.
    from skillbank.cli import agent, demos, memory

    bench_app = typer.Typer(help="Benchmarks that write JSON result files.", no_args_is_help=True)
    for group in (memory, demos, agent):
        group.register(app)
        group.register_bench(bench_app)
    app.add_typer(bench_app, name="bench")


_wire()
