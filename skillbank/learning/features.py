"""Turn any observation mapping into one flat float vector, with a spec fitted on demonstrations.

The learning code must serve grid worlds (integer ids: BabyAI images, directions, mission tokens),
vector worlds (Meta-World, the toy world) and anything else, without knowing which. The rule is
generic and read from the data:

- a bool entry is binary: its elements become 0/1 floats as they are (an occupancy map of
  (H, W, C) planes costs H * W * C features, not eight per element);
- an integer entry whose values stay below ``max_cardinality`` is one-hot encoded per
  element, with one vocabulary per channel (the last axis; scalars have one channel), sized to
  the next power of two above the largest value seen (at least 8), so ids that first appear in
  later demonstrations (a door in a later level) still have a place; larger values encode as
  zeros;
- a long 1-D integer sequence (``min_sequence_len`` or more, e.g. mission tokens) is a token
  sequence: a bag of its tokens plus the one-hot tokens of its first ``sequence_positions``
  positions, over a shared vocabulary of ``max_cardinality`` ids (id 0 is padding), so missions
  longer, or with words, unlike any seen still encode (12 positions by default; BabyAI missions,
  over 300 generated seeds each, hold mean/p90/p99/max 12.4/22/30/45 tokens on BossLevel,
  12.5/22/30/45 on SynthSeq, 11.0/18/24/24 on GoToSeq, at most 9 on the four primitive levels).
  32 positions were measured and are not the default: BossLevel-alone success (250 bot demos,
  128 unseen episodes, seeds 0-3), 12 vs 32 positions: 0.359/0.344/0.297/0.383 (mean 0.346)
  vs 0.414/0.438/0.320/0.430 (0.400) without the controller's call history, but with it (on
  request) 0.406/0.430/0.438/0.414 (0.422) vs 0.375/0.406/0.430/0.398 (0.402); 32 positions
  cost 1,280 more features a step (BabyAI: 3,296 rather than 2,016 floats) and 1.42x learning
  CPU. With the controller's target copy (which can point only at encoded positions), the call
  history and the three hindsight switches, the six benchmark levels learned in one call
  (seeds 0/1): BossLevel 0.508/0.500 vs 0.508/0.449 at 12 positions, GoToSeq 0.832/0.781 vs
  0.750/0.781 (``AgentConfig.sequence_positions``, README);
- any other entry is flattened to floats and standardised with the mean and std seen.

Features without a standardised entry are small counts, held exactly in one byte each
(:attr:`ObservationFeaturizer.storage_dtype`); learning keeps demonstrations that way.

The spec is plain JSON, stored beside every skill that reads it, so a memory opened in a fresh
process rebuilds exactly the same features.

Example:
    >>> featurizer = ObservationFeaturizer.fit(episodes)  # doctest: +SKIP
    >>> featurizer.transform({"obs": batch})  # (B, O) float32  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.errors import TrainingError
from skillbank.types import Episode

__all__ = ["FeatureSpec", "ObservationFeaturizer"]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """How one observation entry becomes features.

    Attributes:
        name: The observation key, e.g. ``"image"`` or ``"obs"``.
        shape: Per-step shape of the entry, e.g. ``(7, 7, 3)``.
        kind: ``"onehot"`` (integer ids), ``"tokens"`` (a token sequence), ``"binary"`` (bool
            elements as 0/1) or ``"float"`` (standardised values).
        cardinalities: ``onehot``: vocabulary size per channel (last axis; one for scalars);
            ``tokens``: (vocabulary size, positions encoded one-hot).
        mean: ``float``: per-element mean (prod(shape) values).
        std: ``float``: per-element std; 1.0 where the data barely varies (below 1e-2).
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    cardinalities: tuple[int, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("onehot", "tokens", "binary", "float"):
            raise ValueError(
                f"FeatureSpec.kind must be onehot|tokens|binary|float, got {self.kind!r}"
            )
        if self.kind == "tokens":
            if len(self.cardinalities) != 2 or min(self.cardinalities) < 1:
                raise ValueError(f"FeatureSpec {self.name!r}: tokens need (vocabulary, positions)")
            return
        size = int(np.prod(self.shape)) if self.shape else 1
        if self.kind == "binary":
            return
        if self.kind == "onehot":
            channels = self.shape[-1] if self.shape else 1
            if len(self.cardinalities) != channels or min(self.cardinalities, default=1) < 1:
                raise ValueError(
                    f"FeatureSpec {self.name!r}: cardinalities must hold {channels} positive ints"
                )
        elif len(self.mean) != size or len(self.std) != size:
            raise ValueError(f"FeatureSpec {self.name!r}: mean and std must hold {size} values")

    @property
    def dim(self) -> int:
        """Number of features this entry contributes."""
        if self.kind == "float":
            return len(self.mean)
        if self.kind == "binary":
            return int(np.prod(self.shape)) if self.shape else 1
        if self.kind == "tokens":
            vocab, positions = self.cardinalities
            return vocab * (1 + positions)
        positions = int(np.prod(self.shape[:-1])) if self.shape else 1
        return positions * sum(self.cardinalities)


def _headroom(size: int, cap: int) -> int:
    """The next power of two >= size, at least 8, at most cap."""
    return max(1, min(cap, max(8, 1 << (size - 1).bit_length())))


def _token_features(array: npt.NDArray[Any], vocab: int, positions: int) -> FloatArray:
    """Token sequences (B, L) -> bag of tokens (B, V) + first positions one-hot (B, P * V)."""
    ids = array.astype(np.int64)  # (B, L)
    batch = len(ids)
    valid = (ids > 0) & (ids < vocab)  # id 0 is padding
    bag = np.zeros((batch, vocab), np.float32)
    rows, cols = np.nonzero(valid)
    np.add.at(bag, (rows, ids[rows, cols]), 1.0)
    head = np.zeros((batch, positions, vocab), np.float32)  # (B, P, V)
    rows, cols = np.nonzero(valid[:, :positions])
    head[rows, cols, ids[rows, cols]] = 1.0
    return np.concatenate([bag, head.reshape(batch, -1)], axis=1)


class ObservationFeaturizer:
    """Maps observation mappings ``name -> (B, *shape)`` to features ``(B, O)`` float32.

    Args:
        specs: One spec per observation entry used, in a fixed (sorted) order.
    """

    def __init__(self, specs: Sequence[FeatureSpec]) -> None:
        if not specs:
            raise ValueError("ObservationFeaturizer needs at least one FeatureSpec")
        self.specs = tuple(specs)
        self.dim = sum(s.dim for s in self.specs)
        self._float_stats = {
            s.name: (np.asarray(s.mean, np.float32), np.asarray(s.std, np.float32))
            for s in self.specs
            if s.kind == "float"
        }

    @classmethod
    def fit(
        cls,
        episodes: Sequence[Episode],
        *,
        max_cardinality: int = 64,
        min_sequence_len: int = 16,
        sequence_positions: int = 12,
    ) -> ObservationFeaturizer:
        """Fit the spec on every observation of ``episodes`` (see the module docstring).

        Raises:
            TrainingError: If there are no episodes.
        """
        if not episodes:
            raise TrainingError("cannot fit observation features on zero episodes")
        specs = []
        for name in sorted(episodes[0].observations):
            arrays = [np.asarray(e.observations[name]) for e in episodes]
            if any(a.dtype.kind in "USO" for a in arrays):
                continue  # raw text is not a feature; tokenised text is
            if all(a.dtype == np.bool_ for a in arrays):
                shape = tuple(int(d) for d in arrays[0].shape[1:])
                specs.append(FeatureSpec(name, shape, "binary"))
                continue
            data = np.concatenate(arrays)  # (sum T+1, *shape)
            shape = tuple(int(d) for d in data.shape[1:])
            integer = data.dtype.kind in "biu"
            small = integer and data.size and data.min() >= 0 and data.max() < max_cardinality
            if small and len(shape) == 1 and shape[0] >= min_sequence_len:
                vocab = max_cardinality  # later missions bring words not seen yet
                positions = min(sequence_positions, shape[0])
                specs.append(FeatureSpec(name, shape, "tokens", cardinalities=(vocab, positions)))
            elif small:
                channels = data.reshape(len(data), -1, shape[-1] if shape else 1)  # (N, P, C)
                cards = tuple(
                    _headroom(int(c) + 1, max_cardinality) for c in channels.max(axis=(0, 1))
                )
                specs.append(FeatureSpec(name, shape, "onehot", cardinalities=cards))
            else:
                flat = data.reshape(len(data), -1).astype(np.float64)  # (N, P)
                specs.append(
                    FeatureSpec(
                        name,
                        shape,
                        "float",
                        mean=tuple(float(v) for v in flat.mean(0)),
                        std=tuple(float(v) if v > 1e-2 else 1.0 for v in flat.std(0)),
                    )
                )
        return cls(specs)

    def transform(self, observations: Mapping[str, Any]) -> FloatArray:
        """Features of a batch: every entry ``(B, *shape)`` -> ``(B, O)`` float32.

        Raises:
            ValueError: If an entry the spec needs is missing or has the wrong shape.
        """
        parts: list[FloatArray] = []
        for spec in self.specs:
            if spec.name not in observations:
                raise ValueError(
                    f"observation has no entry {spec.name!r} (have {sorted(observations)})"
                )
            array = np.asarray(observations[spec.name])
            if tuple(array.shape[1:]) != spec.shape:
                raise ValueError(
                    f"observation {spec.name!r} has per-step shape {array.shape[1:]}, "
                    f"expected {spec.shape}"
                )
            batch = len(array)
            if spec.kind == "float":
                mean, std = self._float_stats[spec.name]
                flat = array.reshape(batch, -1).astype(np.float32)  # (B, P)
                parts.append((flat - mean) / std)
                continue
            if spec.kind == "tokens":
                parts.append(_token_features(array, *spec.cardinalities))
                continue
            if spec.kind == "binary":
                parts.append(array.reshape(batch, -1).astype(np.float32))
                continue
            channels = len(spec.cardinalities)
            ids = array.reshape(batch, -1, channels).astype(np.int64)  # (B, P, C)
            cards = np.asarray(spec.cardinalities, np.int64)
            offsets = np.concatenate([[0], np.cumsum(cards)[:-1]])  # (C,)
            width = int(cards.sum())
            out = np.zeros((batch, ids.shape[1], width), np.float32)  # (B, P, sum C)
            valid = (ids >= 0) & (ids < cards)
            b, p, c = np.nonzero(valid)
            out[b, p, ids[b, p, c] + offsets[c]] = 1.0
            parts.append(out.reshape(batch, -1))  # (B, P * sum C)
        return np.concatenate(parts, axis=1)

    def without(self, names: Collection[str]) -> ObservationFeaturizer:
        """The same features without the entries ``names`` (itself when none of them is read).

        Raises:
            ValueError: If no entry would be left.
        """
        kept = [s for s in self.specs if s.name not in names]
        if len(kept) == len(self.specs):
            return self
        return ObservationFeaturizer(kept)

    @property
    def storage_dtype(self) -> type[np.uint8] | type[np.float32]:
        """The smallest dtype that holds these features exactly: uint8 where every feature is a
        count below 256 (one-hot ids, binary planes, token bags of sequences of at most 255
        tokens: grid worlds), else float32. Demonstrations are kept in it while learning
        (BabyAI: a quarter of the memory) and turned to float32 a batch at a time."""
        exact = all(
            s.kind in ("onehot", "binary") or (s.kind == "tokens" and s.shape[0] <= 255)
            for s in self.specs
        )
        return np.uint8 if exact else np.float32

    def episode_features(self, episode: Episode) -> FloatArray:
        """Features of every observation of ``episode``: (T+1, O)."""
        return self.transform(episode.observations)

    def to_json(self) -> list[dict[str, Any]]:
        """The spec as JSON-ready data (see :meth:`from_json`)."""
        return [
            {
                "name": s.name,
                "shape": list(s.shape),
                "kind": s.kind,
                "cardinalities": list(s.cardinalities),
                "mean": list(s.mean),
                "std": list(s.std),
            }
            for s in self.specs
        ]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> ObservationFeaturizer:
        """Rebuild a featurizer from :meth:`to_json` output.

        Raises:
            ValueError: If an entry is malformed.
        """
        try:
            specs = [
                FeatureSpec(
                    name=str(d["name"]),
                    shape=tuple(int(v) for v in d["shape"]),
                    kind=str(d["kind"]),
                    cardinalities=tuple(int(v) for v in d.get("cardinalities", [])),
                    mean=tuple(float(v) for v in d.get("mean", [])),
                    std=tuple(float(v) for v in d.get("std", [])),
                )
                for d in data
            ]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed feature spec: {exc}") from exc
        return cls(specs)
