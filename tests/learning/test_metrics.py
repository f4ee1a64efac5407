"""Boundary F1 (±1) and cluster purity."""

from __future__ import annotations

import numpy as np
import pytest

from skillbank.learning.metrics import boundary_f1, cluster_purity, segment_true_labels
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec


def test_boundary_f1_tolerates_one_step_and_matches_one_to_one() -> None:
    assert boundary_f1([(0, 3, 7)], [(0, 4, 7)]).f1 == 1.0
    score = boundary_f1([(0, 3, 4)], [(0, 4)])  # two predictions near one truth: one matches
    assert score.recall == 1.0 and score.precision == 0.5
    assert boundary_f1([(0, 10)], [(0, 4)]).f1 == 0.0
    assert boundary_f1([(0,)], [(0,)]).f1 == 1.0  # step 0 is not scored


def test_boundary_f1_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="episodes"):
        boundary_f1([(0,)], [])


def test_cluster_purity_and_segment_labels() -> None:
    assert cluster_purity([0, 0, 1, 1], ["a", "a", "b", "a"]) == 0.75
    episode = Episode(
        observations={"obs": np.zeros((7, 2), np.float32)},
        actions=np.zeros(6, np.int64),
        rewards=np.zeros(6, np.float32),
        terminations=np.zeros(6, bool),
        truncations=np.zeros(6, bool),
        task=TaskSpec("toy/goto"),
        success=True,
        seed=0,
        demonstrator="test",
        annotations=SubgoalAnnotation((0, 4), ("GoTo", "Pickup")),
    )
    assert segment_true_labels(episode, (0, 3, 5)) == ["GoTo", "GoTo", "Pickup"]
