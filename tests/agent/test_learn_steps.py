"""Scoring a learn call's segmentation dataset by dataset."""

from __future__ import annotations

import dataclasses

import numpy as np

from skillbank.agent.learn_steps import score_against_annotations, score_each_dataset
from skillbank.envs.toy import ToyDemonstrator


def test_each_dataset_is_scored_on_its_own_episodes_and_segments() -> None:
    goto = [ToyDemonstrator("goto").demonstrate(s) for s in range(3)]
    fetch = [ToyDemonstrator("fetch").demonstrate(s) for s in range(3)]
    bare = [dataclasses.replace(e, annotations=None) for e in goto[:2]]
    # interleaved owners: the grouping must follow owners, not order
    episodes = [goto[0], fetch[0], goto[1], fetch[1], goto[2], fetch[2], *bare]
    owners = [0, 1, 0, 1, 0, 1, 2, 2]
    # the annotations' own boundaries for goto (perfect), every step for fetch (over-cut)
    boundaries = [
        e.annotations.boundaries if owner == 0 and e.annotations else tuple(range(e.num_steps))
        for e, owner in zip(episodes, owners, strict=True)
    ]
    assignment = np.arange(sum(len(b) for b in boundaries), dtype=np.int64) % 3

    scores = score_each_dataset(episodes, boundaries, assignment, owners, 4)

    assert len(scores) == 4
    starts = np.cumsum([0, *(len(b) for b in boundaries)])
    for d in (0, 1):
        mine = [i for i, o in enumerate(owners) if o == d]
        expected = score_against_annotations(
            [episodes[i] for i in mine],
            [boundaries[i] for i in mine],
            np.concatenate([assignment[starts[i] : starts[i + 1]] for i in mine]),
        )
        assert scores[d] == expected
    assert scores[0][0] == 1.0  # goto cut at its subgoals
    f1 = scores[1][0]
    assert f1 is not None and f1 < 1.0  # fetch over-cut
    assert scores[2] == (None, None)  # no annotations: nothing to score
    assert scores[3] == (None, None)  # no episodes
