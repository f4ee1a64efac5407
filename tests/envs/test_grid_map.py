"""The explored map: dead reckoning from the agent's own views is exact, recorded and live maps
agree, the crop is oriented like the image, and the features read it as binary planes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

pytest.importorskip("minigrid")

import gymnasium as gym

from skillbank.envs.babyai import BabyAIDemoSource
from skillbank.envs.grid_map import (
    COARSE_MAP_KEY,
    COARSE_MAP_PLANES,
    COARSE_SCALE,
    MAP_KEY,
    MAP_PLANES,
    GridMap,
    GridMapWrapper,
    episode_with_map,
)
from skillbank.envs.rollout import babyai_env_factory, babyai_observation
from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.segment_set import grid_slices

RADIUS = 6
SIDE = 2 * RADIUS + 1


@pytest.fixture(scope="module")
def boss_episodes() -> list:
    source = BabyAIDemoSource("BossLevel")
    episodes = [source.demonstrate(seed) for seed in range(4)]
    return [e for e in episodes if e is not None]


def test_dead_reckoning_follows_the_simulator_and_maps_its_walls(boss_episodes: list) -> None:
    for episode in boss_episodes:
        env = gym.make("BabyAI-BossLevel-v0", disable_env_checker=True).unwrapped
        obs, _ = env.reset(seed=episode.seed)
        grid_map = GridMap(RADIUS)
        grid_map.reset(obs["image"], obs["direction"])
        # the map's frame starts at the agent's first position
        offset = np.asarray(env.agent_pos) - grid_map.extent // 2
        for action in episode.actions.tolist():
            obs, *_ = env.step(action)
            grid_map.step(action, obs["image"], obs["direction"])
            assert tuple(grid_map._position + offset) == tuple(env.agent_pos)
        truth = env.grid.encode()  # (W, H, 3)
        seen = np.argwhere(grid_map._cells[..., 0] != 0)
        walls = [tuple(c) for c in seen if grid_map._cells[tuple(c)][0] == 2]
        assert len(walls) > 20
        for x, y in walls:  # walls never move: every one mapped is where the simulator has it
            assert truth[x + offset[0], y + offset[1], 0] == 2


def _live(env: Any, episode: Any, key: str) -> np.ndarray:
    """Entry ``key`` of every observation of ``env`` replaying ``episode``'s actions."""
    obs, _ = env.reset(seed=episode.seed)
    live = [babyai_observation(obs)[key]]
    for action in episode.actions.tolist():
        obs, *_ = env.step(action)
        live.append(babyai_observation(obs)[key])
    return np.stack(live)


def test_recorded_and_live_maps_agree(boss_episodes: list) -> None:
    episode = episode_with_map(boss_episodes[0], RADIUS)
    recorded = BabyAIDemoSource("BossLevel", map_radius=RADIUS).demonstrate(episode.seed)
    assert recorded is not None
    assert np.array_equal(recorded.observations[MAP_KEY], episode.observations[MAP_KEY])
    maps = episode.observations[MAP_KEY]
    assert maps.shape == (episode.num_steps + 1, SIDE, SIDE, len(MAP_PLANES))
    assert maps.dtype == np.bool_
    plain, _ = babyai_env_factory("BossLevel")(0).reset(seed=episode.seed)
    assert MAP_KEY not in plain  # only environments asked for the map pay for it
    env = babyai_env_factory("BossLevel", map_radius=RADIUS)(0)
    assert np.array_equal(_live(env, episode, MAP_KEY), maps)
    # the map remembers: by the end more cells are seen than one 7x7 view holds
    assert maps[-1][..., MAP_PLANES.index("seen")].sum() > 49


def test_crop_is_oriented_like_the_image(boss_episodes: list) -> None:
    episode = episode_with_map(boss_episodes[0], RADIUS)
    images, maps = episode.observations["image"], episode.observations[MAP_KEY]
    wall, seen = MAP_PLANES.index("wall"), MAP_PLANES.index("seen")
    visited = MAP_PLANES.index("visited")
    for image, grid in zip(images, maps, strict=True):
        # image[3, 6] is the agent, image[i, j] lies 6 - j ahead and i - 3 to the right; the
        # crop centres the agent at [R, R] with the same axes
        assert grid[RADIUS, RADIUS, visited]
        for i in range(7):
            for j in range(7):
                cell = grid[RADIUS + i - 3, RADIUS - (6 - j)]
                if image[i, j, 0] == 0:
                    continue
                assert cell[seen]
                assert cell[wall] == (image[i, j, 0] == 2)


def test_coarse_view_summarises_squares_of_the_map_around_the_agent(boss_episodes: list) -> None:
    coarse_radius = 2  # a 5 x 5 coarse view of 15 x 15 map cells, reachable by the fine crop
    episode = episode_with_map(boss_episodes[0], 7, coarse_radius)
    fine, coarse = episode.observations[MAP_KEY], episode.observations[COARSE_MAP_KEY]
    side = 2 * coarse_radius + 1
    assert coarse.shape == (episode.num_steps + 1, side, side, len(COARSE_MAP_PLANES))
    assert coarse.dtype == np.bool_
    # the fine crop (radius 7) covers the coarse view's 15 x 15 cells at its centre: each coarse
    # cell is the any / all of its 3 x 3 square
    lo = 7 - (COARSE_SCALE * side) // 2
    window = fine[:, lo : lo + COARSE_SCALE * side, lo : lo + COARSE_SCALE * side]
    blocks = window.reshape(len(fine), side, COARSE_SCALE, side, COARSE_SCALE, -1)
    assert np.array_equal(coarse[..., 1:], blocks.any(axis=(2, 4)))
    assert np.array_equal(coarse[..., 0], blocks[..., 0].all(axis=(2, 4)))
    # the agent stands in the centre cell, and by the end some whole squares have been seen
    visited = 1 + MAP_PLANES.index("visited")
    assert coarse[:, coarse_radius, coarse_radius, visited].all()
    assert coarse[-1][..., 0].sum() > 0
    # live environments give the same views, and only when asked
    env = babyai_env_factory("BossLevel", map_radius=7, coarse_radius=coarse_radius)(0)
    assert np.array_equal(_live(env, episode, COARSE_MAP_KEY), coarse)
    assert COARSE_MAP_KEY not in episode_with_map(boss_episodes[0], 7).observations
    with pytest.raises(ValueError, match="coarse_radius"):
        GridMap(7).coarse_crop()
    with pytest.raises(ValueError, match="coarse_radius"):
        GridMap(6, coarse_radius=30, extent=64)


def test_a_map_needs_a_minigrid_episode_and_a_reset(boss_episodes: list) -> None:
    with pytest.raises(ValueError, match="image"):
        episode_with_map(dataclasses.replace(boss_episodes[0], actions=None))
    with pytest.raises(RuntimeError, match="reset"):
        GridMap().step(2, np.zeros((7, 7, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="MiniGrid image"):
        GridMap().reset(np.zeros((5, 5, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="radius"):
        GridMap(radius=40, extent=64)


def test_features_read_the_map_as_binary_planes(boss_episodes: list) -> None:
    episodes = [episode_with_map(e, RADIUS) for e in boss_episodes]
    featurizer = ObservationFeaturizer.fit(episodes)
    spec = next(s for s in featurizer.specs if s.name == MAP_KEY)
    assert spec.kind == "binary" and spec.dim == SIDE * SIDE * len(MAP_PLANES)
    features = featurizer.episode_features(episodes[0])
    grids = grid_slices(featurizer)
    image_grid, map_grid = grids  # sorted entries: "image" before "map"
    assert image_grid.groups and not map_grid.groups
    assert (map_grid.height, map_grid.width, map_grid.channels) == (SIDE, SIDE, len(MAP_PLANES))
    raw = episodes[0].observations[MAP_KEY].reshape(len(features), -1)
    block = features[:, map_grid.offset : map_grid.offset + map_grid.size]
    assert np.array_equal(block, raw.astype(np.float32))
    # the wrapper's environments serve memories learned without a map too: extra keys are ignored
    plain = ObservationFeaturizer.fit(boss_episodes)
    assert all(s.name != MAP_KEY for s in plain.specs)
    env = GridMapWrapper(gym.make("BabyAI-GoToLocal-v0", disable_env_checker=True))
    obs, _ = env.reset(seed=3)
    batch = {k: v[None] for k, v in babyai_observation(obs).items()}
    assert plain.transform(batch).shape == (1, plain.dim)
