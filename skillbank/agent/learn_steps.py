"""Steps of the agent's learning that need no agent state: weights in and out of modules, the
action space, clustering, provenance hashes and scoring against annotations.

Example:
    >>> infer_action_space(episodes)  # doctest: +SKIP
    ActionSpec(kind='discrete', size=8)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from skillbank.agent.config import AgentConfig
from skillbank.learning.cluster import ClusterConfig, Clustering, cluster_codes
from skillbank.learning.controller_training import train_controller
from skillbank.learning.hierarchy_training import train_hierarchy
from skillbank.learning.metrics import boundary_f1, cluster_purity, segment_true_labels
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.skill_training import train_skill_policy
from skillbank.nn.controller import Controller
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy
from skillbank.types import Episode

__all__ = [
    "cluster_or_single",
    "dataset_hash",
    "infer_action_space",
    "load_weights_into",
    "module_weights",
    "score_against_annotations",
    "score_each_dataset",
    "train_skills_and_controller",
]


def module_weights(module: nn.Module) -> dict[str, npt.NDArray[Any]]:
    """A module's state as NumPy arrays (copies), ready for the skill memory."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_weights_into(module: nn.Module, weights: Mapping[str, npt.NDArray[Any]]) -> None:
    """Load stored weights into ``module`` and put it in eval mode."""
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    module.eval()


def dataset_hash(episodes: Sequence[Episode]) -> str:
    """SHA-256 over the episodes' env ids, seeds, lengths and actions (provenance)."""
    digest = hashlib.sha256()
    for e in episodes:
        digest.update(f"{e.task.env_id}|{e.seed}|{e.num_steps}|".encode())
        if e.actions is not None:
            digest.update(np.ascontiguousarray(e.actions).tobytes())
    return digest.hexdigest()


def infer_action_space(episodes: Sequence[Episode]) -> ActionSpec:
    """The action space: continuous from the shape; discrete with headroom (the next power of
    two above the largest id seen, at least 8), since early demonstrations rarely use every
    action (a first level may never pick anything up) and the space is fixed for the memory."""
    actions = np.concatenate([np.asarray(e.actions) for e in episodes if e.actions is not None])
    if actions.dtype.kind in "biu":
        seen = int(actions.max()) + 1
        return ActionSpec("discrete", max(8, 1 << (seen - 1).bit_length()))
    return ActionSpec("continuous", int(np.prod(actions.shape[1:])) or 1)


def cluster_or_single(codes: npt.NDArray[np.float32], config: ClusterConfig) -> Clustering:
    """Cluster segment codes (N, Z); fewer than three codes make one cluster."""
    if len(codes) < 3:
        return Clustering(
            codes.mean(0, keepdims=True).astype(np.float64), np.zeros(len(codes), np.int64)
        )
    return cluster_codes(codes.astype(np.float64), config)


def score_against_annotations(
    episodes: Sequence[Episode],
    boundaries: Sequence[Sequence[int]],
    assignment: npt.NDArray[np.int64],
) -> tuple[float | None, float | None]:
    """Boundary F1 and cluster purity against the demonstrator's annotations (None without
    any); annotations only score, they never steer learning."""
    annotated = [i for i, e in enumerate(episodes) if e.annotations is not None]
    if not annotated:
        return None, None
    truth = [episodes[i].annotations.boundaries for i in annotated]  # type: ignore[union-attr]
    f1 = boundary_f1([boundaries[i] for i in annotated], truth).f1
    labels: list[str] = []
    clusters: list[int] = []
    offset = 0
    for i, episode in enumerate(episodes):
        count = len(boundaries[i])
        if episode.annotations is not None:
            labels += segment_true_labels(episode, boundaries[i])
            clusters += assignment[offset : offset + count].tolist()
        offset += count
    return f1, cluster_purity(clusters, labels)


def score_each_dataset(
    episodes: Sequence[Episode],
    boundaries: Sequence[Sequence[int]],
    assignment: npt.NDArray[np.int64],
    owners: Sequence[int],
    num_datasets: int,
) -> tuple[tuple[float | None, float | None], ...]:
    """:func:`score_against_annotations` of each dataset's episodes (``owners[i]`` is the
    dataset episode ``i`` came from), with the call's segment -> skill assignment."""
    starts = np.cumsum([0, *(len(b) for b in boundaries)])
    scores: list[tuple[float | None, float | None]] = []
    for d in range(num_datasets):
        mine = [i for i, owner in enumerate(owners) if owner == d]
        slices = [assignment[starts[i] : starts[i + 1]] for i in mine]
        scores.append(
            score_against_annotations(
                [episodes[i] for i in mine],
                [boundaries[i] for i in mine],
                np.concatenate(slices) if slices else np.zeros(0, np.int64),
            )
        )
    return tuple(scores)


def train_skills_and_controller(
    segments: SegmentSet,
    assignment: npt.NDArray[np.int64],
    replayed: SegmentSet,
    replayed_assignment: npt.NDArray[np.int64],
    keys: npt.NDArray[np.float32],
    old_policies: Sequence[SkillPolicy],
    num_new: int,
    action: ActionSpec,
    config: AgentConfig,
    histories: Sequence[Sequence[int]] | None = None,
) -> tuple[Controller, list[SkillPolicy]]:
    """Train the ``num_new`` new skills and the controller over all N keys (N, Z).

    With parameterised skills (``config.skill.arg_dim > 0``) skills and controller are trained
    together on ``replayed`` (this call's segments plus the replay); otherwise each new skill on
    its own segments of this call (skill ``len(old_policies) + j`` in ``assignment``), then the
    controller on ``replayed``. Old skills stay frozen.

    Returns:
        The controller and the new skills.
    """
    if config.composites and config.controller.history is None:
        # composites relabel the controller on calls without histories: an unset switch is off
        config = dataclasses.replace(
            config, controller=dataclasses.replace(config.controller, history=False)
        )
    if config.skill.arg_dim:
        return train_hierarchy(
            replayed,
            replayed_assignment.tolist(),
            keys,
            old_policies,
            num_new,
            action,
            config.skill,
            config.controller,
            histories,
        )
    first = len(old_policies)
    policies = [
        train_skill_policy(
            segments, np.flatnonzero(assignment == first + j).tolist(), action, config.skill
        )
        for j in range(num_new)
    ]
    controller = train_controller(
        replayed, replayed_assignment.tolist(), keys, config.controller, histories
    )
    return controller, policies
