"""The option-HMM segmenter: unsupervised, deterministic, never reads annotations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from skillbank.envs.toy import ToyDemonstrator
from skillbank.learning.metrics import boundary_f1
from skillbank.learning.segment import OptionHMMSegmenter, SegmenterConfig, viterbi_switching


def test_viterbi_switches_only_when_it_pays() -> None:
    # option 1 explains steps 3..4 much better; a cost of 1 nat is worth paying, 20 is not
    emissions = np.zeros((1, 6, 2))
    emissions[0, :, 1] = -5.0
    emissions[0, 3:5] = [[-5.0, 0.0], [-5.0, 0.0]]
    assert viterbi_switching(emissions, [6], 1.0)[0].tolist() == [0, 0, 0, 1, 1, 0]
    assert viterbi_switching(emissions, [6], 20.0)[0].tolist() == [0] * 6


def test_segments_toy_demos_better_than_no_segmentation() -> None:
    episodes = [
        ToyDemonstrator(task).demonstrate(seed)
        for task in ("pickup", "fetch", "open-pickup")
        for seed in range(30)
    ]
    segments = OptionHMMSegmenter(SegmenterConfig(seed=0)).segment(episodes)
    assert all(s[0] == 0 and list(s) == sorted(set(s)) for s in segments)
    truth = [e.annotations.boundaries for e in episodes if e.annotations]
    assert boundary_f1(segments, truth).f1 > 0.95
    # annotations are never read: dropping them changes nothing
    bare = [dataclasses.replace(e, annotations=None) for e in episodes]
    assert OptionHMMSegmenter(SegmenterConfig(seed=0)).segment(bare) == segments


def test_policy_refinement_returns_valid_option_paths() -> None:
    from skillbank.learning.option_refine import refine_options

    episodes = [ToyDemonstrator("fetch").demonstrate(seed) for seed in range(8)]
    paths = [np.zeros(e.num_steps, np.int64) for e in episodes]
    paths[0][-1] = 1  # one step in a second option
    refined = refine_options(episodes, paths, switch_cost=2.0, iterations=1, epochs=1)
    assert [len(p) for p in refined] == [e.num_steps for e in episodes]
    assert all(p.min() >= 0 for p in refined)


def test_common_interactions_are_cut_by_their_effect() -> None:
    # toy pickup alone: the pick-up is ~15% of the steps, more than the expert's right turns (9%);
    # by share alone it is a move and the turns are interactions, by effect it is the other way
    episodes = [ToyDemonstrator("pickup").demonstrate(seed) for seed in range(40)]
    truth = [e.annotations.boundaries for e in episodes if e.annotations]
    by_effect = OptionHMMSegmenter(SegmenterConfig(seed=0)).segment(episodes)
    by_share = OptionHMMSegmenter(SegmenterConfig(seed=0, effect_similarity=0.0)).segment(episodes)
    assert boundary_f1(by_effect, truth).f1 == 1.0
    assert boundary_f1(by_share, truth).f1 < 0.5


def test_only_moves_gives_one_segment_per_episode() -> None:
    episodes = [ToyDemonstrator("goto").demonstrate(seed) for seed in range(20)]
    assert OptionHMMSegmenter(SegmenterConfig(seed=0)).segment(episodes) == [(0,)] * 20


def test_config_rejects_similarity_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="effect_similarity"):
        SegmenterConfig(effect_similarity=1.5)
    with pytest.raises(ValueError, match="move_similarity"):
        SegmenterConfig(move_similarity=-0.1)
