"""A bounded replay of earlier segments, so the controller never forgets earlier tasks.

Every :meth:`~skillbank.agent.core.ProceduralMemoryAgent.learn` call trains the controller (and
its argument head) on this call's segments plus the replay of earlier calls' segments, each with
the id of the skill it was assigned to; afterwards the union is subsampled (seeded, whole
segments) back to at most ``max_steps`` steps and stored in the memory as a ``component`` record,
so a learn in a fresh process remembers as well.

The record is ``segment-replay-v3``: read from the data, with no knowledge of the domain, each
feature column is stored by what it holds -- a column with one value throughout once, a column of
0/1 values bit-packed (``np.packbits``: one bit a value, exact), any other column as float16 --
plus the learn call each segment came from and its call history (the ids of the skills of the
earlier segments of its episode, so a controller that reads the call history learns from replayed
segments too; skill ids, not key rows, as rows move when skills are added). BabyAI's 2016 one-hot
features come to ~0.15 KB a step instead of ~4.7 KB in ``segment-replay-v1`` (all float16);
``-v1`` and ``-v2`` (no history: every segment reads as the first of its episode) still load.

Which segments stay (:meth:`SegmentReplay.bounded`): by default a uniform random subset, so an
early call's share shrinks as later calls bring more data. An equal share per learn call
(``policy="call"``) forgets less at a small bound but not at the default one; measured on the
small BabyAI curriculum (5 levels learned one by one, seeds 0-2), mean final success over the
levels: 2048 steps 0.440 (call), 0.431 (skill) vs 0.413 (uniform); 8192 steps 0.444 (call) vs
0.457 (uniform).

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

from skillbank.errors import MemoryCorruptionError
from skillbank.learning.controller_training import episode_call_prefixes
from skillbank.learning.segment_set import SegmentSet

__all__ = ["REPLAY_ARCH", "REPLAY_POLICIES", "SegmentReplay"]

REPLAY_ARCH = "segment-replay-v3"
REPLAY_POLICIES = ("uniform", "call", "skill")

_CONSTANT, _BINARY, _FLOAT = 0, 1, 2  # column kinds of a v2 record
_F16_MAX = float(np.finfo(np.float16).max)
_HINT = "the memory's replay record is damaged: run `skillbank verify --memory DIR`, or learn anew"


@dataclass(frozen=True, slots=True)
class SegmentReplay:
    """Segments kept from earlier learning, each with its skill id and learn call.

    Attributes:
        features: Per segment, (T+1, O) features (its steps, then the one after its end):
            float32, or uint8 as :class:`SegmentSet` holds grid-world features.
        actions: Per segment, (T,) int64 ids or (T, A) float32 values.
        skill_ids: Per segment, the id of its skill.
        calls: Per segment, the learn call it came from (0 first; :meth:`union` numbers on).
        histories: Per segment, the skill ids of the segments before it in its episode, oldest
            first; ``()`` (the default): none for every segment (unknown reads as none).
    """

    features: tuple[npt.NDArray[Any], ...]
    actions: tuple[npt.NDArray[np.generic], ...]
    skill_ids: tuple[str, ...]
    calls: tuple[int, ...]
    histories: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if not len(self.features) == len(self.actions) == len(self.skill_ids) == len(self.calls):
            raise ValueError("SegmentReplay: one features, actions, skill id and call per segment")
        if not self.histories and self.skill_ids:
            object.__setattr__(self, "histories", ((),) * len(self.skill_ids))
        if len(self.histories) != len(self.skill_ids):
            raise ValueError("SegmentReplay.histories: one call history per segment (or none)")
        for f, a in zip(self.features, self.actions, strict=True):
            if len(f) != len(a) + 1 or not len(a):
                raise ValueError("SegmentReplay: features need one row more than actions (T>=1)")
        if any(c < 0 for c in self.calls):
            raise ValueError("SegmentReplay.calls must be >= 0")

    @classmethod
    def empty(cls) -> SegmentReplay:
        """No segments."""
        return cls((), (), (), ())

    @property
    def num_segments(self) -> int:
        """N, segments kept."""
        return len(self.skill_ids)

    @property
    def num_steps(self) -> int:
        """Steps (actions) kept in all."""
        return sum(len(a) for a in self.actions)

    @property
    def num_calls(self) -> int:
        """Learn calls numbered so far (the highest call id + 1; 0 when empty)."""
        return max(self.calls, default=-1) + 1

    @classmethod
    def from_segments(
        cls, segments: SegmentSet, assignment: Sequence[int], skill_ids: Sequence[str]
    ) -> SegmentReplay:
        """Copy each segment (with the observation after it), the id of its skill (call 0) and
        the ids of the skills of the segments before it in its episode."""
        feats, acts, ids, histories = [], [], [], []
        prefixes = episode_call_prefixes(segments.spans, assignment)
        for (e, a, b), k, prefix in zip(segments.spans, assignment, prefixes, strict=True):
            if k < 0:
                continue
            feats.append(segments.features[e][a : b + 1].copy())  # as stored
            acts.append(segments.actions[e][a:b])
            ids.append(skill_ids[k])
            histories.append(tuple(skill_ids[j] for j in prefix))
        return cls(tuple(feats), tuple(acts), tuple(ids), (0,) * len(ids), tuple(histories))

    def union(self, other: SegmentReplay) -> SegmentReplay:
        """Both replays' segments, this one's first; ``other``'s calls numbered after this one's."""
        offset = self.num_calls
        return SegmentReplay(
            self.features + other.features,
            self.actions + other.actions,
            self.skill_ids + other.skill_ids,
            self.calls + tuple(offset + c for c in other.calls),
            self.histories + other.histories,
        )

    def _subset(self, keep: Sequence[int]) -> SegmentReplay:
        return SegmentReplay(
            tuple(self.features[i] for i in keep),
            tuple(self.actions[i] for i in keep),
            tuple(self.skill_ids[i] for i in keep),
            tuple(self.calls[i] for i in keep),
            tuple(self.histories[i] for i in keep),
        )

    def bounded(self, max_steps: int, seed: int, *, policy: str = "uniform") -> SegmentReplay:
        """A seeded random subset of whole segments holding at most ``max_steps`` steps.

        Args:
            max_steps: The bound on steps kept.
            seed: Seed of the subset.
            policy: ``"uniform"``: every segment equally likely, so each call's share shrinks
                as later calls bring more data; ``"call"``: an equal share of the bound per
                learn call (a call with less data leaves its unused share to the others);
                ``"skill"``: the same, per skill id.
        """
        if policy not in REPLAY_POLICIES:
            raise ValueError(f"policy must be one of {REPLAY_POLICIES}, got {policy!r}")
        if self.num_steps <= max_steps:
            return self
        lengths = np.array([len(a) for a in self.actions])
        if policy == "uniform":
            order = np.random.default_rng(seed).permutation(self.num_segments)
            keep = np.sort(order[np.cumsum(lengths[order]) <= max_steps])
            return self._subset(keep.tolist())
        groups = np.array(self.calls) if policy == "call" else np.array(self.skill_ids)
        names, group = np.unique(groups, return_inverse=True)  # sorted group names, (N,) index
        totals = np.bincount(group, weights=lengths, minlength=len(names))
        kept: list[int] = []
        left = max_steps
        # water-filling: smallest groups first, each up to an equal share of what is left
        for rank, g in enumerate(np.argsort(totals, kind="stable")):
            share = left // (len(names) - rank)
            members = np.flatnonzero(group == g)
            order = members[np.random.default_rng([seed, int(g)]).permutation(len(members))]
            fits = order[np.cumsum(lengths[order]) <= share]
            kept.extend(fits.tolist())
            left -= int(lengths[fits].sum())
        return self._subset(sorted(kept))

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
            segments.tokens,
            segments.history,
        )
        labels = np.concatenate(
            [np.asarray(assignment, np.int64), [index[self.skill_ids[i]] for i in keep]]
        ).astype(np.int64)
        return merged, labels

    def merged_histories(
        self, segments: SegmentSet, assignment: Sequence[int], skill_ids: Sequence[str]
    ) -> list[tuple[int, ...]]:
        """Per segment of :meth:`merged_with`'s union (same order), the skill rows called before
        it in its episode: from the spans for ``segments``, from the stored ids (mapped to rows
        of ``skill_ids``; ids not there are left out) for the replayed ones."""
        index = {s: i for i, s in enumerate(skill_ids)}
        own = episode_call_prefixes(segments.spans, assignment)
        replayed = [
            tuple(index[h] for h in self.histories[i] if h in index)
            for i, s in enumerate(self.skill_ids)
            if s in index
        ]
        return [*own, *replayed]

    # --- storage as a component record ------------------------------------------------------

    def to_record(self, obs_dim: int) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(config, weights) of a ``segment-replay-v3`` record.

        Each column of the (T+N, O) feature rows is stored by what it holds: one value
        throughout (``constants``, float32, exact), only 0 and 1 (``binary_bits``, packed 8 to
        a byte, exact), anything else (``float_values``, float16, clipped to its range).
        """
        lengths = np.array([len(a) for a in self.actions], np.int64)
        sample = self.actions[0] if self.actions else np.zeros(0, np.int64)
        discrete = sample.dtype.kind in "biu"
        width = 1 if discrete else int(np.prod(sample.shape[1:]))
        unique = sorted(set(self.skill_ids).union(*self.histories))
        rows = sum(len(f) for f in self.features)
        feats = np.concatenate(self.features) if rows else np.zeros((0, obs_dim), np.float32)
        if feats.shape[1] != obs_dim:
            raise ValueError(f"SegmentReplay.to_record: features have {feats.shape[1]} columns")
        # --- column kinds, read from the data ---
        constant = (feats == feats[:1]).all(0) if rows else np.ones(obs_dim, bool)  # (O,)
        binary = ~constant & ((feats == 0) | (feats == 1)).all(0)  # (O,)
        floating = ~constant & ~binary  # (O,)
        kinds = np.where(constant, _CONSTANT, np.where(binary, _BINARY, _FLOAT)).astype(np.uint8)
        constants = feats[0, constant] if rows else np.zeros(obs_dim, np.float32)
        acts = np.concatenate(self.actions) if self.actions else np.zeros(0, np.int64)
        position = {s: i for i, s in enumerate(unique)}
        config = {
            "obs_dim": obs_dim,
            "num_segments": len(lengths),
            "num_steps": int(lengths.sum()),
            "num_binary": int(binary.sum()),
            "num_float": int(floating.sum()),
            "action_kind": "discrete" if discrete else "continuous",
            "action_size": width,
            "skill_ids": unique,
            "num_history": sum(len(h) for h in self.histories),
        }
        weights = {
            "column_kinds": kinds,
            "constants": constants.astype(np.float32),
            "binary_bits": np.packbits(feats[:, binary] == 1, axis=1),  # (T+N, ceil(B/8))
            "float_values": np.clip(feats[:, floating], -_F16_MAX, _F16_MAX).astype(np.float16),
            "actions": acts.astype(np.int64) if discrete else acts.astype(np.float32),
            "lengths": lengths,
            "skills": np.array([position[s] for s in self.skill_ids], np.int64),
            "calls": np.array(self.calls, np.int64),
            "history_lengths": np.array([len(h) for h in self.histories], np.int64),
            "history_skills": np.array([position[s] for h in self.histories for s in h], np.int64),
        }
        return config, weights

    @classmethod
    def from_record(
        cls, config: Mapping[str, Any], weights: Mapping[str, npt.NDArray[Any]]
    ) -> SegmentReplay:
        """Rebuild from a ``segment-replay-v3`` (or ``-v2``, ``-v1``: no histories) record,
        checking every shape.

        Raises:
            MemoryCorruptionError: the record's tensors do not fit together or its config.
        """
        names = [str(s) for s in config.get("skill_ids", [])]
        lengths = np.asarray(_tensor(weights, "lengths"), np.int64)
        skills = np.asarray(_tensor(weights, "skills"), np.int64)
        acts = np.asarray(_tensor(weights, "actions"))
        rows = int(lengths.sum()) + len(lengths)
        if "features" in weights:  # v1: every column float16
            feats = np.asarray(weights["features"]).astype(np.float32)
            calls = np.zeros(len(lengths), np.int64)
        else:
            feats = _decode_features(weights, rows, config.get("obs_dim"))
            calls = np.asarray(_tensor(weights, "calls"), np.int64)
        _check(lengths.ndim == 1 and (lengths >= 1).all(), "'lengths' must be (N,) counts >= 1")
        _check(skills.shape == calls.shape == lengths.shape, "'skills', 'calls' must be (N,)")
        _check(len(acts) == int(lengths.sum()), "'actions' must hold sum(lengths) steps")
        _check(feats.ndim == 2 and len(feats) == rows, "features must hold sum(lengths)+N rows")
        _check(feats.shape[1] == config.get("obs_dim"), "features must have obs_dim columns")
        _check(bool(np.isfinite(feats).all()), "features must be finite")
        _check(((skills >= 0) & (skills < len(names))).all(), "'skills' must index skill_ids")
        _check(bool((calls >= 0).all()), "'calls' must be >= 0")
        histories: tuple[tuple[str, ...], ...] = ()
        if "history_lengths" in weights:  # v3
            h_lengths = np.asarray(_tensor(weights, "history_lengths"), np.int64)
            h_skills = np.asarray(_tensor(weights, "history_skills"), np.int64)
            _check(h_lengths.shape == lengths.shape, "'history_lengths' must be (N,)")
            _check(bool((h_lengths >= 0).all()), "'history_lengths' must be >= 0")
            _check(h_skills.shape == (int(h_lengths.sum()),), "'history_skills' length")
            _check(((h_skills >= 0) & (h_skills < len(names))).all(), "bad 'history_skills'")
            parts = np.split(h_skills, np.cumsum(h_lengths)[:-1]) if len(lengths) else []
            histories = tuple(tuple(names[int(i)] for i in part) for part in parts)
        row_ends = np.cumsum(lengths + 1)
        step_ends = np.cumsum(lengths)
        features = tuple(np.split(feats, row_ends[:-1])) if len(lengths) else ()
        actions = tuple(np.split(acts, step_ends[:-1])) if len(lengths) else ()
        ids = tuple(names[int(i)] for i in skills)
        return cls(features, actions, ids, tuple(int(c) for c in calls), histories)


def _check(ok: bool | np.bool_, what: str) -> None:
    if not ok:
        raise MemoryCorruptionError(f"segment-replay record: {what}", hint=_HINT)


def _tensor(weights: Mapping[str, npt.NDArray[Any]], name: str) -> npt.NDArray[Any]:
    _check(name in weights, f"tensor {name!r} is missing")
    return weights[name]


def _decode_features(
    weights: Mapping[str, npt.NDArray[Any]], rows: int, obs_dim: object
) -> npt.NDArray[np.float32]:
    """The (rows, O) float32 features of a v2 record (see :meth:`SegmentReplay.to_record`)."""
    kinds = np.asarray(_tensor(weights, "column_kinds"))
    constants = np.asarray(_tensor(weights, "constants"), np.float32)
    bits = np.asarray(_tensor(weights, "binary_bits"), np.uint8)
    floats = np.asarray(_tensor(weights, "float_values"))
    _check(kinds.ndim == 1 and kinds.shape == (obs_dim,), "'column_kinds' must be (obs_dim,)")
    _check(bool(np.isin(kinds, (_CONSTANT, _BINARY, _FLOAT)).all()), "bad 'column_kinds' value")
    constant, binary, floating = kinds == _CONSTANT, kinds == _BINARY, kinds == _FLOAT
    num_binary = int(binary.sum())
    _check(constants.shape == (int(constant.sum()),), "'constants' must hold one per column")
    _check(bits.shape == (rows, (num_binary + 7) // 8), "'binary_bits' has the wrong shape")
    _check(floats.shape == (rows, int(floating.sum())), "'float_values' has the wrong shape")
    feats = np.empty((rows, len(kinds)), np.float32)  # (T+N, O)
    feats[:, constant] = constants
    feats[:, binary] = np.unpackbits(bits, axis=1, count=num_binary)
    feats[:, floating] = floats.astype(np.float32)
    return feats
