"""CLI commands of the memory group."""

from __future__ import annotations

import typer

__all__ = ["register", "register_bench"]


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""


def register_bench(bench_app: typer.Typer) -> None:
    """Add this group's benchmarks to `skillbank bench`."""
