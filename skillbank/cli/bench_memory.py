"""CLI: `skillbank bench memory` — the skill-memory benchmark, written as JSON."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from skillbank.bench.memory_bench import MemoryBenchConfig, run_memory_bench
from skillbank.cli.common import console, handle_errors

__all__ = ["bench_memory", "register"]

_COLUMNS = (
    ("skills", "N", "{:,}"),
    ("insert_per_s", "insert/s", "{:,.0f}"),
    ("open_s", "open s", "{:.3f}"),
    ("exact_p50_ms", "exact p50 ms", "{:.3f}"),
    ("numpy_scan_p50_ms", "numpy p50 ms", "{:.3f}"),
    ("approx_p50_ms", "approx p50 ms", "{:.3f}"),
    ("approx_p99_ms", "approx p99 ms", "{:.3f}"),
    ("approx_recall_at_10", "recall@10", "{:.3f}"),
    ("rss_mb", "peak MB", "{:.0f}"),
)


@handle_errors
def bench_memory(
    skills: Annotated[
        list[int], typer.Option("--skills", help="Number of skills N (repeat for several).")
    ],
    json_out: Annotated[Path, typer.Option("--json", help="Write the JSON report here.")],
    dim: Annotated[int, typer.Option("--dim", help="Key dimension Z.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed of keys and queries.")] = 0,
    index: Annotated[
        list[str] | None,
        typer.Option("--index", help="Approximate index to measure (repeat; first is 'approx')."),
    ] = None,
    queries: Annotated[int, typer.Option("--queries", help="Timed queries per method.")] = 200,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Where temporary memories go.")
    ] = None,
) -> None:
    """Insert N clustered keys, then time open, exact and approximate top-10 retrieval."""
    cfg = MemoryBenchConfig(
        sizes=tuple(skills),
        dim=dim,
        seed=seed,
        num_queries=queries,
        indexes=tuple(index) if index else ("faiss",),
        workdir=workdir,
    )
    table = Table(title="skill memory benchmark")
    for _, title, _ in _COLUMNS:
        table.add_column(title, justify="right")

    def show(result: dict[str, Any]) -> None:
        console.print(f"N={result['skills']:,} done", highlight=False)

    # The command line that reproduces this run (every option resolved, defaults included).
    argv = ["skillbank", "bench", "memory"]
    for n in cfg.sizes:
        argv += ["--skills", str(n)]
    argv += ["--dim", str(dim), "--seed", str(seed), "--queries", str(queries)]
    for kind in cfg.indexes:
        argv += ["--index", kind]
    if workdir is not None:
        argv += ["--workdir", str(workdir)]
    command = shlex.join([*argv, "--json", str(json_out)])
    with console.status("running the memory benchmark (each N in fresh processes)..."):
        report = run_memory_bench(cfg, command=command, on_result=show)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    for result in report["results"]:
        table.add_row(
            *(fmt.format(result[key]) if key in result else "-" for key, _, fmt in _COLUMNS)
        )
    console.print(table)
    console.print(f"wrote {json_out}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("memory")(bench_memory)
