"""The explored map: dead reckoning from the agent's own views is exact, recorded and live maps
agree, the crop is oriented like the image, and the features read it as binary planes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("minigrid")

import gymnasium as gym

from skillbank.envs.babyai import BabyAIDemoSource
from skillbank.envs.grid_map import (
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
    obs, _ = env.reset(seed=episode.seed)
    live = [babyai_observation(obs)[MAP_KEY]]
    for action in episode.actions.tolist():
        obs, *_ = env.step(action)
        live.append(babyai_observation(obs)[MAP_KEY])
    assert np.array_equal(np.stack(live), maps)
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
