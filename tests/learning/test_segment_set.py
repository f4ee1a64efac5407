"""SegmentSet keeps grid-world features as bytes and gives them back as exact floats."""

from __future__ import annotations

import numpy as np

from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.segment_set import SegmentSet
from skillbank.types import Episode, TaskSpec


def _episode(steps: int, *, seed: int, vec: bool = False, tokens: int = 20) -> Episode:
    rng = np.random.default_rng(seed)
    mission = np.zeros((steps + 1, tokens), np.int64)
    mission[:, :4] = [5, 6, 6, 7]  # a repeated word: its bag count is 2
    observations = {
        "image": rng.integers(0, 11, (steps + 1, 3, 3, 2)).astype(np.uint8),
        "seen": rng.random((steps + 1, 4)) < 0.5,
        "mission": mission,
    }
    if vec:
        observations["vec"] = rng.normal(size=(steps + 1, 2)).astype(np.float32)
    return Episode(
        observations=observations,
        actions=rng.integers(0, 3, steps),
        rewards=np.zeros(steps, np.float32),
        terminations=np.zeros(steps, bool),
        truncations=np.zeros(steps, bool),
        task=TaskSpec("toy/goto"),
        success=True,
        seed=seed,
        demonstrator="test",
    )


def _built(episodes: list[Episode]) -> tuple[SegmentSet, ObservationFeaturizer]:
    featurizer = ObservationFeaturizer.fit(episodes)
    boundaries = [[0, 3] for _ in episodes]
    return SegmentSet.build(episodes, boundaries, featurizer), featurizer


def test_grid_world_features_are_stored_as_bytes_and_read_back_exactly() -> None:
    episodes = [_episode(6, seed=0), _episode(8, seed=1)]
    segments, featurizer = _built(episodes)
    assert featurizer.storage_dtype is np.uint8
    assert all(f.dtype == np.uint8 for f in segments.features)
    dense = [featurizer.episode_features(e) for e in episodes]  # float32, the reference
    assert max(float(d.max()) for d in dense) == 2.0  # the bag count survives the bytes
    feats, acts, owner = segments.steps([0, 1, 2, 3])
    assert feats.dtype == np.float32
    np.testing.assert_array_equal(feats, np.concatenate([dense[0][:6], dense[1][:8]]))
    np.testing.assert_array_equal(acts, np.concatenate([e.actions for e in episodes]))
    assert owner.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 5
    compact, _, _ = segments.steps([3], compact=True)
    assert compact.dtype == np.uint8
    np.testing.assert_array_equal(compact, dense[1][3:8])
    np.testing.assert_array_equal(segments.step_actions([1, 3]), acts[np.isin(owner, [1, 3])])
    np.testing.assert_array_equal(
        segments.start_features(), np.stack([dense[0][0], dense[0][3], dense[1][0], dense[1][3]])
    )
    np.testing.assert_array_equal(segments.start_features([3]), dense[1][3:4])
    ends = segments.end_features([1, 3])
    np.testing.assert_array_equal(ends, np.stack([dense[0][6], dense[1][8]]))
    padded, _, mask = segments.padded([0, 3], 8)
    assert padded.dtype == np.float32 and mask.sum() == 3 + 5
    np.testing.assert_array_equal(padded[1, :5], dense[1][3:8])


def test_standardised_or_long_sequence_features_stay_float() -> None:
    with_floats, featurizer = _built([_episode(5, seed=2, vec=True)])
    assert featurizer.storage_dtype is np.float32
    assert with_floats.features[0].dtype == np.float32
    # a token sequence of 300 positions could count one word 300 times: no byte holds that
    long_words, featurizer = _built([_episode(5, seed=3, tokens=300)])
    assert featurizer.storage_dtype is np.float32
    assert long_words.features[0].dtype == np.float32
