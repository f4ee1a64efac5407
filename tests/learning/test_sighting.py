"""First-sighting cuts: a segment ending at an entity restarts where the entity was first seen."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest

from skillbank.envs.toy import ToyDemonstrator
from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.segment import OptionHMMSegmenter, SegmenterConfig
from skillbank.learning.segment_set import grid_slices
from skillbank.learning.sighting import (
    approach_steps,
    background_content,
    first_sighting_cuts,
    grid_cells,
    interaction_cell,
    inventory_cell,
)
from skillbank.types import Episode, TaskSpec

FORWARD, TURN, PICKUP = 0, 1, 2
FLOOR, WALL, BALL = 1, 2, 5
FRONT, AGENT = 4, 7  # row-major cells of the 3x3 view: the agent sits at the bottom middle


def grid_episode(seed: int, num_steps: int, sighted: int | None) -> Episode:
    """An egocentric 3x3 view (type, colour) of a walk that ends picking up a red ball.

    Moves reshuffle floor and wall in every cell but the agent's own (it shows what the agent
    carries). The ball enters the view at step ``sighted`` (``None``: visible from the start),
    stays in a corner cell, lies in front at the last observation before the pick-up, and sits
    in the agent's cell after it.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((num_steps + 1, 3, 3, 2), np.uint8)  # (T+1, H, W, C)
    images[..., 0] = rng.choice([FLOOR, WALL], size=(num_steps + 1, 3, 3))
    images[:, 2, 1] = (FLOOR, 0)  # the agent's own cell: carrying nothing
    first = 0 if sighted is None else sighted
    images[first : num_steps - 2, 0, 0] = (BALL, 3)
    images[num_steps - 2, 0, 1] = (BALL, 3)
    images[num_steps - 1, 1, 1] = (BALL, 3)  # in front, just before the pick-up
    images[num_steps, 1, 1] = (FLOOR, 0)
    images[num_steps, 2, 1] = (BALL, 3)  # carried
    actions = rng.choice([FORWARD, TURN], size=num_steps)
    actions[-1] = PICKUP
    return Episode(
        observations={"image": images, "direction": rng.integers(0, 4, num_steps + 1)},
        actions=actions.astype(np.int64),
        rewards=np.zeros(num_steps, np.float32),
        terminations=np.eye(num_steps, dtype=np.bool_)[-1],
        truncations=np.zeros(num_steps, np.bool_),
        task=TaskSpec("test/grid"),
        success=True,
        seed=seed,
        demonstrator="test",
    )


def cells_of(episodes: list[Episode]) -> list[npt.NDArray[np.bool_]]:
    featurizer = ObservationFeaturizer.fit(episodes)
    (grid,) = grid_slices(featurizer)
    return [grid_cells(featurizer.episode_features(e), grid) for e in episodes]


def test_interaction_cell_is_the_front_cell_not_the_inventory() -> None:
    episodes = [grid_episode(seed, 14, 5) for seed in range(6)]
    events = [np.asarray(e.actions) == PICKUP for e in episodes]
    # the pick-up changes the front cell and the agent's own cell alike; only the front cell
    # is also changed by moves
    assert interaction_cell(cells_of(episodes), events) == FRONT
    assert interaction_cell(cells_of(episodes), [np.zeros_like(v) for v in events]) is None


def test_inventory_cell_is_the_cell_only_interactions_change() -> None:
    episodes = [grid_episode(seed, 14, 5) for seed in range(6)]
    events = [np.asarray(e.actions) == PICKUP for e in episodes]
    assert inventory_cell(cells_of(episodes), events) == AGENT
    assert inventory_cell(cells_of(episodes), [np.zeros_like(v) for v in events]) is None
    assert inventory_cell(cells_of(episodes), [np.ones_like(v) for v in events]) is None
    assert inventory_cell([], []) is None


def test_cut_at_the_first_sighting_step() -> None:
    episodes = [grid_episode(0, 14, 6), grid_episode(1, 14, None), grid_episode(2, 14, 1)]
    cells = cells_of(episodes)
    cuts = first_sighting_cuts(cells, [(0, 13)] * 3, FRONT, max_detour=None)
    assert cuts[0] == (0, 6, 13)  # the ball first shows in observation 6
    assert cuts[1] == (0, 13)  # visible from the start: no cut
    assert cuts[2] == (0, 1, 13)
    two = first_sighting_cuts(cells, [(0, 13)] * 3, FRONT, min_offset=2, max_detour=None)
    assert two[2] == (0, 13)
    # the pick-up segment ends at the episode's last observation, where the front is floor
    # (visible from the start): no cut there
    assert first_sighting_cuts(cells, [(0,)] * 3, FRONT, max_detour=None)[1] == (0,)
    with pytest.raises(ValueError, match="cell 9 outside"):
        first_sighting_cuts(cells, [(0, 13)] * 3, 9)


def test_a_sighting_followed_by_a_detour_is_no_cut() -> None:
    # the ball shows in the corner 2, 2, 3 and 9 steps before it lies in front (observation 13)
    episodes = [grid_episode(seed, 14, first) for seed, first in enumerate((11, 11, 10, 4))]
    cells = cells_of(episodes)
    fewest = approach_steps(cells, [(0, 13)] * 4, FRONT)
    assert fewest[[0, 1, FRONT]].tolist() == [2, 1, 0]  # corner, top middle, front
    assert np.isinf(fewest[5])  # never seen there
    cuts = first_sighting_cuts(cells, [(0, 13)] * 4, FRONT, max_detour=1)
    assert cuts == [(0, 11, 13), (0, 11, 13), (0, 10, 13), (0, 13)]  # 9 > 2 + 1: a detour
    assert first_sighting_cuts(cells, [(0, 13)] * 4, FRONT, max_detour=None)[3] == (0, 4, 13)
    with pytest.raises(ValueError, match="max_detour"):
        first_sighting_cuts(cells, [(0, 13)] * 4, FRONT, max_detour=-1)


def test_segmenter_cuts_grid_episodes_at_first_sighting() -> None:
    lengths = list(range(12, 24))
    # seen 3 or 4 steps before the pick-up (direct), from the start (None), or 9 before (detour)
    sighted = [n - 3 - n % 2 for n in lengths[:-2]] + [None, lengths[-1] - 9]
    episodes = [
        grid_episode(s, n, f) for s, (n, f) in enumerate(zip(lengths, sighted, strict=True))
    ]
    on = SegmenterConfig(seed=0, first_sighting=True)
    segment = OptionHMMSegmenter(on).segment
    off = OptionHMMSegmenter(SegmenterConfig(seed=0)).segment  # off by default
    no_check = OptionHMMSegmenter(dataclasses.replace(on, sighting_max_detour=-1)).segment
    assert off(episodes) == [(0, n - 1) for n in lengths]  # moves, then the pick-up
    direct = [(0, f, n - 1) for n, f in zip(lengths[:-2], sighted[:-2], strict=True)]
    assert segment(episodes) == [*direct, (0, lengths[-2] - 1), (0, lengths[-1] - 1)]
    assert no_check(episodes)[-1] == (0, lengths[-1] - 9, lengths[-1] - 1)
    # annotations are never read: the episodes have none
    assert all(e.annotations is None for e in episodes)


def test_vector_worlds_are_unaffected() -> None:
    episodes = [ToyDemonstrator(task).demonstrate(seed) for task in ("fetch",) for seed in range(8)]
    on = OptionHMMSegmenter(SegmenterConfig(seed=0, first_sighting=True))
    off = OptionHMMSegmenter(SegmenterConfig(seed=0, first_sighting=False))
    assert on.segment(episodes) == off.segment(episodes)


def test_config_rejects_a_zero_offset() -> None:
    with pytest.raises(ValueError, match="sighting_min_offset"):
        SegmenterConfig(sighting_min_offset=0)
    assert dataclasses.replace(SegmenterConfig(), sighting_min_offset=2).sighting_min_offset == 2


def test_background_is_the_most_frequent_content() -> None:
    eye = np.eye(3, dtype=bool)
    cells = eye[[[0, 1, 1], [2, 1, 0]]]  # (2, 3, C): content 1 three times
    np.testing.assert_array_equal(background_content(cells), eye[1])
    assert background_content(np.zeros((0, 4, 3), bool)) is None
