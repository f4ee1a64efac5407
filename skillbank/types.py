"""Data types that cross module boundaries: frozen, slotted, validated on construction.

Shape letters: B batch, T time, N stored skills, K top-k, Z latent, D hidden, O observation
features, A action dims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "COARSE_MAP_KEY",
    "HISTORY_ENTRIES",
    "MAP_KEY",
    "Episode",
    "Provenance",
    "Retrieval",
    "RetrievalFilter",
    "SkillRecord",
    "SubgoalAnnotation",
    "TaskSpec",
    "UsageStats",
]

FloatArray = npt.NDArray[np.float32]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# --- demonstrations -----------------------------------------------------------------------------

MAP_KEY = "map"
"""The observation entry of an explored map (:mod:`skillbank.envs.grid_map`)."""

COARSE_MAP_KEY = "map_coarse"
"""The observation entry of the explored map's coarse, wider view
(:mod:`skillbank.envs.grid_map`)."""

HISTORY_ENTRIES: frozenset[str] = frozenset({MAP_KEY, COARSE_MAP_KEY})
"""Observation entries an environment derives from the agent's own history (``"map"`` and
``"map_coarse"``: the explored map, :mod:`skillbank.envs.grid_map`). They inform acting (where
has the agent not looked yet) but not what a segment's skill is: the skill encoder does not read
them."""


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What an episode was asked to do.

    Attributes:
        env_id: Canonical environment id, e.g. ``"babyai/GoToLocal"``, ``"metaworld/reach-v3"``,
            ``"toy/fetch-then-deliver"``.
        mission: The mission text, where the environment has one (BabyAI); else ``None``.
    """

    env_id: str
    mission: str | None = None

    def __post_init__(self) -> None:
        _require(bool(self.env_id), "TaskSpec.env_id must be a non-empty string")


@dataclass(frozen=True, slots=True)
class SubgoalAnnotation:
    """Ground truth a demonstrator happens to know: where its subgoals start and what they are.

    Used only to *score* segmentation; a learner never sees it.

    Attributes:
        boundaries: Step indices (0 <= b < T) at which a new subgoal starts; strictly increasing,
            the first is 0.
        labels: One subgoal type per boundary, e.g. ``"GoNextTo"``, ``"Pickup"``.
    """

    boundaries: tuple[int, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        _require(
            len(self.boundaries) == len(self.labels),
            "SubgoalAnnotation.boundaries and .labels must have the same length",
        )
        _require(
            all(a < b for a, b in zip(self.boundaries, self.boundaries[1:], strict=False)),
            "SubgoalAnnotation.boundaries must be strictly increasing",
        )
        _require(
            not self.boundaries or self.boundaries[0] == 0,
            "SubgoalAnnotation.boundaries must start at step 0",
        )


@dataclass(frozen=True, slots=True)
class Episode:
    """One demonstration: T steps of one task.

    Observations follow the Minari convention: T+1 entries (the last is the final observation).
    Every observation is a mapping of named arrays; a Box observation lives under ``"obs"``.

    Attributes:
        observations: name -> array of shape (T+1, ...).
        actions: (T, ...) actions, or ``None`` for a state-only demonstration (another agent
            watched without its actions).
        rewards: (T,) float32 rewards.
        terminations: (T,) bool.
        truncations: (T,) bool.
        task: The task the episode solves.
        success: Whether the demonstrator succeeded.
        seed: The environment seed that produced the episode.
        demonstrator: Who produced it, e.g. ``"babyai-bot"``, ``"metaworld-scripted"``.
        annotations: Demonstrator-known subgoals, for evaluation only; ``None`` if unknown.
    """

    observations: Mapping[str, npt.NDArray[Any]]
    actions: npt.NDArray[Any] | None
    rewards: npt.NDArray[np.float32]
    terminations: npt.NDArray[np.bool_]
    truncations: npt.NDArray[np.bool_]
    task: TaskSpec
    success: bool
    seed: int
    demonstrator: str
    annotations: SubgoalAnnotation | None = None

    def __post_init__(self) -> None:
        num_steps = len(self.rewards)
        _require(bool(self.observations), "Episode.observations must hold at least one array")
        for name, array in self.observations.items():
            _require(
                len(array) == num_steps + 1,
                f"Episode.observations[{name!r}] has {len(array)} entries; expected T+1 = "
                f"{num_steps + 1}",
            )
        if self.actions is not None:
            _require(
                len(self.actions) == num_steps,
                f"Episode.actions has {len(self.actions)} entries; expected T = {num_steps}",
            )
        _require(len(self.terminations) == num_steps, "Episode.terminations must have T entries")
        _require(len(self.truncations) == num_steps, "Episode.truncations must have T entries")
        _require(bool(self.demonstrator), "Episode.demonstrator must be a non-empty string")
        if self.annotations is not None and self.annotations.boundaries:
            _require(
                self.annotations.boundaries[-1] < max(num_steps, 1),
                "Episode.annotations.boundaries must lie inside the episode",
            )

    @property
    def num_steps(self) -> int:
        """T, the number of actions taken."""
        return len(self.rewards)

    @property
    def state_only(self) -> bool:
        """True when the actions were not observed."""
        return self.actions is None


# --- skill memory ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a skill came from.

    Attributes:
        source: The demonstrator or process, e.g. ``"babyai-bot"``, ``"practice"``, ``"import"``.
        task: The task (env id, mission) it was learned on.
        dataset_hash: SHA-256 of the dataset it was learned from ("" if none).
        extra: Further string facts (command line, seeds, pack of origin, ...).
    """

    source: str
    task: str = ""
    dataset_hash: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(bool(self.source), "Provenance.source must be a non-empty string")
        _require(
            all(isinstance(k, str) and isinstance(v, str) for k, v in self.extra.items()),
            "Provenance.extra must map strings to strings",
        )


@dataclass(frozen=True, slots=True)
class UsageStats:
    """How often a skill was retrieved, executed, and succeeded (summed over its versions' life).

    Attributes:
        num_retrieved: Times it was among the retrieved top-k.
        num_executed: Times it was run.
        num_succeeded: Times an episode in which it ran succeeded.
        last_used: Unix time of the last use, or ``None``.
    """

    num_retrieved: int = 0
    num_executed: int = 0
    num_succeeded: int = 0
    last_used: float | None = None

    def __post_init__(self) -> None:
        _require(
            min(self.num_retrieved, self.num_executed, self.num_succeeded) >= 0,
            "UsageStats counts must be non-negative",
        )


@dataclass(frozen=True, slots=True)
class SkillRecord:
    """One version of one skill, as stored. Weights are loaded separately (they can be large).

    Attributes:
        skill_id: Stable id shared by every version of the skill.
        version: 1 for the first version, +1 for each update.
        version_id: Unique id of this version.
        name: Human-readable name.
        key: (Z,) float32 latent skill code used for retrieval.
        arch_id: Allow-listed architecture id (see ``skillbank.architectures``).
        arch_config: JSON config that rebuilds the module.
        weights_sha256: SHA-256 of the safetensors blob holding the weights.
        provenance: Where it came from.
        created_at: Unix time this version was stored.
        parent_version_id: The version it was derived from, ``None`` for a first version.
        tags: Free tags for filtering.
        usage: Usage statistics of the skill.
    """

    skill_id: str
    version: int
    version_id: str
    name: str
    key: FloatArray
    arch_id: str
    arch_config: Mapping[str, Any]
    weights_sha256: str
    provenance: Provenance
    created_at: float
    parent_version_id: str | None = None
    tags: tuple[str, ...] = ()
    usage: UsageStats = field(default_factory=UsageStats)

    def __post_init__(self) -> None:
        _require(bool(self.skill_id), "SkillRecord.skill_id must be non-empty")
        _require(self.version >= 1, "SkillRecord.version must be >= 1")
        _require(
            self.key.ndim == 1 and self.key.dtype == np.float32,
            "SkillRecord.key must be a 1-D float32 array",
        )
        _require(bool(np.isfinite(self.key).all()), "SkillRecord.key must hold finite numbers only")
        _require(len(self.weights_sha256) == 64, "SkillRecord.weights_sha256 must be 64 hex chars")


@dataclass(frozen=True, slots=True)
class RetrievalFilter:
    """Restricts retrieval to matching skills (all given conditions must hold).

    Attributes:
        tags: Every listed tag must be on the skill.
        arch_id: Only skills of this architecture.
        task: Only skills whose provenance task equals this.
    """

    tags: tuple[str, ...] = ()
    arch_id: str | None = None
    task: str | None = None

    @property
    def is_empty(self) -> bool:
        """True when the filter keeps every skill."""
        return not self.tags and self.arch_id is None and self.task is None


@dataclass(frozen=True, slots=True)
class Retrieval:
    """The top-k skills for one query.

    Attributes:
        skill_ids: (K,) ids, best first.
        scores: (K,) float32 similarity scores, descending.
        weights: (K,) float32 attention weights, softmax over the K scores; they sum to 1.
    """

    skill_ids: tuple[str, ...]
    scores: FloatArray
    weights: FloatArray

    def __post_init__(self) -> None:
        k = len(self.skill_ids)
        _require(self.scores.shape == (k,), "Retrieval.scores must have shape (K,)")
        _require(self.weights.shape == (k,), "Retrieval.weights must have shape (K,)")
        if k:
            _require(
                math.isclose(float(self.weights.sum()), 1.0, rel_tol=1e-4),
                "Retrieval.weights must sum to 1",
            )
