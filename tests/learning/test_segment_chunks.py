"""Branching-entropy cuts: a stereotyped opening routine is cut off from what follows it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from skillbank.envs.toy import ToyDemonstrator
from skillbank.learning.boundary_chunks import entropy_rise_cuts
from skillbank.learning.segment import OptionHMMSegmenter, SegmenterConfig

ROUTINE = [2, 2, 0, 2, 2, 2, 1]  # the same opening after every event (action 5)


def _episodes(num: int, seed: int) -> tuple[list[np.ndarray], list[tuple[int, ...]], list[int]]:
    rng = np.random.default_rng(seed)
    actions, starts, routine_ends = [], [], []
    for _ in range(num):
        tail = rng.integers(0, 3, size=int(rng.integers(4, 9))).tolist()
        acts = [2, 2, 5, *ROUTINE, *tail, 5]
        actions.append(np.asarray(acts))
        # segments: start | the event | routine + tail | the last event
        starts.append((0, 2, 3, len(acts) - 1))
        routine_ends.append(3 + len(ROUTINE))
    return actions, starts, routine_ends


def test_cuts_where_a_shared_routine_ends() -> None:
    actions, starts, routine_ends = _episodes(60, seed=0)
    cut = entropy_rise_cuts(actions, starts, min_rise=0.5, min_count=10)
    added = [sorted(set(c) - set(s)) for c, s in zip(cut, starts, strict=True)]
    assert all(a == [end] for a, end in zip(added, routine_ends, strict=True))


def test_rare_prefixes_are_not_trusted() -> None:
    actions, starts, _ = _episodes(5, seed=1)
    assert entropy_rise_cuts(actions, starts, min_rise=0.5, min_count=10) == starts


def test_rejects_bad_arguments() -> None:
    actions, starts, _ = _episodes(2, seed=0)
    with pytest.raises(ValueError, match="min_rise"):
        entropy_rise_cuts(actions, starts, min_rise=0.0)


def test_segmenter_with_chunks_keeps_its_cuts_and_reads_no_annotations() -> None:
    episodes = [ToyDemonstrator("fetch").demonstrate(seed) for seed in range(30)]
    plain = OptionHMMSegmenter(SegmenterConfig(seed=0)).segment(episodes)
    config = SegmenterConfig(seed=0, chunk_min_rise=0.3, chunk_min_count=3)
    chunked = OptionHMMSegmenter(config).segment(episodes)
    assert all(set(p) <= set(c) for p, c in zip(plain, chunked, strict=True))
    bare = [dataclasses.replace(e, annotations=None) for e in episodes]
    assert OptionHMMSegmenter(config).segment(bare) == chunked
    with pytest.raises(ValueError, match="chunk_min_rise"):
        SegmenterConfig(chunk_min_rise=-1.0)
