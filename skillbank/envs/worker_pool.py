"""Worker pools: map "demonstrate these seeds" over workers that each hold one demonstrator.

The one abstraction under :func:`skillbank.envs.collect.collect`. Every backend takes chunks of
seeds and hands back their outcomes in whatever order the workers finish:

- :class:`WorkerPool` from ``open_worker_pool(factory, 1, None)``: in this process, in order;
- ``num_workers > 1``: local processes (``concurrent.futures`` with ``forkserver``, or ``spawn``
  where that is missing; never ``fork``, which is unsafe under threads), each building its
  demonstrator once in the pool's initializer;
- ``ray_address``: Ray actors, each holding one demonstrator (Ray is an extra, imported here only).

Outcomes cross process boundaries by the executors' own pickling (in memory, never stored).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import multiprocessing
import os
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from skillbank.errors import DatasetError, MissingExtraError
from skillbank.interfaces import DemoSource
from skillbank.types import Episode

__all__ = [
    "AttemptingDemoSource",
    "SeedOutcome",
    "SourceFactory",
    "WorkerPool",
    "default_num_workers",
    "demonstrate_seeds",
    "open_worker_pool",
]

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


# --- pools ---------------------------------------------------------------------------------------


class WorkerPool(Protocol):
    """Maps seed chunks over workers; outcomes come back chunk by chunk, in any order."""

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


def _factory_module(factory: SourceFactory) -> str:
    """The module workers import to rebuild ``factory``; ``"__main__"`` if any part lives there."""
    func = factory.func if isinstance(factory, functools.partial) else factory
    parts: list[Any] = [factory, func]
    if isinstance(factory, functools.partial):
        parts += [*factory.args, *factory.keywords.values()]
    if any(getattr(part, "__module__", None) == "__main__" for part in parts):
        return "__main__"
    module = getattr(func, "__module__", None)
    return module if isinstance(module, str) else "__main__"


@contextlib.contextmanager
def _parent_main_hidden() -> Iterator[None]:
    """Show worker processes being started a bare ``__main__``, so they do not import ours.

    A new worker (spawn, or forked from a fork server) first re-imports the parent's ``__main__``
    script. Under the ``skillbank`` command that is the whole CLI, torch included: seconds per
    worker for nothing, when the demonstrator's factory lives in an importable module.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _ProcessPool:
    """Local worker processes, each building its demonstrator once (pool initializer)."""

    def __init__(self, factory: SourceFactory, num_workers: int) -> None:
        self.num_workers = num_workers
        module = _factory_module(factory)
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            # The fork server imports these once; every worker is forked with them loaded.
            context.set_forkserver_preload(["__main__", __name__, module])
        # Workers start during the first submits; a factory defined in __main__ needs __main__.
        self._hidden_main_starts = 0 if module == "__main__" else num_workers
        self._executor = futures.ProcessPoolExecutor(
            max_workers=num_workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(factory,),
        )
        self._pending: set[futures.Future[list[SeedOutcome]]] = set()

    def submit(self, seeds: tuple[int, ...]) -> None:
        hide = self._hidden_main_starts > 0
        self._hidden_main_starts -= 1
        try:
            with _parent_main_hidden() if hide else contextlib.nullcontext():
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


def open_worker_pool(
    factory: SourceFactory, num_workers: int | None = None, ray_address: str | None = None
) -> WorkerPool:
    """Start workers that each build a demonstrator with ``factory``.

    Args:
        factory: Builds the demonstrator; picklable for processes and Ray.
        num_workers: Workers (default: every core here, or every CPU of the Ray cluster); 1 runs
            in this process.
        ray_address: ``"local"``, ``"auto"`` or a cluster address to run on Ray.

    Raises:
        MissingExtraError: ``ray_address`` given and ray is not installed.
    """
    if ray_address is not None:
        return _RayPool(factory, num_workers, ray_address)
    workers = default_num_workers() if num_workers is None else num_workers
    if workers == 1:
        return _InlinePool(factory)
    return _ProcessPool(factory, workers)
