"""Featurised demonstrations cut into segments: the data every training loop here reads.

Example:
    >>> data = SegmentSet.build(episodes, boundaries, featurizer)  # doctest: +SKIP
    >>> data.num_segments  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.errors import TrainingError
from skillbank.interfaces import iter_segments
from skillbank.learning.features import FeatureSpec, ObservationFeaturizer
from skillbank.nn.grid_trunk import GridSlice, TokenSlice
from skillbank.types import HISTORY_ENTRIES, Episode

__all__ = ["SegmentSet", "grid_slices", "history_spans", "token_slices"]


def _placed(featurizer: ObservationFeaturizer) -> Iterator[tuple[int, FeatureSpec]]:
    """Every entry of ``featurizer`` with the offset of its first feature."""
    offsets = itertools.accumulate((spec.dim for spec in featurizer.specs), initial=0)
    return zip(offsets, featurizer.specs, strict=False)


def grid_slices(featurizer: ObservationFeaturizer) -> tuple[GridSlice, ...]:
    """Where the grids lie in ``featurizer``'s features: every one-hot or binary entry of per-step
    shape (..., H, W, C) with at least 3 dims is a grid of (prod(...) * H) x W cells, each with
    ``sum(cardinalities)`` features (one-hot; its groups known) or C (binary planes) (the layout
    :meth:`ObservationFeaturizer.transform` writes).
    """
    grids: list[GridSlice] = []
    for offset, spec in _placed(featurizer):
        if spec.kind in ("onehot", "binary") and len(spec.shape) >= 3:
            height = int(np.prod(spec.shape[:-2]))
            if spec.kind == "onehot":
                cards = tuple(spec.cardinalities)
                grids.append(GridSlice(offset, height, spec.shape[-2], sum(cards), groups=cards))
            else:
                grids.append(GridSlice(offset, height, spec.shape[-2], spec.shape[-1]))
    return tuple(grids)


def history_spans(featurizer: ObservationFeaturizer) -> tuple[tuple[int, int], ...]:
    """The [start, stop) feature ranges of the history entries
    (:data:`~skillbank.types.HISTORY_ENTRIES`, e.g. an explored map) in ``featurizer``'s
    features."""
    return tuple(
        (offset, offset + spec.dim)
        for offset, spec in _placed(featurizer)
        if spec.name in HISTORY_ENTRIES
    )


def token_slices(featurizer: ObservationFeaturizer) -> tuple[TokenSlice, ...]:
    """Where the token sequences lie in ``featurizer``'s features: every ``"tokens"`` entry,
    laid out as a bag of V ids then P one-hot positions (see
    :meth:`ObservationFeaturizer.transform`)."""
    return tuple(
        TokenSlice(offset, *spec.cardinalities)
        for offset, spec in _placed(featurizer)
        if spec.kind == "tokens"
    )


@dataclass(frozen=True, slots=True)
class SegmentSet:
    """Segments of featurised episodes.

    Attributes:
        features: Per episode, (T+1, O) observation features, float32 or, where they are
            small counts, uint8 (:attr:`ObservationFeaturizer.storage_dtype`, a quarter of the
            memory). The accessors below give float32 unless asked for ``compact`` rows.
        actions: Per episode, (T,) int64 action ids or (T, A) float32 action values.
        spans: Per segment, (episode index, start step, stop step), stop exclusive.
        grids: Where grid-shaped entries lie in the features (see :func:`grid_slices`); empty
            for vector worlds. Modules with a grid trunk read it.
        tokens: Where token sequences lie in the features (see :func:`token_slices`); empty
            where there are none. A controller reading its mission reads them.
        history: Where history entries lie in the features (see :func:`history_spans`); skills
            skip them unless told to read them.
    """

    features: tuple[npt.NDArray[np.float32], ...]
    actions: tuple[npt.NDArray[np.generic], ...]
    spans: tuple[tuple[int, int, int], ...]
    grids: tuple[GridSlice, ...] = ()
    tokens: tuple[TokenSlice, ...] = ()
    history: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.features) != len(self.actions):
            raise ValueError("SegmentSet.features and .actions need one entry per episode")
        for e, start, stop in self.spans:
            if not (0 <= e < len(self.actions) and 0 <= start < stop <= len(self.actions[e])):
                raise ValueError(f"SegmentSet.spans entry {(e, start, stop)} is out of range")
        if self.grids and self.features:
            end, width = max(g.offset + g.size for g in self.grids), self.features[0].shape[1]
            if end > width:
                raise ValueError(f"SegmentSet.grids reach feature {end}, features have {width}")
        if self.tokens and self.features:
            end, width = max(t.end for t in self.tokens), self.features[0].shape[1]
            if end > width:
                raise ValueError(f"SegmentSet.tokens reach feature {end}, features have {width}")

    @classmethod
    def build(
        cls,
        episodes: Sequence[Episode],
        boundaries: Sequence[Sequence[int]],
        featurizer: ObservationFeaturizer,
    ) -> SegmentSet:
        """Featurise ``episodes`` and cut them at ``boundaries`` (state-only episodes skipped).

        Raises:
            TrainingError: If no episode has actions.
        """
        features: list[npt.NDArray[np.float32]] = []
        actions: list[npt.NDArray[np.generic]] = []
        spans: list[tuple[int, int, int]] = []
        for episode, starts in zip(episodes, boundaries, strict=True):
            if episode.actions is None or episode.num_steps == 0:
                continue
            index = len(features)
            features.append(
                featurizer.episode_features(episode).astype(featurizer.storage_dtype, copy=False)
            )
            raw = np.asarray(episode.actions)
            actions.append(
                raw.astype(np.int64) if raw.dtype.kind in "biu" else raw.astype(np.float32)
            )
            spans += [(index, a, b) for a, b in iter_segments(starts, episode.num_steps)]
        if not spans:
            raise TrainingError(
                "no demonstration with actions to learn skills from",
                hint="pass datasets whose episodes record actions",
            )
        return cls(
            tuple(features),
            tuple(actions),
            tuple(spans),
            grid_slices(featurizer),
            token_slices(featurizer),
            history_spans(featurizer),
        )

    @property
    def num_segments(self) -> int:
        """N, the number of segments."""
        return len(self.spans)

    @property
    def obs_dim(self) -> int:
        """O, observation features per step."""
        return int(self.features[0].shape[1])

    def subset(self, indices: Sequence[int]) -> SegmentSet:
        """The segments at ``indices`` (episodes are shared, not copied)."""
        return SegmentSet(
            self.features,
            self.actions,
            tuple(self.spans[i] for i in indices),
            self.grids,
            self.tokens,
            self.history,
        )

    def padded(
        self, indices: Sequence[int], max_length: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.generic], npt.NDArray[np.float32]]:
        """Segments at ``indices``, cropped to ``max_length`` and padded.

        Returns:
            features (B, T, O), actions (B, T) or (B, T, A), mask (B, T).
        """
        spans = self._spans(indices)
        horizon = min(max_length, max(stop - start for _, start, stop in spans))
        sample = self.actions[spans[0][0]]
        feats = np.zeros((len(spans), horizon, self.obs_dim), np.float32)
        acts = np.zeros((len(spans), horizon, *sample.shape[1:]), sample.dtype)
        mask = np.zeros((len(spans), horizon), np.float32)
        for row, (e, start, stop) in enumerate(spans):
            stop = min(stop, start + horizon)
            feats[row, : stop - start] = self.features[e][start:stop]
            acts[row, : stop - start] = self.actions[e][start:stop]
            mask[row, : stop - start] = 1.0
        return feats, acts, mask

    def steps(
        self, indices: Sequence[int], *, compact: bool = False
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.generic], npt.NDArray[np.int64]]:
        """Every step of the segments at ``indices``, flattened.

        Args:
            indices: The segments.
            compact: Features in their stored dtype (see :attr:`features`) rather than float32:
                for callers that turn them to float a batch at a time.

        Returns:
            features (S, O), actions (S,) or (S, A), and the position of each step in the list
            ``indices`` (S,).
        """
        feats = _as_float(
            np.concatenate([self.features[e][a:b] for e, a, b in self._spans(indices)]), compact
        )
        return feats, self.step_actions(indices), self._owners(indices)

    def step_actions(self, indices: Sequence[int]) -> npt.NDArray[np.generic]:
        """The actions of every step of the segments at ``indices``, flattened as in
        :meth:`steps`: (S,) or (S, A)."""
        return np.concatenate([self.actions[e][a:b] for e, a, b in self._spans(indices)])

    def _spans(self, indices: Sequence[int]) -> list[tuple[int, int, int]]:
        return [self.spans[i] for i in indices]

    def _owners(self, indices: Sequence[int]) -> npt.NDArray[np.int64]:
        lengths = [b - a for _, a, b in self._spans(indices)]
        return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)

    def durations(
        self, indices: Sequence[int]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Actions taken before each step of the segments at ``indices`` (S,), in the order of
        :meth:`steps` (0 at a segment's first step), and each segment's length (N,): the
        actions taken when its end observation is seen."""
        lengths = np.array([self.spans[i][2] - self.spans[i][1] for i in indices], np.int64)
        within = [np.arange(n, dtype=np.int64) for n in lengths]
        return (np.concatenate(within) if within else np.zeros(0, np.int64)), lengths

    def end_features(self, indices: Sequence[int], *, compact: bool = False) -> npt.NDArray[Any]:
        """The observation right after each segment ends (where its skill should stop): (N, O)
        (``compact``: as stored, see :meth:`steps`)."""
        return _as_float(
            np.stack([self.features[e][stop] for e, _, stop in self._spans(indices)]), compact
        )

    def start_features(
        self, indices: Sequence[int] | None = None, *, compact: bool = False
    ) -> npt.NDArray[Any]:
        """The observation at each segment's first step (its decision point): (N, O), every
        segment when ``indices`` is ``None`` (``compact``: as stored, see :meth:`steps`)."""
        spans = self.spans if indices is None else self._spans(indices)
        return _as_float(np.stack([self.features[e][start] for e, start, _ in spans]), compact)


def _as_float(rows: npt.NDArray[Any], compact: bool) -> npt.NDArray[Any]:
    """``rows`` as they are (``compact``) or as float32."""
    return rows if compact else rows.astype(np.float32, copy=False)
