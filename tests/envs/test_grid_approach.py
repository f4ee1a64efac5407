"""Approach cuts: move distances are exact on small grids, a detour before a direct walk is cut
where the walk begins, a direct walk is left whole, and the segmenter asks the family for them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from skillbank.envs.grid_approach import GridApproachProposer, approach_starts, cell_distances
from skillbank.envs.registry import boundary_proposer
from skillbank.interfaces import BoundaryProposer
from skillbank.types import Episode, TaskSpec


def test_cell_distances_count_steps_forward_and_go_round_walls() -> None:
    passable = np.ones((5, 3), np.bool_)
    passable[2, :2] = False  # a wall across x = 2 with a gap at y = 2
    dist = cell_distances(passable, (4, 0), max_steps=30)
    assert dist[4, 0] == 0 and dist[3, 0] == 1
    assert dist[0, 0] == 2 + 4 + 2  # down to the gap, across, back up
    assert dist[2, 0] == -1  # a wall cell is never stood on
    assert cell_distances(passable, (4, 0), max_steps=5)[0, 0] == -1


def _open_room_episode(actions: list[int]) -> Episode:
    """A synthetic 7x7 view of an empty room walked with ``actions`` (MiniGrid encodings)."""
    num_steps = len(actions)
    view = np.zeros((num_steps + 1, 7, 7, 3), np.uint8)
    view[..., 0] = 1  # every cell of the view empty: an open field
    direction = np.zeros(num_steps + 1, np.int64)
    heading = 0
    for t, action in enumerate(actions):
        heading = (heading + (-1 if action == 0 else 1 if action == 1 else 0)) % 4
        direction[t + 1] = heading
    return Episode(
        observations={"image": view, "direction": direction},
        actions=np.asarray(actions, np.int64),
        rewards=np.zeros(num_steps, np.float32),
        terminations=np.zeros(num_steps, np.bool_),
        truncations=np.zeros(num_steps, np.bool_),
        task=TaskSpec("babyai/GoToLocal", "go to the ball"),
        success=True,
        seed=0,
        demonstrator="test",
    )


def test_a_detour_then_a_direct_walk_is_cut_where_the_walk_begins() -> None:
    # right 2 (a detour that turns back), then left 5 and the pickup at step 11
    actions = [2, 2, 0, 0, 2, 2, 2, 2, 2, 1, 1, 3]
    episode = _open_room_episode(actions)
    starts = approach_starts(episode, (0, 11))
    # the walk back starts at the turn (step 2): from there every move is on a shortest path
    assert starts == (0, 2, 11)
    assert approach_starts(episode, (0, 11), min_offset=3) == (0, 11)


def test_a_direct_walk_and_non_grid_episodes_stay_whole() -> None:
    episode = _open_room_episode([2, 2, 2, 1, 2, 3])
    assert approach_starts(episode, (0, 5)) == (0, 5)
    no_views = dataclasses.replace(episode, observations={"obs": np.zeros((7, 2))})
    assert GridApproachProposer().propose(no_views, (0, 5)) == (0, 5)
    with pytest.raises(ValueError, match="min_offset"):
        GridApproachProposer(min_offset=0)


def test_the_family_decides_which_proposer_an_episode_gets() -> None:
    episode = _open_room_episode([2, 3])
    proposer = boundary_proposer(episode)
    assert isinstance(proposer, BoundaryProposer)
    toy = dataclasses.replace(episode, task=TaskSpec("toy/fetch"))
    assert boundary_proposer(toy) is None
