"""Segmentation scores against a demonstrator's ground truth (evaluation only).

- Boundary F1 with a tolerance: a predicted boundary matches an unmatched true one within
  ``tolerance`` steps, one to one, as many pairs as possible (predictions in order, each taking
  the earliest free truth in reach; nearest-first could lose a pair: predicted 6, 7 against true
  5, 6 matched only 6-6). Step 0 starts every episode and is not scored.
- Cluster purity: every segment gets the true label covering most of its steps; purity is the
  fraction of segments whose cluster's majority label is their own label.

Example:
    >>> boundary_f1([(0, 3, 7)], [(0, 4, 7)]).f1
    1.0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from skillbank.interfaces import iter_segments
from skillbank.types import Episode

__all__ = [
    "BoundaryScore",
    "boundary_f1",
    "cluster_purity",
    "matched_boundaries",
    "segment_true_labels",
]


@dataclass(frozen=True, slots=True)
class BoundaryScore:
    """Precision, recall and F1 of predicted boundaries.

    Attributes:
        precision: Matched predictions / predictions (1.0 when there are none).
        recall: Matched truths / truths (1.0 when there are none).
        f1: Harmonic mean of the two.
        num_predicted: Predicted boundaries scored (step 0 excluded).
        num_true: True boundaries scored (step 0 excluded).
    """

    precision: float
    recall: float
    f1: float
    num_predicted: int
    num_true: int


def boundary_f1(
    predicted: Sequence[Sequence[int]], truth: Sequence[Sequence[int]], tolerance: int = 1
) -> BoundaryScore:
    """Score predicted segment starts against true ones, pooled over episodes.

    Args:
        predicted: Per episode, predicted segment start steps.
        truth: Per episode, true segment start steps.
        tolerance: Max distance in steps for a match (±1 by default).
    """
    if len(predicted) != len(truth):
        raise ValueError(f"boundary_f1: {len(predicted)} predictions for {len(truth)} episodes")
    matched = num_pred = num_true = 0
    for pred, true in zip(predicted, truth, strict=True):
        num_pred += len({b for b in pred if b != 0})
        num_true += len({b for b in true if b != 0})
        matched += len(matched_boundaries(pred, true, tolerance))
    precision = matched / num_pred if num_pred else 1.0
    recall = matched / num_true if num_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BoundaryScore(precision, recall, f1, num_pred, num_true)


def matched_boundaries(
    predicted: Sequence[int], truth: Sequence[int], tolerance: int = 1
) -> dict[int, int]:
    """The largest one-to-one matching of one episode's boundaries, predicted -> true.

    Predictions in increasing order each take the earliest unmatched truth within
    ``tolerance``; with every window the same width that matches as many pairs as any rule can.
    Step 0 is left out on both sides.
    """
    free = sorted({b for b in truth if b != 0})
    out: dict[int, int] = {}
    for b in sorted({b for b in predicted if b != 0}):
        hit = next((x for x in free if abs(x - b) <= tolerance), None)
        if hit is not None:
            free.remove(hit)
            out[b] = hit
    return out


def segment_true_labels(episode: Episode, boundaries: Sequence[int]) -> list[str]:
    """The annotated label covering most steps of each predicted segment of ``episode``.

    Raises:
        ValueError: If the episode has no annotations.
    """
    if episode.annotations is None:
        raise ValueError("segment_true_labels: the episode has no annotations to score against")
    step_labels: list[str] = []
    ann = episode.annotations
    for (start, stop), label in zip(
        iter_segments(ann.boundaries, episode.num_steps), ann.labels, strict=True
    ):
        step_labels += [label] * (stop - start)
    out = []
    for start, stop in iter_segments(boundaries, episode.num_steps):
        counts = Counter(step_labels[start:stop])
        out.append(counts.most_common(1)[0][0] if counts else "")
    return out


def cluster_purity(clusters: Sequence[int], labels: Sequence[str]) -> float:
    """Fraction of items whose cluster's majority label is their label (1.0 for no items)."""
    if len(clusters) != len(labels):
        raise ValueError("cluster_purity: clusters and labels must have the same length")
    if not clusters:
        return 1.0
    by_cluster: dict[int, Counter[str]] = {}
    for cluster, label in zip(clusters, labels, strict=True):
        by_cluster.setdefault(cluster, Counter())[label] += 1
    return sum(c.most_common(1)[0][1] for c in by_cluster.values()) / len(clusters)
