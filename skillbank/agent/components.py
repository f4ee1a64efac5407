"""The agent's records in the skill memory: its skills and its components (featurizer + VAE,
controller, replay).

They live beside the skills as ``component`` records (new versions, never overwrites), so a
memory is self-contained. Skills carry the ``skill`` tag and the featurizer's tag
(:func:`features_tag`), components the ``component`` tag and their role; every lookup of skills
filters by the ``skill`` tag, so a component is never retrieved as a skill.

Example:
    >>> record = latest_component(memory, "controller")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.agent.learn_steps import load_weights_into
from skillbank.learning.composite_skill import COMPOSITE_ARCH
from skillbank.learning.features import ObservationFeaturizer
from skillbank.memory.store import SkillMemory
from skillbank.nn.skill_policy import SkillPolicy, SkillPolicyConfig
from skillbank.types import Provenance, RetrievalFilter, SkillRecord

__all__ = [
    "COMPONENT_TAG",
    "SKILL_TAG",
    "features_tag",
    "latest_component",
    "store_component",
    "stored_primitives",
]

SKILL_TAG = "skill"
COMPONENT_TAG = "component"


def latest_component(memory: SkillMemory, role: str) -> SkillRecord | None:
    """The newest component record with this role (``"controller"``, ...), if any."""
    records = memory.list(RetrievalFilter(tags=(COMPONENT_TAG, role)))
    return max(records, key=lambda r: r.created_at) if records else None


def features_tag(featurizer: ObservationFeaturizer) -> str:
    """The tag of skills that read this featurizer's features (a hash of its spec)."""
    blob = json.dumps(featurizer.to_json(), sort_keys=True).encode()
    return "features:" + hashlib.sha256(blob).hexdigest()[:12]


def store_component(
    memory: SkillMemory,
    role: str,
    arch_id: str,
    weights: Mapping[str, npt.NDArray[Any]],
    config: Mapping[str, Any],
    provenance: Provenance,
    *,
    featurizer: ObservationFeaturizer,
    latent_dim: int,
) -> None:
    """Store a component: a new version of the record with this role, or a new record.

    A new record is made when there is none yet or the architecture changed (an old memory
    keeps its old record untouched); the featurizer spec is written into the config.
    """
    config = {**config, "features": featurizer.to_json()}
    key = np.zeros(latent_dim, np.float32)
    key[0] = 1.0  # components are never retrieved (filtered by tag); any finite key will do
    existing = latest_component(memory, role)
    if existing is None or existing.arch_id != arch_id:
        name = f"agent/{role}" if existing is None else f"agent/{role}-{arch_id}"
        memory.add(
            name, key, arch_id, config, dict(weights), provenance, tags=(COMPONENT_TAG, role)
        )
    else:
        memory.add_version(
            existing.skill_id,
            weights=dict(weights),
            arch_config=dict(config),
            provenance=provenance,
        )


def stored_primitives(
    memory: SkillMemory, skill_filter: RetrievalFilter
) -> tuple[list[str], npt.NDArray[np.float32], list[SkillPolicy]]:
    """The primitive (non-composite) skills the filter selects: ids (N,), keys (N, Z), modules."""
    all_ids, all_keys = memory.keys(skill_filter)
    records = [memory.get(skill_id) for skill_id in all_ids]
    primitive = [i for i, r in enumerate(records) if r.arch_id != COMPOSITE_ARCH]
    policies = []
    for record in (records[i] for i in primitive):
        policy = SkillPolicy(SkillPolicyConfig.from_json(record.arch_config))
        load_weights_into(policy, memory.load_weights(record))
        policies.append(policy)
    return [all_ids[i] for i in primitive], all_keys[primitive], policies
