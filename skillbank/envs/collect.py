"""Parallel, resumable demonstration collection: local worker processes or a Ray cluster.

One code path serves every backend. Seeds are cut into chunks; a *worker pool* maps "demonstrate
these seeds" over the chunks on workers that each build their demonstrator once; results come back
in any order and are written in seed order, so the dataset is byte-identical whatever the number
of workers or the backend:

- ``num_workers=1``: in this process (no pool; what a plain loop does);
- default: local worker processes (``concurrent.futures`` with ``forkserver``, ``spawn`` where
  that is missing), one per core;
- ``ray_address=...``: Ray actors on a cluster (``"local"`` starts Ray on this machine; ``"auto"``
  joins the running cluster, or starts a local one; else the cluster's address). Ray is an extra.

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
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from skillbank.envs.dataset import DatasetInfo, DatasetWriter
from skillbank.errors import DatasetError, EnvironmentNotFoundError, MissingExtraError
from skillbank.events import Event, NullObserver, Observer
from skillbank.interfaces import DemoSource
from skillbank.types import Episode

__all__ = [
    "AttemptingDemoSource",
    "SeedOutcome",
    "SourceFactory",
    "collect",
    "default_num_workers",
    "demo_source_factory",
    "demonstrate_seeds",
]

logger = logging.getLogger(__name__)

SourceFactory = Callable[[], DemoSource]
"""Builds a demonstrator; must be picklable (a class, or ``functools.partial`` of one) to reach
worker processes."""


@runtime_checkable
class AttemptingDemoSource(DemoSource, Protocol):
    """A demonstrator that names itself and says why a seed failed (every skillbank source)."""

    @property
    def demonstrator(self) -> str:
        """Who produces the episodes, e.g. ``"babyai-bot"``."""
        ...

    def attempt(self, seed: int) -> Episode | str:
        """Return the episode for ``seed``, or a one-line reason there is none."""
        ...


@dataclass(frozen=True, slots=True)
class SeedOutcome:
    """What one seed gave.

    Attributes:
        seed: The environment seed.
        episode: The episode, or ``None`` if the demonstrator failed.
        reason: Why there is no episode ("" when there is one).
        seconds: Wall-clock time spent on the seed in the worker.
        cpu_seconds: CPU time the worker spent on it (below ``seconds`` when the machine is
            shared: the gap is time the worker waited for a core).
    """

    seed: int
    episode: Episode | None
    reason: str
    seconds: float
    cpu_seconds: float = 0.0

    def __post_init__(self) -> None:
        if (self.episode is None) == (not self.reason):
            raise ValueError("SeedOutcome needs exactly one of episode and reason")
        if self.episode is not None and self.episode.seed != self.seed:
            raise ValueError(f"SeedOutcome.episode is of seed {self.episode.seed}, not {self.seed}")


def demonstrate_seeds(source: DemoSource, seeds: Iterable[int]) -> list[SeedOutcome]:
    """Run ``source`` on each seed, in order (what every worker does with its chunk)."""
    outcomes = []
    for seed in seeds:
        start, cpu_start = time.perf_counter(), time.process_time()
        if isinstance(source, AttemptingDemoSource):
            result: Episode | str = source.attempt(seed)
        else:
            result = source.demonstrate(seed) or "demonstrator returned no episode"
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if isinstance(result, Episode):
            outcomes.append(SeedOutcome(seed, result, "", seconds, cpu))
        else:
            outcomes.append(SeedOutcome(seed, None, result, seconds, cpu))
    return outcomes


def default_num_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- worker pools: map seed chunks over workers that each hold one demonstrator ------------------


class _WorkerPool(Protocol):
    num_workers: int

    def submit(self, seeds: tuple[int, ...]) -> None:
        """Queue a chunk of seeds."""
        ...

    def next_done(self) -> list[SeedOutcome]:
        """Block until some queued chunk is done; return its outcomes."""
        ...

    def close(self) -> None:
        """Stop the workers, dropping queued chunks."""
        ...


class _InlinePool:
    """Runs chunks in this process, one after the other."""

    def __init__(self, factory: SourceFactory) -> None:
        self.num_workers = 1
        self._source = factory()
        self._queue: collections.deque[tuple[int, ...]] = collections.deque()

    def submit(self, seeds: tuple[int, ...]) -> None:
        self._queue.append(seeds)

    def next_done(self) -> list[SeedOutcome]:
        return demonstrate_seeds(self._source, self._queue.popleft())

    def close(self) -> None:
        self._queue.clear()


_WORKER_SOURCE: DemoSource | None = None  # the demonstrator of this worker process


def _init_worker(factory: SourceFactory) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = factory()


def _worker_chunk(seeds: tuple[int, ...]) -> list[SeedOutcome]:
    assert _WORKER_SOURCE is not None, "worker process was not initialised"
    return demonstrate_seeds(_WORKER_SOURCE, seeds)


def _worker_died(exc: BrokenProcessPool) -> DatasetError:
    return DatasetError(
        f"a collection worker process died ({exc}); what was collected is kept",
        hint="it was killed or ran out of memory; run the same command again to resume",
    )


class _ProcessPool:
    """Local worker processes, each building its demonstrator once (pool initializer)."""

    def __init__(self, factory: SourceFactory, num_workers: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self.num_workers = num_workers
        self._executor = futures.ProcessPoolExecutor(
            max_workers=num_workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(factory,),
        )
        self._pending: set[futures.Future[list[SeedOutcome]]] = set()

    def submit(self, seeds: tuple[int, ...]) -> None:
        try:
            self._pending.add(self._executor.submit(_worker_chunk, seeds))
        except BrokenProcessPool as exc:
            raise _worker_died(exc) from exc

    def next_done(self) -> list[SeedOutcome]:
        done, _ = futures.wait(self._pending, return_when=futures.FIRST_COMPLETED)
        future = next(iter(done))  # any one: outcomes are put back in seed order
        self._pending.discard(future)
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise _worker_died(exc) from exc

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()


class _RayPool:
    """Ray actors, each building its demonstrator once; chunks go to whichever actor is idle."""

    def __init__(self, factory: SourceFactory, num_workers: int | None, address: str) -> None:
        try:
            import ray
        except ImportError as exc:
            raise MissingExtraError(
                "collecting on Ray needs ray, which is not installed",
                hint="pip install 'skillbank[ray]'",
            ) from exc
        self._ray: Any = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            if address == "local":
                ray.init(num_cpus=num_workers, **kwargs)
            elif address == "auto":
                try:
                    ray.init(address="auto", **kwargs)
                except ConnectionError:
                    ray.init(num_cpus=num_workers, **kwargs)
            else:
                ray.init(address=address, **kwargs)
            self._started = True
        if num_workers is None:
            num_workers = max(1, int(self._ray.cluster_resources().get("CPU", 1)))
        self.num_workers = num_workers
        actor_class = ray.remote(num_cpus=1)(_RayWorker)
        self._actors: list[Any] = [actor_class.remote(factory) for _ in range(num_workers)]
        self._idle: collections.deque[Any] = collections.deque(self._actors)
        self._queue: collections.deque[tuple[int, ...]] = collections.deque()
        self._running: dict[Any, Any] = {}  # object ref -> actor

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            actor = self._idle.popleft()
            self._running[actor.run.remote(self._queue.popleft())] = actor

    def submit(self, seeds: tuple[int, ...]) -> None:
        self._queue.append(seeds)
        self._dispatch()

    def next_done(self) -> list[SeedOutcome]:
        (ref,), _ = self._ray.wait(list(self._running), num_returns=1)
        self._idle.append(self._running.pop(ref))
        self._dispatch()
        outcomes: list[SeedOutcome] = self._ray.get(ref)
        return outcomes

    def close(self) -> None:
        self._queue.clear()
        for actor in self._actors:
            self._ray.kill(actor)
        self._running.clear()
        if self._started:
            self._ray.shutdown()


class _RayWorker:
    """The body of a Ray actor: one demonstrator, many chunks."""

    def __init__(self, factory: SourceFactory) -> None:
        self._source = factory()

    def run(self, seeds: tuple[int, ...]) -> list[SeedOutcome]:
        return demonstrate_seeds(self._source, seeds)


def _open_pool(
    factory: SourceFactory, num_workers: int | None, ray_address: str | None
) -> _WorkerPool:
    if ray_address is not None:
        return _RayPool(factory, num_workers, ray_address)
    workers = default_num_workers() if num_workers is None else num_workers
    if workers == 1:
        return _InlinePool(factory)
    return _ProcessPool(factory, workers)


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
    writer = DatasetWriter(out_dir, env_id=probe.env_id, demonstrator=demonstrator, meta=meta)
    del probe
    _remove_dead_temporaries(writer.root)

    if not isinstance(seeds, range | list | tuple):
        seeds = iter(seeds)
    expected = num_episodes if num_episodes is not None else _len_or_none(seeds)
    started = time.perf_counter()
    pool = _open_pool(source_factory, num_workers, ray_address)
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
    pool: _WorkerPool,
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


def demo_source_factory(env_id: str) -> SourceFactory:
    """The picklable factory of the default demonstrator of ``env_id``.

    ``babyai/<Level>`` -> the BabyAI bot, ``metaworld/<task>`` -> the scripted policy,
    ``toy/<task>`` -> the toy world's scripted expert; a plain Gymnasium id has no default
    demonstrator (wrap it in :class:`~skillbank.envs.gym_source.GymDemoSource`).

    Raises:
        EnvironmentNotFoundError: Unknown id, or one without a default demonstrator.
        MissingExtraError: The id's simulator is not installed.
    """
    from skillbank.envs.registry import resolve_env_id

    spec = resolve_env_id(env_id)
    if spec.family == "babyai":
        from skillbank.envs.babyai import BabyAIDemoSource

        return functools.partial(BabyAIDemoSource, spec.name)
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
