"""Boundary F1 (±1) and cluster purity."""

from __future__ import annotations

import numpy as np
import pytest

from skillbank.learning.metrics import (
    boundary_f1,
    cluster_purity,
    matched_boundaries,
    segment_true_labels,
)
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec


def test_boundary_f1_tolerates_one_step_and_matches_one_to_one() -> None:
    assert boundary_f1([(0, 3, 7)], [(0, 4, 7)]).f1 == 1.0
    score = boundary_f1([(0, 3, 4)], [(0, 4)])  # two predictions near one truth: one matches
    assert score.recall == 1.0 and score.precision == 0.5
    assert boundary_f1([(0, 10)], [(0, 4)]).f1 == 0.0
    assert boundary_f1([(0,)], [(0,)]).f1 == 1.0  # step 0 is not scored


def test_boundary_f1_matches_as_many_pairs_as_possible() -> None:
    # nearest-first would pair 6 with 6 and leave 7 unmatched; 6-5 and 7-6 are both in reach
    assert boundary_f1([(0, 6, 7)], [(0, 5, 6)]).f1 == 1.0
    assert matched_boundaries((0, 6, 7), (0, 5, 6)) == {6: 5, 7: 6}
    assert matched_boundaries((0, 3, 9), (0, 4)) == {3: 4}


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


def test_featurizer_round_trips_and_encodes_unseen_words() -> None:
    from skillbank.learning.features import ObservationFeaturizer

    steps = 3
    mission = np.zeros((steps + 1, 20), np.int64)
    mission[:, :3] = [5, 6, 7]
    episode = Episode(
        observations={
            "grid": np.ones((steps + 1, 2, 3), np.uint8),
            "mission": mission,
            "vec": np.arange(2 * (steps + 1), dtype=np.float32).reshape(steps + 1, 2),
        },
        actions=np.zeros(steps, np.int64),
        rewards=np.zeros(steps, np.float32),
        terminations=np.zeros(steps, bool),
        truncations=np.zeros(steps, bool),
        task=TaskSpec("toy/goto"),
        success=True,
        seed=0,
        demonstrator="test",
    )
    featurizer = ObservationFeaturizer.fit([episode])
    kinds = {s.name: s.kind for s in featurizer.specs}
    assert kinds == {"grid": "onehot", "mission": "tokens", "vec": "float"}
    features = featurizer.episode_features(episode)
    assert features.shape == (steps + 1, featurizer.dim)
    again = ObservationFeaturizer.from_json(featurizer.to_json())
    np.testing.assert_array_equal(again.episode_features(episode), features)
    # a word never seen in training still changes the features
    later = dict(episode.observations)
    words = mission.copy()
    words[:, 3] = 30
    later["mission"] = words
    assert not np.array_equal(featurizer.transform(later), features)
