"""A bounded replay of earlier segments, so the controller never forgets earlier tasks.

Every :meth:`~skillbank.agent.core.ProceduralMemoryAgent.learn` call trains the controller (and
its argument head) on this call's segments plus the replay of earlier calls' segments, each with
the id of the skill it was assigned to; afterwards the union is subsampled (seeded) back to at
most ``max_steps`` steps and stored in the memory as a ``component`` record
(``arch_id = "segment-replay-v1"``: features as float16, so a memory stays small), so a learn in
a fresh process remembers as well.

Example:
    >>> replay = SegmentReplay.from_segments(segments, assignment, skill_ids)  # doctest: +SKIP
    >>> data, labels = replay.merged_with(segments, assignment, skill_ids)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.learning.segment_set import SegmentSet

__all__ = ["REPLAY_ARCH", "SegmentReplay"]

REPLAY_ARCH = "segment-replay-v1"


@dataclass(frozen=True, slots=True)
class SegmentReplay:
    """Segments kept from earlier learning, each with its skill id.

    Attributes:
        features: Per segment, (T+1, O) float32 features (its steps, then the one after its end).
        actions: Per segment, (T,) int64 ids or (T, A) float32 values.
        skill_ids: Per segment, the id of its skill.
    """

    features: tuple[npt.NDArray[np.float32], ...]
    actions: tuple[npt.NDArray[np.generic], ...]
    skill_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not len(self.features) == len(self.actions) == len(self.skill_ids):
            raise ValueError("SegmentReplay: one features, actions and skill id per segment")
        for f, a in zip(self.features, self.actions, strict=True):
            if len(f) != len(a) + 1 or not len(a):
                raise ValueError("SegmentReplay: features need one row more than actions (T>=1)")

    @classmethod
    def empty(cls) -> SegmentReplay:
        """No segments."""
        return cls((), (), ())

    @property
    def num_segments(self) -> int:
        """N, segments kept."""
        return len(self.skill_ids)

    @property
    def num_steps(self) -> int:
        """Steps (actions) kept in all."""
        return sum(len(a) for a in self.actions)

    @classmethod
    def from_segments(
        cls, segments: SegmentSet, assignment: Sequence[int], skill_ids: Sequence[str]
    ) -> SegmentReplay:
        """Copy each segment (with the observation after it) and the id of its skill."""
        feats, acts, ids = [], [], []
        for (e, a, b), k in zip(segments.spans, assignment, strict=True):
            if k < 0:
                continue
            feats.append(segments.features[e][a : b + 1].astype(np.float32))
            acts.append(segments.actions[e][a:b])
            ids.append(skill_ids[k])
        return cls(tuple(feats), tuple(acts), tuple(ids))

    def union(self, other: SegmentReplay) -> SegmentReplay:
        """Both replays' segments, this one's first."""
        return SegmentReplay(
            self.features + other.features,
            self.actions + other.actions,
            self.skill_ids + other.skill_ids,
        )

    def bounded(self, max_steps: int, seed: int) -> SegmentReplay:
        """A seeded random subset of whole segments holding at most ``max_steps`` steps."""
        if self.num_steps <= max_steps:
            return self
        order = np.random.default_rng(seed).permutation(self.num_segments)
        lengths = np.array([len(a) for a in self.actions])[order]
        keep = np.sort(order[np.cumsum(lengths) <= max_steps])
        return SegmentReplay(
            tuple(self.features[i] for i in keep),
            tuple(self.actions[i] for i in keep),
            tuple(self.skill_ids[i] for i in keep),
        )

    def merged_with(
        self, segments: SegmentSet, assignment: Sequence[int], skill_ids: Sequence[str]
    ) -> tuple[SegmentSet, npt.NDArray[np.int64]]:
        """``segments`` plus the replayed segments whose skill is in ``skill_ids``.

        Returns:
            The union as one :class:`SegmentSet` and each segment's skill index (into
            ``skill_ids``; ``assignment`` for ``segments``).
        """
        index = {s: i for i, s in enumerate(skill_ids)}
        keep = [i for i, s in enumerate(self.skill_ids) if s in index]
        base = len(segments.features)
        spans = [(base + j, 0, len(self.actions[i])) for j, i in enumerate(keep)]
        merged = SegmentSet(
            segments.features + tuple(self.features[i] for i in keep),
            segments.actions + tuple(self.actions[i] for i in keep),
            segments.spans + tuple(spans),
            segments.grids,
        )
        labels = np.concatenate(
            [np.asarray(assignment, np.int64), [index[self.skill_ids[i]] for i in keep]]
        ).astype(np.int64)
        return merged, labels

    # --- storage as a component record ------------------------------------------------------

    def to_record(self, obs_dim: int) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(config, weights) of a ``segment-replay-v1`` record (features stored as float16)."""
        lengths = np.array([len(a) for a in self.actions], np.int64)
        sample = self.actions[0] if self.actions else np.zeros(0, np.int64)
        discrete = sample.dtype.kind in "biu"
        width = 1 if discrete else int(np.prod(sample.shape[1:]))
        unique = sorted(set(self.skill_ids))
        config = {
            "obs_dim": obs_dim,
            "num_segments": len(lengths),
            "num_steps": int(lengths.sum()),
            "action_kind": "discrete" if discrete else "continuous",
            "action_size": width,
            "skill_ids": unique,
        }
        rows = sum(len(f) for f in self.features)
        feats = np.concatenate(self.features) if rows else np.zeros((0, obs_dim), np.float32)
        acts = np.concatenate(self.actions) if self.actions else np.zeros(0, np.int64)
        position = {s: i for i, s in enumerate(unique)}
        weights = {
            "features": feats.astype(np.float16),
            "actions": acts.astype(np.int64) if discrete else acts.astype(np.float32),
            "lengths": lengths,
            "skills": np.array([position[s] for s in self.skill_ids], np.int64),
        }
        return config, weights

    @classmethod
    def from_record(
        cls, config: Mapping[str, Any], weights: Mapping[str, npt.NDArray[Any]]
    ) -> SegmentReplay:
        """Rebuild from :meth:`to_record` output."""
        lengths = np.asarray(weights["lengths"], np.int64)
        feats = np.asarray(weights["features"]).astype(np.float32)
        acts = np.asarray(weights["actions"])
        names = [str(s) for s in config["skill_ids"]]
        row_ends = np.cumsum(lengths + 1)
        step_ends = np.cumsum(lengths)
        features = tuple(np.split(feats, row_ends[:-1])) if len(lengths) else ()
        actions = tuple(np.split(acts, step_ends[:-1])) if len(lengths) else ()
        ids = tuple(names[int(i)] for i in np.asarray(weights["skills"]))
        return cls(features, actions, ids)
