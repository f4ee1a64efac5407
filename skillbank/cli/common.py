"""What every command shares: the memory option, JSON output, and error reporting."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from skillbank.errors import SkillbankError

__all__ = [
    "JsonOption",
    "MemoryOption",
    "SettingsOption",
    "console",
    "emit_json",
    "handle_errors",
    "state",
]

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

MemoryOption = Annotated[
    Path, typer.Option("--memory", help="Skill memory directory.", show_default=True)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SettingsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="An agent setting part.field=value (repeatable), e.g. --set skill.argument=hindsight "
        "(the fields of skillbank.agent.AgentConfig and its parts), or @name for a bundle of "
        "them (skillbank.agent.SETTING_PRESETS; --set @hindsight: the best measured recipe).",
    ),
]

DEFAULT_MEMORY = Path("skillbank-memory")


class _State:
    debug: bool = False


state = _State()


def emit_json(payload: Any) -> None:
    """Write ``payload`` as JSON on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a SkillbankError or ValueError into one clear line plus a hint, and exit 1.

    With ``--debug`` the traceback is shown instead.
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (SkillbankError, ValueError, FileNotFoundError) as exc:
            if state.debug:
                raise
            hint = exc.hint if isinstance(exc, SkillbankError) else "check the arguments (--help)"
            # escape(): messages hold brackets ("skillbank[babyai]") that are not rich markup.
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            err_console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper
