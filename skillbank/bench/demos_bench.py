"""Demonstration throughput: parallel collection vs a plain single-process loop, same seeds.

For each source (a BabyAI level and a Meta-World task) the benchmark collects the same seeds twice,
side by side in one invocation:

- *serial*: a plain loop in this process — build the demonstrator, ``attempt`` each seed, write
  each episode (or log the failure) with :class:`~skillbank.envs.dataset.DatasetWriter`;
- *parallel*: :func:`~skillbank.envs.collect.collect` on local worker processes (one per core
  unless told otherwise), worker start-up included.

Both write a dataset, and the report checks they are the same bytes (``identical_output``).
Demonstrations per second count stored episodes over wall-clock seconds. The simulators are
imported once before either timing, so neither pays the import in this process (the worker
processes of the parallel run do pay theirs: that is part of its cost).

The report holds the machine (with its load average before and after each source: other work on
the machine skews a throughput ratio), the versions, the seeds and the command line. Each row also
says how many cores each run actually got (CPU seconds per wall-clock second). On a shared Linux
machine with ``sched_autogroup`` on, the scheduler splits the CPU between sessions, not processes:
the workers of one session then share what a single process would have had, and the parallel run
cannot be faster however well it parallelises; the ``*_cores_used`` figures show when that
happened.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillbank.bench.run_info import machine_info, package_versions
from skillbank.envs.collect import collect
from skillbank.envs.dataset import DatasetInfo, DatasetWriter
from skillbank.envs.worker_pool import AttemptingDemoSource, SourceFactory
from skillbank.events import Event, NullObserver, Observer
from skillbank.types import Episode

__all__ = [
    "DemosBenchConfig",
    "bench_source",
    "run_demos_bench",
    "serial_collect",
]


@dataclass(frozen=True, slots=True)
class DemosBenchConfig:
    """What the demonstration benchmark runs.

    Attributes:
        num_seeds: Seeds per source, the same for both runs: ``seed .. seed + num_seeds - 1``.
        seed: The first seed.
        num_workers: Worker processes of the parallel run (``None``: every core).
        babyai_level: BabyAI level to demonstrate (``None`` skips BabyAI).
        metaworld_task: Meta-World task to demonstrate (``None`` skips Meta-World).
        workdir: Where the datasets go (a temporary directory, removed after, if ``None``).
        repeats: Serial/parallel pairs per source, alternating; the report gives medians.
    """

    num_seeds: int = 400
    seed: int = 0
    num_workers: int | None = None
    babyai_level: str | None = "GoTo"
    metaworld_task: str | None = "push-v3"
    workdir: Path | None = None
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"DemosBenchConfig.repeats must be >= 1, got {self.repeats}")
        if self.num_seeds < 1:
            raise ValueError(f"DemosBenchConfig.num_seeds must be >= 1, got {self.num_seeds}")
        if self.seed < 0:
            raise ValueError(f"DemosBenchConfig.seed must be >= 0, got {self.seed}")
        if self.num_workers is not None and self.num_workers < 2:
            raise ValueError("DemosBenchConfig.num_workers must be >= 2 (or None: every core)")
        if self.babyai_level is None and self.metaworld_task is None:
            raise ValueError("DemosBenchConfig needs a babyai_level or a metaworld_task")


def serial_collect(source_factory: SourceFactory, seeds: range, out_dir: Path) -> DatasetInfo:
    """The baseline: one process, one loop, the same writer as the collector.

    Args:
        source_factory: Builds the demonstrator.
        seeds: Seeds, tried in order.
        out_dir: New dataset directory.

    Returns:
        The written dataset's info.
    """
    source = source_factory()
    demonstrator = getattr(source, "demonstrator", None)
    if not isinstance(demonstrator, str) or not demonstrator:
        raise ValueError(f"{source!r} has no `demonstrator` name to record in the dataset")
    writer = DatasetWriter(out_dir, env_id=source.env_id, demonstrator=demonstrator)
    for seed in seeds:
        if isinstance(source, AttemptingDemoSource):
            result: Episode | str = source.attempt(seed)
        else:
            result = source.demonstrate(seed) or "demonstrator returned no episode"
        if isinstance(result, Episode):
            writer.write(result)
        else:
            writer.log_failure(seed, result)
    return writer.close()


def _timed_pair(
    name: str,
    source_factory: SourceFactory,
    seeds: range,
    workdir: Path,
    num_workers: int | None,
) -> tuple[DatasetInfo, DatasetInfo, dict[str, Any]]:
    """One serial run, then one parallel run, each into a fresh dataset; their timings."""
    for run in ("serial", "parallel"):  # fresh datasets: an old one would be resumed, not timed
        shutil.rmtree(workdir / f"{name}-{run}", ignore_errors=True)
    load_before = list(os.getloadavg())

    start, cpu_start = time.perf_counter(), time.process_time()
    serial = serial_collect(source_factory, seeds, workdir / f"{name}-serial")
    serial_seconds = time.perf_counter() - start
    serial_cpu = time.process_time() - cpu_start

    workers_used: list[float] = []
    worker_cpu: list[float] = []

    def note_workers(event: Event) -> None:
        if event.name == "collect.start":
            workers_used.append(event.values["num_workers"])
        elif event.name == "collect.seed":
            worker_cpu.append(event.values.get("cpu_seconds", 0.0))

    start, cpu_start = time.perf_counter(), time.process_time()
    parallel = collect(
        source_factory,
        seeds,
        workdir / f"{name}-parallel",
        num_workers=num_workers,
        observer=note_workers,
    )
    parallel_seconds = time.perf_counter() - start
    parallel_cpu = time.process_time() - cpu_start + sum(worker_cpu)  # this process + workers
    serial_per_s = serial.num_episodes / serial_seconds
    parallel_per_s = parallel.num_episodes / parallel_seconds
    timing = {
        "serial_seconds": serial_seconds,
        "parallel_seconds": parallel_seconds,
        "serial_per_s": serial_per_s,
        "parallel_per_s": parallel_per_s,
        "speedup": parallel_per_s / serial_per_s if serial_per_s > 0 else 0.0,
        # CPU seconds per wall-clock second: how many cores each run actually got. On a shared
        # machine the scheduler may give several processes no more than it gave one.
        "serial_cores_used": serial_cpu / serial_seconds,
        "parallel_cores_used": parallel_cpu / parallel_seconds,
        "num_workers": int(workers_used[0]) if workers_used else None,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }
    return serial, parallel, timing


def bench_source(
    name: str,
    source_factory: SourceFactory,
    seeds: range,
    workdir: Path,
    *,
    num_workers: int | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Time the serial loop and the parallel collector on the same seeds; return the result row.

    With ``repeats > 1`` the pair runs that many times, alternating, and the row reports the
    median of each figure (the load of a shared machine drifts; the median resists it); every
    run's figures are under ``runs``.

    Returns:
        ``source``, ``env_id``, ``episodes`` (stored), ``seeds_tried``, ``failures``,
        ``serial_seconds``, ``parallel_seconds``, ``serial_per_s``, ``parallel_per_s``,
        ``speedup``, ``expert_success_rate``, ``num_workers``, ``identical_output``, the cores
        each run actually got (CPU seconds per second), and the load average before and after.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    probe = source_factory()  # imports the simulator here, before either clock starts
    del probe
    runs: list[dict[str, Any]] = []
    hashes: set[tuple[str, tuple[tuple[int, str], ...]]] = set()
    serial: DatasetInfo | None = None
    for _ in range(repeats):
        serial, parallel, timing = _timed_pair(name, source_factory, seeds, workdir, num_workers)
        runs.append(timing)
        for info in (serial, parallel):
            hashes.add((info.hash, tuple(sorted(info.failures.items()))))
    assert serial is not None
    row: dict[str, Any] = {
        "source": name,
        "env_id": serial.env_id,
        "demonstrator": serial.demonstrator,
        "episodes": serial.num_episodes,
        "seeds_tried": len(seeds),
        "steps": serial.num_steps,
        "failures": len(serial.failures),
        "failed_seeds": sorted(serial.failures),
        "expert_success_rate": serial.success_rate,
        "identical_output": len(hashes) == 1,
        "dataset_hash": serial.hash,
        "repeats": repeats,
        "num_workers": runs[0]["num_workers"],
        "load_average_before": runs[0]["load_average_before"],
        "load_average_after": runs[-1]["load_average_after"],
    }
    for key in (
        "serial_seconds",
        "parallel_seconds",
        "serial_per_s",
        "parallel_per_s",
        "speedup",
        "serial_cores_used",
        "parallel_cores_used",
    ):
        row[key] = statistics.median(run[key] for run in runs)
    row["runs"] = runs
    return row


def _sources(cfg: DemosBenchConfig) -> list[tuple[str, Callable[[], Any]]]:
    sources: list[tuple[str, Callable[[], Any]]] = []
    if cfg.babyai_level is not None:
        from skillbank.envs.babyai import BabyAIDemoSource

        probe = BabyAIDemoSource(cfg.babyai_level)  # checks the name (and the extra) up front
        sources.append((probe.env_id, functools.partial(BabyAIDemoSource, cfg.babyai_level)))
    if cfg.metaworld_task is not None:
        from skillbank.envs.metaworld_source import MetaWorldDemoSource

        probe_mw = MetaWorldDemoSource(cfg.metaworld_task)
        sources.append(
            (probe_mw.env_id, functools.partial(MetaWorldDemoSource, cfg.metaworld_task))
        )
    return sources


def run_demos_bench(
    cfg: DemosBenchConfig, *, command: str = "", observer: Observer | None = None
) -> dict[str, Any]:
    """Run the benchmark for every configured source; return the JSON report.

    Args:
        cfg: What to run.
        command: The command line, recorded in the report.
        observer: Receives a ``bench.demos.source`` event per finished source.

    Returns:
        ``{"benchmark", "command", "machine", "versions", "seeds", "num_workers", "results"}``,
        one result row per source (see :func:`bench_source`).

    Raises:
        MissingExtraError: A configured simulator is not installed.
        EnvironmentNotFoundError: Unknown level or task.
    """
    observe = observer or NullObserver()
    sources = _sources(cfg)
    seeds = range(cfg.seed, cfg.seed + cfg.num_seeds)
    workdir = cfg.workdir
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="skillbank-bench-demos-")
        workdir = Path(tmp)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for name, factory in sources:
            row = bench_source(
                name.replace("/", "-"),
                factory,
                seeds,
                workdir,
                num_workers=cfg.num_workers,
                repeats=cfg.repeats,
            )
            row["source"] = name
            results.append(row)
            observe(
                Event(
                    "bench.demos.source",
                    values={k: float(row[k]) for k in ("serial_per_s", "parallel_per_s")},
                    info={"source": name},
                )
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "demos",
        "command": command,
        "machine": machine_info(),
        "versions": package_versions("minigrid", "metaworld", "mujoco"),
        "seeds": {"first": cfg.seed, "count": cfg.num_seeds},
        "num_workers": cfg.num_workers,
        "repeats": cfg.repeats,
        "results": results,
    }
