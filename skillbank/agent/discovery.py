"""Which segments need new skills: explain segments by stored skills, merge alike clusters.

A segment is *explained* by a stored skill when one of the skills whose keys are nearest its
code (cosine) gives its actions a mean log-likelihood of at least a threshold (given the
argument the controller would hand the skill). The unexplained segments are clustered; clusters
whose segments the skill VAE decodes as well with either centre are then merged.

Example:
    >>> assignment = explain_segments(segments, codes, keys, policies, controller,
    ...                               candidates=2, threshold=-0.6)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from skillbank.learning.cluster import Clustering
from skillbank.learning.hierarchy_training import segment_arguments
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.skill_training import segment_log_likelihood
from skillbank.learning.skill_vae import decoder_cross_likelihood, merge_equivalent
from skillbank.nn.controller import Controller
from skillbank.nn.skill_policy import SkillPolicy
from skillbank.nn.skill_vae import SkillVAE

__all__ = ["explain_segments", "merge_alike_clusters"]


def explain_segments(
    segments: SegmentSet,
    codes: npt.NDArray[np.float32],
    keys: npt.NDArray[np.float32],
    policies: Sequence[SkillPolicy],
    controller: Controller | None,
    *,
    candidates: int,
    threshold: float,
    relabel: str = "none",
) -> npt.NDArray[np.int64]:
    """Per segment (S,), the index of a stored skill that explains it well, else -1.

    Args:
        segments: The S segments.
        codes: (S, Z) their VAE codes.
        keys: (N, Z) the stored skills' keys.
        policies: The N stored skills.
        controller: Hands each skill its argument (None: no arguments).
        candidates: Nearest keys tried per segment.
        threshold: Least mean action log-likelihood that counts as explained.
        relabel: How hindsight targets are relabelled (``SkillTrainConfig.relabel_mode``).
    """
    assignment = np.full(segments.num_segments, -1, np.int64)
    if not policies:
        return assignment
    indices = list(range(segments.num_segments))
    arguments = segment_arguments(controller, segments, relabel=relabel)  # (S, D)
    loglik = np.stack(
        [segment_log_likelihood(p, segments, indices, arguments) for p in policies], 1
    )  # (S, N)
    unit = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-8)
    nearest = np.argsort(-(codes @ unit.T), axis=1)[:, :candidates]
    candidate_ll = np.take_along_axis(loglik, nearest, axis=1)  # (S, C)
    best = candidate_ll.argmax(1)
    explained = candidate_ll.max(1) >= threshold
    assignment[explained] = nearest[np.arange(len(best)), best][explained]
    return assignment


def merge_alike_clusters(
    vae: SkillVAE,
    segments: SegmentSet,
    codes: npt.NDArray[np.float32],
    indices: npt.NDArray[np.int64],
    clustering: Clustering,
    *,
    tolerance: float,
    max_segment_length: int,
) -> Clustering:
    """Merge clusters whose segments the VAE decodes as well with either centre.

    Args:
        vae: The skill VAE (its decoder scores each group under each centre).
        segments: All segments of this learn call.
        codes: (S, Z) their codes.
        indices: The clustered segments (the clustering's labels follow this order).
        clustering: Their clustering.
        tolerance: How much worse a group may decode under another centre and still merge
            (<= 0: never merge).
        max_segment_length: Longest segment the VAE reads.
    """
    if clustering.num_clusters < 2 or tolerance <= 0:
        return clustering
    groups = [indices[clustering.labels == j].tolist() for j in range(clustering.num_clusters)]
    cross = decoder_cross_likelihood(
        vae,
        segments,
        groups,
        clustering.centres.astype(np.float32),
        max_segment_length=max_segment_length,
    )
    merged = np.asarray(merge_equivalent(cross, tolerance))
    labels = merged[clustering.labels]
    centres = np.stack(
        [codes[indices[labels == g]].mean(0) for g in range(int(merged.max()) + 1)]
    ).astype(np.float64)
    return Clustering(centres, labels, dict(clustering.silhouettes))
