"""Narrow Protocols through which skillbank is extended. Strategies return results; they never
mutate their caller's state."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from skillbank.types import Episode

__all__ = ["BoundaryProposer", "DemoSource", "Segmenter", "VectorIndex", "iter_segments"]


@runtime_checkable
class VectorIndex(Protocol):
    """An approximate nearest-neighbour index over skill keys: a rebuildable cache, never the truth.

    Rows are addressed by integer labels that the skill memory assigns (its row ids).
    """

    @property
    def dim(self) -> int:
        """Z, the key dimension."""
        ...

    def __len__(self) -> int: ...

    def add(self, labels: npt.NDArray[np.int64], keys: npt.NDArray[np.float32]) -> None:
        """Add keys (N, Z) under labels (N,)."""
        ...

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Return labels (B, K) and inner-product scores (B, K) for queries (B, Z), best first.

        Missing neighbours (fewer than k rows) are labelled -1.
        """
        ...

    def save(self, path: str) -> None:
        """Write the index to ``path`` (atomically)."""
        ...


@runtime_checkable
class DemoSource(Protocol):
    """Anything that produces demonstrations of one task, one seed at a time."""

    @property
    def env_id(self) -> str:
        """Canonical id of the environment it demonstrates."""
        ...

    def demonstrate(self, seed: int) -> Episode | None:
        """Return the episode for ``seed``, or ``None`` if the demonstrator failed on it."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Cuts demonstrations into skill segments without reading their annotations."""

    def segment(self, episodes: Sequence[Episode]) -> list[tuple[int, ...]]:
        """Return, per episode, the strictly increasing start steps of its segments (first 0)."""
        ...


@runtime_checkable
class BoundaryProposer(Protocol):
    """Knowledge of one environment family that adds segment cuts a domain-agnostic segmenter
    cannot see (e.g. where a grid walker starts heading straight for its target).

    It reads only what the demonstrator's agent itself observed and did, never annotations.
    """

    def propose(self, episode: Episode, starts: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``starts`` (strictly increasing segment starts, first 0) plus new cuts."""
        ...


def iter_segments(boundaries: Sequence[int], num_steps: int) -> Iterator[tuple[int, int]]:
    """Yield (start, stop) step ranges from segment start steps.

    Example:
        >>> list(iter_segments((0, 3), 5))
        [(0, 3), (3, 5)]
    """
    starts = list(boundaries)
    yield from zip(starts, [*starts[1:], num_steps], strict=True)
