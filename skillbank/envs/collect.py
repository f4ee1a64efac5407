"""Parallel, resumable demonstration collection: local worker processes or a Ray cluster.

One code path serves every backend. Seeds are cut into chunks; a *worker pool* maps "demonstrate
these seeds" over the chunks on workers that each build their demonstrator once; results come back
in any order and are written in seed order, so the dataset is byte-identical whatever the number
of workers or the backend:

- ``num_workers=1``: in this process (what a plain loop does);
- default: local worker processes (``concurrent.futures`` with ``forkserver``, ``spawn`` where
  that is missing), one per core;
- ``ray_address=...``: Ray actors on a cluster (``"local"`` starts Ray on this machine; ``"auto"``
  joins the running cluster, or starts a local one; else the cluster's address). Ray is an extra.

The pools live in :mod:`skillbank.envs.worker_pool`.

Resuming: seeds whose episode file (or logged failure) is already in ``out_dir`` are skipped, so
an interrupted collection finished by the same call equals an uninterrupted one, byte for byte.
Seeds the demonstrator fails on are logged with their reason (``failures.jsonl``) and count
against the demonstrator's success rate.

Progress goes to the observer as :class:`~skillbank.events.Event` records: ``collect.start``,
one ``collect.seed`` per seed in seed order, and ``collect.end``. Nothing is printed.

Example:
    >>> from functools import partial
    >>> from skillbank.envs.babyai import BabyAIDemoSource
    >>> info = collect(  # doctest: +SKIP
    ...     partial(BabyAIDemoSource, "GoToLocal"), range(1000), "demos/gotolocal"
    ... )
    >>> info.num_episodes, info.success_rate  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from skillbank.envs.dataset import DatasetInfo, DatasetWriter
from skillbank.envs.worker_pool import SeedOutcome, SourceFactory, WorkerPool, open_worker_pool
from skillbank.errors import DatasetError, EnvironmentNotFoundError
from skillbank.events import Event, NullObserver, Observer

__all__ = ["collect", "demo_source_factory"]

logger = logging.getLogger(__name__)

# --- the collector -------------------------------------------------------------------------------


def _chunk_size(expected: int | None, num_workers: int) -> int:
    """Seeds per chunk: at least ~16 chunks per worker, at most 4 seeds.

    A chunk costs about a millisecond of inter-process traffic, an episode tens of milliseconds,
    so small chunks cost little; they keep the workers finishing together (the last chunk is the
    tail of the run) and an early stop at ``num_episodes`` wastes at most a few episodes.
    """
    if num_workers == 1 or expected is None:
        return 1 if num_workers == 1 else 4
    return max(1, min(4, math.ceil(expected / (num_workers * 16))))


def collect(
    source_factory: SourceFactory,
    seeds: Iterable[int],
    out_dir: Path | str,
    *,
    num_episodes: int | None = None,
    num_workers: int | None = None,
    ray_address: str | None = None,
    chunk_size: int | None = None,
    meta: dict[str, str] | None = None,
    observer: Observer | None = None,
) -> DatasetInfo:
    """Demonstrate every seed (or until ``num_episodes`` are stored) into the dataset ``out_dir``.

    Args:
        source_factory: Builds the demonstrator (called once per worker); picklable.
        seeds: Seeds in the order they are tried; may be endless when ``num_episodes`` is given.
        out_dir: Dataset directory; an existing dataset of the same source is resumed.
        num_episodes: Stop once this many episodes are stored (counting those already there);
            ``None``: try every seed.
        num_workers: Workers (default: every core, or every CPU of the Ray cluster); 1 runs in
            this process.
        ray_address: Run on Ray: ``"local"``, ``"auto"`` or a cluster address.
        chunk_size: Seeds per task sent to a worker (default: chosen from the work size).
        meta: String facts stored in the manifest; keep them free of times and worker counts so
            the dataset stays reproducible.
        observer: Receives ``collect.start`` / ``collect.seed`` / ``collect.end`` events.

    Returns:
        The dataset's :class:`~skillbank.envs.dataset.DatasetInfo`; its ``failures`` and
        ``success_rate`` are the demonstrator's own record.

    Raises:
        DatasetError: If ``seeds`` run out before ``num_episodes`` are stored (what was
            collected is kept), or ``out_dir`` holds another dataset.
        ValueError: Bad arguments.
    """
    if num_episodes is not None and num_episodes < 0:
        raise ValueError(f"num_episodes must be >= 0, got {num_episodes}")
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    observe: Observer = observer or NullObserver()

    probe = source_factory()  # names the dataset; cheap (environments are built lazily)
    demonstrator = getattr(probe, "demonstrator", None)
    if not isinstance(demonstrator, str) or not demonstrator:
        raise ValueError(f"{probe!r} has no `demonstrator` name to record in the dataset")
    env_id = probe.env_id
    del probe

    started = time.perf_counter()
    pool = open_worker_pool(source_factory, num_workers, ray_address)  # before any file is made
    try:
        writer = DatasetWriter(out_dir, env_id=env_id, demonstrator=demonstrator, meta=meta)
    except BaseException:
        pool.close()
        raise
    _remove_dead_temporaries(writer.root)
    if not isinstance(seeds, range | list | tuple):
        seeds = iter(seeds)
    expected = num_episodes if num_episodes is not None else _len_or_none(seeds)
    size = chunk_size or _chunk_size(expected, pool.num_workers)
    observe(
        Event(
            "collect.start",
            values={
                "num_workers": pool.num_workers,
                "chunk_size": size,
                **({"total": float(expected)} if expected is not None else {}),
            },
            info={"env_id": writer.env_id, "backend": type(pool).__name__.strip("_")},
        )
    )
    try:
        stored, failed, resumed, reached = _run(
            pool, writer, iter(seeds), size, num_episodes, observe
        )
    except BaseException:  # interrupted or broken: leave a readable dataset to resume from
        pool.close()
        try:
            writer.close()
        except Exception:
            logger.exception("could not write the manifest of %s", writer.root)
        raise
    pool.close()
    info = writer.close()
    seconds = time.perf_counter() - started
    new = stored - resumed
    observe(
        Event(
            "collect.end",
            values={
                "num_episodes": stored,
                "num_failures": failed,
                "num_resumed": resumed,
                "seconds": seconds,
                "episodes_per_s": new / seconds if seconds > 0 else 0.0,
                "success_rate": info.success_rate,
            },
            info={"env_id": writer.env_id, "out_dir": str(writer.root)},
        )
    )
    if num_episodes is not None and not reached:
        raise DatasetError(
            f"{writer.root}: only {stored} of {num_episodes} episodes after trying every seed "
            f"({failed} failed); what was collected is kept",
            hint="allow more seeds (--max-tries) and run the same command again to continue",
        )
    return info


def _remove_dead_temporaries(root: Path) -> None:
    """Delete the half-written files a killed writer left (``.<name>.<pid>.<thread>.tmp``).

    Only those of processes that no longer exist: another live writer's are left alone.
    """
    for path in root.rglob(".*.tmp"):
        fields = path.name.split(".")
        try:
            pid = int(fields[-3])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            logger.info("removing %s, left by the killed process %d", path, pid)
            path.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            continue


def _len_or_none(seeds: Iterable[int]) -> int | None:
    return len(seeds) if isinstance(seeds, range | list | tuple) else None


def _run(
    pool: WorkerPool,
    writer: DatasetWriter,
    seeds: Iterator[int],
    chunk_size: int,
    num_episodes: int | None,
    observe: Observer,
) -> tuple[int, int, int, bool]:
    """The collection loop: keep workers busy, write outcomes in seed order, stop at the target.

    Returns (episodes stored, failures, episodes found already stored, target reached).
    """
    # Seeds in the order they are committed; each waits here until its outcome is known. A seed
    # done by an earlier run is known at once: "stored" or "failed".
    order: collections.deque[int] = collections.deque()
    known: dict[int, SeedOutcome | str] = {}
    max_in_flight = pool.num_workers * 2
    in_flight = 0
    stored = failed = resumed = 0
    exhausted = False
    chunk: list[int] = []

    def target_reached() -> bool:
        return num_episodes is not None and stored >= num_episodes

    def commit() -> bool:
        """Write every outcome at the head of the order; True once the target is reached."""
        nonlocal stored, failed, resumed
        while order and order[0] in known and not target_reached():
            seed = order.popleft()
            outcome = known.pop(seed)
            values: dict[str, float] = {"seed": float(seed)}
            reason = ""
            if outcome == "stored":
                stored += 1
                resumed += 1
                values.update(success=1.0, resumed=1.0)
            elif outcome == "failed":
                failed += 1
                values.update(success=0.0, resumed=1.0)
            elif isinstance(outcome, SeedOutcome) and outcome.episode is not None:
                writer.write(outcome.episode)
                stored += 1
                values.update(
                    success=float(outcome.episode.success),
                    steps=float(outcome.episode.num_steps),
                    seconds=outcome.seconds,
                    cpu_seconds=outcome.cpu_seconds,
                )
            else:
                assert isinstance(outcome, SeedOutcome)
                writer.log_failure(seed, outcome.reason)
                failed += 1
                reason = outcome.reason
                values.update(success=0.0, seconds=outcome.seconds, cpu_seconds=outcome.cpu_seconds)
            values.update(stored=float(stored), failed=float(failed))
            observe(Event("collect.seed", values=values, info={"reason": reason}))
        return target_reached()

    if commit():
        return stored, failed, resumed, True
    while True:
        # --- fill: hand out chunks until the workers have enough queued ---
        while not exhausted and in_flight < max_in_flight:
            seed = next(seeds, None)
            if seed is None:
                exhausted = True
            else:
                order.append(seed)
                if writer.has(seed):
                    known[seed] = "stored"
                elif writer.has_failure(seed):
                    known[seed] = "failed"
                else:
                    chunk.append(seed)
                if commit():
                    return stored, failed, resumed, True
            if chunk and (exhausted or len(chunk) >= chunk_size):
                pool.submit(tuple(chunk))
                chunk = []
                in_flight += 1
        if in_flight == 0:
            return stored, failed, resumed, commit() or num_episodes is None
        # --- drain: one chunk back, then write what is now in order ---
        for outcome in pool.next_done():
            known[outcome.seed] = outcome
        in_flight -= 1
        if commit():
            return stored, failed, resumed, True


# --- demonstrators by environment id --------------------------------------------------------------


def demo_source_factory(env_id: str, *, map_radius: int | None = None) -> SourceFactory:
    """The picklable factory of the default demonstrator of ``env_id``.

    ``babyai/<Level>`` -> the BabyAI bot, ``metaworld/<task>`` -> the scripted policy,
    ``toy/<task>`` -> the toy world's scripted expert; a plain Gymnasium id has no default
    demonstrator (wrap it in :class:`~skillbank.envs.gym_source.GymDemoSource`).
    ``map_radius``: BabyAI episodes also record the agent's explored map
    (:mod:`skillbank.envs.grid_map`) of that radius.

    Raises:
        EnvironmentNotFoundError: Unknown id, or one without a default demonstrator.
        MissingExtraError: The id's simulator is not installed.
        ValueError: ``map_radius`` for an environment that is not a BabyAI level.
    """
    from skillbank.envs.registry import resolve_env_id

    spec = resolve_env_id(env_id)
    if map_radius is not None and spec.family != "babyai":
        raise ValueError(
            f"an explored map is recorded for BabyAI levels only, not {spec.env_id!r}; "
            "collect it without --map"
        )
    if spec.family == "babyai":
        from skillbank.envs.babyai import BabyAIDemoSource

        return functools.partial(BabyAIDemoSource, spec.name, map_radius=map_radius)
    if spec.family == "metaworld":
        from skillbank.envs.metaworld_source import MetaWorldDemoSource

        return functools.partial(MetaWorldDemoSource, spec.name)
    if spec.family == "toy":
        from skillbank.envs.toy import ToyDemonstrator

        return functools.partial(ToyDemonstrator, spec.name)
    raise EnvironmentNotFoundError(
        f"{spec.env_id!r} has no built-in demonstrator",
        hint="use babyai/<Level>, metaworld/<task>-v3 or toy/<task>, or wrap the environment "
        "and your demonstrator in skillbank.envs.gym_source.GymDemoSource and call collect()",
    )
