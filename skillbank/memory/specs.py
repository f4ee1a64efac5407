"""Input and report records of the skill memory: what to store, and what gc did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.memory.schema import check_skill_id
from skillbank.memory.weights import Weights
from skillbank.types import Provenance

__all__ = ["GcReport", "SkillSpec", "as_key"]


def as_key(key: Any, field_name: str = "key") -> npt.NDArray[np.float32]:
    """Return ``key`` as a fresh (Z,) float32 array; ValueError unless 1-D, non-empty, finite."""
    array = np.array(key, dtype=np.float32, copy=True)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{field_name} must be a non-empty 1-D vector, got shape {array.shape}")
    if not bool(np.isfinite(array).all()):
        raise ValueError(f"{field_name} must hold finite numbers only")
    return array


@dataclass(frozen=True, slots=True)
class SkillSpec:
    """One skill version to write with :meth:`SkillMemory.add_many`.

    A spec is either a new skill (version 1; ``skill_id`` given or generated) or, with
    ``version_of``, a new version of a skill stored earlier (in the memory or earlier in the same
    batch), whose parent becomes that skill's latest version.

    Attributes:
        name: Human-readable name.
        key: (Z,) latent skill code (converted to float32).
        arch_id: Allow-listed architecture id.
        arch_config: JSON config of the architecture.
        weights: name -> array, or the bytes of a safetensors file (kept as given).
        provenance: Where the skill came from.
        tags: Free tags.
        skill_id: Id for a new skill (raises on collision); ``None`` for a fresh one. Must be
            ``None`` with ``version_of``.
        version_of: Id of the skill this spec adds a version to; ``None`` for a new skill.
        created_at: Unix time to record (e.g. kept from a pack); ``None`` for now.
        version_id: Id of the new version (raises on collision); ``None`` for a fresh one.
    """

    name: str
    key: npt.NDArray[np.float32]
    arch_id: str
    arch_config: Mapping[str, Any]
    weights: Weights | bytes
    provenance: Provenance
    tags: tuple[str, ...] = ()
    skill_id: str | None = None
    version_of: str | None = None
    created_at: float | None = None
    version_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("SkillSpec.name must be a non-empty string")
        object.__setattr__(self, "key", as_key(self.key, "SkillSpec.key"))
        if not isinstance(self.arch_id, str) or not self.arch_id:
            raise ValueError("SkillSpec.arch_id must be a non-empty string")
        if not isinstance(self.provenance, Provenance):
            raise ValueError("SkillSpec.provenance must be a skillbank.types.Provenance")
        tags = tuple(self.tags)
        if not all(isinstance(t, str) and t for t in tags):
            raise ValueError("SkillSpec.tags must be non-empty strings")
        object.__setattr__(self, "tags", tags)
        if self.skill_id is not None and self.version_of is not None:
            raise ValueError("SkillSpec: give skill_id (new skill) or version_of, not both")
        if self.skill_id is not None:
            check_skill_id(self.skill_id, "SkillSpec.skill_id")
        if self.version_of is not None:
            check_skill_id(self.version_of, "SkillSpec.version_of")
        if self.version_id is not None:
            check_skill_id(self.version_id, "SkillSpec.version_id")
        if self.created_at is not None and not (
            isinstance(self.created_at, int | float) and np.isfinite(self.created_at)
        ):
            raise ValueError("SkillSpec.created_at must be a finite Unix time")


@dataclass(frozen=True, slots=True)
class GcReport:
    """What :meth:`SkillMemory.gc` reclaimed.

    Attributes:
        removed_sha256: Hashes of the unreferenced blobs removed.
        num_tmp_removed: Stray temporary files removed (left by crashed writers).
        bytes_freed: Bytes removed in all.
    """

    removed_sha256: tuple[str, ...] = ()
    num_tmp_removed: int = 0
    bytes_freed: int = 0

    def __post_init__(self) -> None:
        if self.num_tmp_removed < 0 or self.bytes_freed < 0:
            raise ValueError("GcReport counts must be non-negative")

    @property
    def num_blobs_removed(self) -> int:
        """How many unreferenced blobs were removed."""
        return len(self.removed_sha256)
