"""Skills made of skills: mine, train and store composite skills during a learn call.

After :meth:`~skillbank.agent.core.ProceduralMemoryAgent.learn` has assigned every segment to a
primitive skill, each demonstration is a sequence of skill indices. :func:`learn_composites`

1. applies the composites already stored (whose children are all known) and mines new recurring
   sequences (:func:`~skillbank.learning.composite_mining.mine_patterns`; the stated rule is in
   that module), stored ones first, then the new ones in the miner's priority order;
2. cuts every episode into calls (:func:`~skillbank.learning.composite_mining.cover_sequence`): an
   occurrence of a composite is one call spanning its children's segments;
3. trains each new composite's sub-controller on the occurrences it covers, its children frozen
   (:func:`~skillbank.learning.composite_training.train_composite`; where an episode begins the
   sequence and then does something else, it learns to be done there), and stores it as a
   ``skill-sequence-v1`` record: key = the mean code of its occurrences' segments (the same key
   space as the primitives), tags ``skill``, the featurizer tag and ``composite``, provenance with
   the pattern's support;
4. returns the calls as a :class:`SegmentSet` with labels over primitives then composites, on
   which the agent relabels its controller.

Example:
    >>> outcome = learn_composites(memory, segments, assignment, ...)  # doctest: +SKIP
    >>> outcome.ids, outcome.calls.num_segments  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from skillbank.agent.config import AgentConfig
from skillbank.agent.learn_steps import load_weights_into, module_weights
from skillbank.events import Event, Observer
from skillbank.learning.composite_mining import cover_sequence, mine_patterns
from skillbank.learning.composite_skill import COMPOSITE_ARCH, CompositeSkill, CompositeSkillConfig
from skillbank.learning.composite_training import train_composite
from skillbank.learning.segment_set import SegmentSet
from skillbank.memory.store import SkillMemory
from skillbank.nn.controller import Controller
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy
from skillbank.types import Provenance, RetrievalFilter, SkillRecord

__all__ = [
    "COMPOSITE_TAG",
    "CompositeOutcome",
    "early_stops",
    "episode_sequences",
    "learn_composites",
    "load_composite",
    "stored_composites",
]

COMPOSITE_TAG = "composite"


@dataclass(frozen=True, slots=True)
class CompositeOutcome:
    """The composites a learn call ends with, and its demonstrations cut into calls.

    Attributes:
        ids: (N_c,) every composite the controller chooses from (stored ones, then new ones).
        keys: (N_c, Z) their keys.
        modules: (N_c,) their sub-controllers.
        new_ids: The composites this call stored.
        calls: This call's demonstrations as calls (a composite's occurrence is one segment).
        labels: (calls,) key index of each call: primitives 0..N_p-1, then composites.
    """

    ids: tuple[str, ...]
    keys: npt.NDArray[np.float32]
    modules: tuple[CompositeSkill, ...]
    new_ids: tuple[str, ...]
    calls: SegmentSet
    labels: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.keys) == len(self.modules):
            raise ValueError("CompositeOutcome: one key and one module per composite id")
        if len(self.labels) != self.calls.num_segments:
            raise ValueError("CompositeOutcome.labels needs one label per call")


def load_composite(record: SkillRecord, weights: dict[str, npt.NDArray[Any]]) -> CompositeSkill:
    """Rebuild a stored ``skill-sequence-v1`` record's sub-controller."""
    config = CompositeSkillConfig.from_json(record.arch_config)
    module = CompositeSkill(config, torch.from_numpy(np.array(weights["child_keys"])))
    load_weights_into(module, weights)
    return module


def stored_composites(
    memory: SkillMemory, composite_ids: Sequence[str], latent_dim: int
) -> tuple[list[str], npt.NDArray[np.float32], list[CompositeSkill]]:
    """The listed composites still in ``memory``: ids (N_c,), keys (N_c, Z), modules (N_c,)."""
    ids = [c for c in composite_ids if c in memory]
    records = [memory.get(c) for c in ids]
    keys = (
        np.stack([np.asarray(r.key, np.float32) for r in records])
        if records
        else np.zeros((0, latent_dim), np.float32)
    )  # (N_c, Z)
    modules = [load_composite(r, memory.load_weights(r)) for r in records]
    return ids, keys, modules


def episode_sequences(
    segments: SegmentSet, assignment: Sequence[int]
) -> tuple[list[list[int]], list[list[int]]]:
    """Per episode (in order): its segments' skill indices, and the segments' own indices."""
    skills: dict[int, list[int]] = {}
    members: dict[int, list[int]] = {}
    for i, (e, _, _) in enumerate(segments.spans):
        skills.setdefault(e, []).append(int(assignment[i]))
        members.setdefault(e, []).append(i)
    order = sorted(skills)
    return [skills[e] for e in order], [members[e] for e in order]


def _calls(
    segments: SegmentSet,
    assignment: Sequence[int],
    patterns: Sequence[tuple[int, ...]],
    num_primitives: int,
) -> tuple[SegmentSet, npt.NDArray[np.int64], list[list[list[int]]]]:
    """The demonstrations cut into calls, their labels, and each pattern's occurrences."""
    sequences, members = episode_sequences(segments, assignment)
    spans: list[tuple[int, int, int]] = []
    labels: list[int] = []
    occurrences: list[list[list[int]]] = [[] for _ in patterns]
    for seq, segs in zip(sequences, members, strict=True):
        found = {start: (stop, j) for start, stop, j in cover_sequence(seq, patterns)}
        i = 0
        while i < len(seq):
            if i in found:
                stop, j = found[i]
                occurrences[j].append(segs[i:stop])
                e, a, _ = segments.spans[segs[i]]
                spans.append((e, a, segments.spans[segs[stop - 1]][2]))
                labels.append(num_primitives + j)
                i = stop
            else:
                spans.append(segments.spans[segs[i]])
                labels.append(seq[i])
                i += 1
    calls = SegmentSet(segments.features, segments.actions, tuple(spans))
    return calls, np.asarray(labels, np.int64), occurrences


def early_stops(
    segments: SegmentSet, assignment: Sequence[int], pattern: tuple[int, ...]
) -> list[tuple[int, int]]:
    """``(segment, p)`` wherever an episode runs the first p (1 <= p < L) skills of ``pattern``
    and then does something else (or ends): where a composite begun there should be done."""
    stops: list[tuple[int, int]] = []
    sequences, members = episode_sequences(segments, assignment)
    for seq, segs in zip(sequences, members, strict=True):
        covered = {i for a, b, _ in cover_sequence(seq, [pattern]) for i in range(a, b)}
        for i, skill in enumerate(seq):
            if skill != pattern[0] or i in covered:
                continue
            p = 1
            while p < len(pattern) and i + p < len(seq) and seq[i + p] == pattern[p]:
                p += 1
            if p < len(pattern):
                stops.append((segs[i + p - 1], p))
    return stops


def learn_composites(
    memory: SkillMemory,
    segments: SegmentSet,
    assignment: Sequence[int],
    codes: npt.NDArray[np.float32],
    skill_ids: Sequence[str],
    keys: npt.NDArray[np.float32],
    policies: Sequence[SkillPolicy],
    controller: Controller,
    action: ActionSpec,
    config: AgentConfig,
    provenance: Provenance,
    skill_tags: tuple[str, ...],
    observe: Observer,
) -> CompositeOutcome:
    """Mine, train and store composites; see the module docstring.

    Args:
        memory: Where composites are stored (and stored ones found: records tagged
            ``skill_tags`` + ``composite``).
        segments: This call's segments; ``assignment`` (S,) their primitive indices.
        codes: (S, Z) the segments' codes.
        skill_ids: (N_p,) the primitives, in key order; ``keys`` (N_p, Z), ``policies`` (N_p,).
        controller: The top controller (the sub-controllers share its shape and start from it).
        action: The action space.
        config: The agent's settings (``composite_*``, ``skill.arg_dim``).
        provenance: Of this learn call.
        skill_tags: The tags of the agent's skills (``skill`` and the featurizer's).
        observe: Receives ``learn.composite`` events.
    """
    index = {s: i for i, s in enumerate(skill_ids)}
    # --- stored composites whose children are all known, then newly mined sequences ----------
    stored: list[tuple[SkillRecord, CompositeSkill]] = []
    for record in memory.list(RetrievalFilter(tags=(*skill_tags, COMPOSITE_TAG))):
        if record.arch_id != COMPOSITE_ARCH:
            continue
        module = load_composite(record, memory.load_weights(record))
        if all(c in index for c in module.config.children):
            stored.append((record, module))
    stored.sort(key=lambda rm: (rm[0].created_at, rm[0].name))
    patterns = [tuple(index[m.config.children[p]] for p in m.config.sequence) for _, m in stored]
    sequences, _ = episode_sequences(segments, assignment)
    mined = [
        p for p in mine_patterns(sequences, config.composite_mining) if p.sequence not in patterns
    ]
    calls, labels, occurrences = _calls(
        segments, assignment, [*patterns, *(p.sequence for p in mined)], len(skill_ids)
    )
    # A mined pattern whose occurrences a stored composite took drops out (labels recomputed).
    minimum = config.composite_mining.min_episodes
    kept = [p for j, p in enumerate(mined) if len(occurrences[len(patterns) + j]) >= minimum]
    if len(kept) != len(mined):
        mined = kept
        calls, labels, occurrences = _calls(
            segments, assignment, [*patterns, *(p.sequence for p in mined)], len(skill_ids)
        )
    # --- train and store each new composite -------------------------------------------------------
    ids = [r.skill_id for r, _ in stored]
    key_rows = [np.asarray(r.key, np.float32) for r, _ in stored]
    modules = [m for _, m in stored]
    new_ids: list[str] = []
    for j, pattern in enumerate(mined):
        occ = occurrences[len(patterns) + j]
        child_idx = list(dict.fromkeys(pattern.sequence))  # distinct, first-use order
        skill_config = CompositeSkillConfig.for_sequence(
            controller.config,
            children=tuple(skill_ids[c] for c in child_idx),
            sequence=tuple(child_idx.index(c) for c in pattern.sequence),
            latent_dim=keys.shape[1],
            arg_dim=config.skill.arg_dim,
        )
        module = train_composite(
            segments,
            occ,
            skill_config,
            [policies[c] for c in child_idx],
            keys[child_idx],
            action,
            config.composite_training,
            init=controller,
            stops=early_stops(segments, assignment, pattern.sequence),
        )
        key = codes[np.concatenate(occ)].mean(0).astype(np.float32)  # (Z,)
        weights = module_weights(module)
        prov = dataclasses.replace(
            provenance,
            extra={
                **provenance.extra,
                "pattern": "->".join(skill_ids[c] for c in pattern.sequence),
                "support": f"{pattern.support:.3f}",
                "occurrences": str(len(occ)),
            },
        )
        record = memory.add(
            f"composite-{len(ids):03d}",
            key,
            COMPOSITE_ARCH,
            {**skill_config.to_json(), "features": _features_of(memory, skill_ids[0])},
            weights,
            prov,
            tags=(*skill_tags, COMPOSITE_TAG),
        )
        ids.append(record.skill_id)
        new_ids.append(record.skill_id)
        key_rows.append(key)
        modules.append(module)
        observe(
            Event(
                "learn.composite",
                {"occurrences": len(occ), "support": pattern.support},
                {"id": record.skill_id, "pattern": prov.extra["pattern"]},
            )
        )
    z = keys.shape[1]
    return CompositeOutcome(
        ids=tuple(ids),
        keys=np.stack(key_rows) if key_rows else np.zeros((0, z), np.float32),
        modules=tuple(modules),
        new_ids=tuple(new_ids),
        calls=calls,
        labels=labels,
    )


def _features_of(memory: SkillMemory, skill_id: str) -> Any:
    """The featurizer spec a primitive was stored with (a composite reads the same features)."""
    return memory.get(skill_id).arch_config["features"]
