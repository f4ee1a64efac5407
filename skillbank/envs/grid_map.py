"""An explored-map observation for MiniGrid/BabyAI agents, built from their own views and moves.

A BabyAI agent sees a 7x7 egocentric window. Levels such as BossLevel spread the objects of a
mission over nine rooms, and the bot that demonstrates them keeps a map of every cell it has seen;
a policy that reads only its current window cannot know which rooms it has searched, and walks
room to room until time runs out (measured: most of the agent's BossLevel failures). This module
gives the agent the same kind of memory as an observation entry, ``"map"``.

The map is built by dead reckoning from what the agent itself observes, never from the
simulator's state: it starts at the agent's first position, writes every cell of each view
into a grid anchored there, and moves the agent's position when it steps forward into a cell its
previous view showed passable (empty, floor, goal, lava or an open door: MiniGrid's own rule, so
the reckoning is exact). Turning changes the heading the observation reports. The same
:class:`GridMap` serves recorded demonstrations (:func:`episode_with_map`) and live environments
(:class:`GridMapWrapper`), so training and acting read identical maps.

The ``"map"`` entry is an egocentric crop of the explored map, (S, S, P) bool with S = 2R + 1
(radius R, default 6) centred on the agent and turned so that the agent faces the crop's "up",
the image's own convention (``crop[i, j]``: i to the agent's right, j backwards). Its P = 17
planes (:data:`MAP_PLANES`): seen; wall, door, key, ball, box, goal, lava (the last sight of
the cell); door closed, door locked; red, green, blue, purple, yellow, grey (of a door or object);
visited (the agent stood there). Cells never seen are all zero.

Demonstrations record it on request (``skillbank demos collect --map``, ``skillbank bench babyai
--map``). With the ``@hindsight`` settings, whose skills read it (``skill.read_history``), it is a
gain on the composite levels: the twelve small-budget levels' 4,000 demos in one call, seeds
0-3, 256 unseen episodes, BossLevel 0.590/0.520/0.480/0.508 vs 0.508/0.496/0.449/0.445 without,
SynthSeq 0.541 vs 0.485 and GoToSeq 0.778 vs 0.734 (means), the put levels 0.04-0.05 down
(README). Read by the controller alone it gave nothing (seed 0, BossLevel 0.512 vs 0.508).
With the first three hindsight switches only, no arrangement beat no map: the six benchmark
levels (GoToLocal, PickupLoc, Open, PutNextLocal, GoTo, BossLevel; 2,500 bot demos) learned in
one call, 256 unseen episodes, seeds 0/1, PutNextLocal / GoTo / BossLevel success:

- no map: 0.449/0.375, 0.906/0.848, 0.465/0.418;
- map read by everything: 0.172/0.273, 0.930/0.949, 0.398/0.453 (and the skill encoder, reading
  it, clusters 2-3 skills instead of 4-8, purity 0.65-0.73 instead of 0.85, so it never does:
  :data:`~skillbank.types.HISTORY_ENTRIES`);
- skills and controller read it: 0.340/0.160, 0.914/0.781, 0.406/0.348;
- the controller alone (the default once recorded): 0.336/0.176, 0.918/0.762, 0.402/0.371;
- the controller alone, a 9x9 crop of six planes (seen, wall, door, closed, locked, visited):
  0.426/0.246, 0.895/0.793, 0.457/0.418.

Flat BC gains from it (its LSTM already remembers): see the README.

The coarse view (``coarse_radius``, ``"map_coarse"``: each cell the any / all of a 3 x 3 square
of the map, so a radius of 5 spans 33 x 33 cells, the whole of a BabyAI 3 x 3-room level from
anywhere) is there for what the crop cannot show: in 30 failed BossLevel episodes of the map
recipe (seed 3), at 43% of the steps the nearest seen cell beside an unseen one lay beyond the
13 x 13 crop. Not a gain: the twelve small-budget levels' 4,000 demos with both views, learned in
one call with ``@hindsight`` (the same skills found), 256 unseen episodes, seed 0: BossLevel
0.520 vs 0.590 with the crop alone, GoToSeq 0.777 vs 0.801, SynthSeq 0.547 vs 0.586, Pickup
0.969 vs 0.965, PutNext 0.965 vs 0.957, PutNextLocal 0.926 vs 0.914; seed 3: BossLevel 0.500 vs
0.508; learning took 1.4x the CPU. The failed episodes' walks were as blind as before (44% of
their steps in 64-step walks never seeing their target, 43% without it). No recording or
benchmark switch asks for it; :func:`episode_with_map` and :class:`GridMapWrapper` take
``coarse_radius``, and evaluation adds it for a memory that reads it.

Example:
    >>> env = GridMapWrapper(gym.make("BabyAI-GoTo-v0"))  # doctest: +SKIP
    >>> obs, _ = env.reset(seed=0); obs["map"].shape  # doctest: +SKIP
    (13, 13, 17)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from skillbank.types import COARSE_MAP_KEY, MAP_KEY, Episode

__all__ = [
    "COARSE_MAP_KEY",
    "COARSE_MAP_PLANES",
    "COARSE_SCALE",
    "DEFAULT_MAP_RADIUS",
    "MAP_KEY",
    "MAP_PLANES",
    "GridMap",
    "GridMapWrapper",
    "episode_with_map",
    "replay",
]

DEFAULT_MAP_RADIUS = 6
"""R: the crop spans 2R + 1 = 13 cells, the agent's room and the cells beyond its doors."""

# MiniGrid's encoding (minigrid.core.constants, 3.x): object ids, door states, colours, actions.
_UNSEEN, _EMPTY, _WALL, _FLOOR, _DOOR, _KEY, _BALL, _BOX, _GOAL, _LAVA = range(10)
_OPEN, _CLOSED, _LOCKED = 0, 1, 2
_NUM_COLOURS = 6
_FORWARD = 2
_DIR_TO_VEC = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], np.int64)  # right, down, left, up
_PASSABLE = (_EMPTY, _FLOOR, _GOAL, _LAVA)

_TYPE_PLANES = (_WALL, _DOOR, _KEY, _BALL, _BOX, _GOAL, _LAVA)
MAP_PLANES: tuple[str, ...] = (
    "seen",
    *("wall", "door", "key", "ball", "box", "goal", "lava"),
    *("door_closed", "door_locked"),
    *("red", "green", "blue", "purple", "yellow", "grey"),
    "visited",
)
"""Names of the map's planes, in order (see the module docstring)."""

COARSE_SCALE = 3
"""Side of the square of map cells one cell of the coarse view (``"map_coarse"``) summarises."""

COARSE_MAP_PLANES: tuple[str, ...] = ("seen_all", *MAP_PLANES)
"""The coarse view's planes: every cell of the square seen, then each of :data:`MAP_PLANES` in
any cell of it (``"seen"``: some cell seen)."""


def _offsets(forward: npt.NDArray[np.int64], rows: int, ahead: int, half: int) -> Any:
    """World offsets (x, y) of an egocentric window's cells ``[i, j]`` for one heading.

    Cell ``[i, j]`` lies ``ahead - j`` cells forward and ``i - half`` cells to the right.
    """
    right = np.array([-forward[1], forward[0]], np.int64)
    i, j = np.meshgrid(np.arange(rows), np.arange(rows), indexing="ij")  # (rows, rows)
    return (ahead - j)[..., None] * forward + (i - half)[..., None] * right  # (rows, rows, 2)


class GridMap:
    """The explored map of one episode, in the agent's own dead-reckoned frame.

    Args:
        radius: R of the egocentric crop (S = 2R + 1 cells a side).
        coarse_radius: Rc of the coarse view (:meth:`coarse_crop`: 2Rc + 1 cells a side, each
            summarising :data:`COARSE_SCALE` x :data:`COARSE_SCALE` map cells, the agent in the
            centre cell's centre); ``None``: none.
        view: Side of the agent's view (MiniGrid's ``agent_view_size``, 7 in BabyAI).
        extent: Side of the stored map; the agent starts at its centre. Cells beyond it are
            neither stored nor shown (a MiniGrid level of side G needs extent >= 2G).
    """

    def __init__(
        self,
        radius: int = DEFAULT_MAP_RADIUS,
        *,
        coarse_radius: int | None = None,
        view: int = 7,
        extent: int = 64,
    ):
        reach = radius if coarse_radius is None else max(radius, COARSE_SCALE * coarse_radius + 1)
        if (
            radius < 0
            or (coarse_radius is not None and coarse_radius < 0)
            or view < 1
            or view % 2 == 0
            or extent < 2 * reach + 1
        ):
            raise ValueError(
                f"GridMap needs radius >= 0, coarse_radius >= 0 or None, an odd view and an "
                f"extent holding both crops; got radius={radius}, coarse_radius={coarse_radius}, "
                f"view={view}, extent={extent}"
            )
        self.radius, self.coarse_radius, self.view, self.extent = (
            radius,
            coarse_radius,
            view,
            extent,
        )
        self._view_offsets = [_offsets(f, view, view - 1, view // 2) for f in _DIR_TO_VEC]
        self._crop_offsets = [_offsets(f, 2 * radius + 1, radius, radius) for f in _DIR_TO_VEC]
        self._coarse_offsets = []
        if coarse_radius is not None:
            half = COARSE_SCALE * coarse_radius + COARSE_SCALE // 2
            side = COARSE_SCALE * (2 * coarse_radius + 1)
            self._coarse_offsets = [_offsets(f, side, half, half) for f in _DIR_TO_VEC]
        self._cells = np.zeros((extent, extent, 3), np.uint8)  # last sight: type, colour, state
        self._visited = np.zeros((extent, extent), np.bool_)
        self._position = np.array([extent // 2, extent // 2], np.int64)
        self._last_image: npt.NDArray[np.uint8] | None = None
        self._last_direction = 0

    def reset(self, image: npt.ArrayLike, direction: int) -> npt.NDArray[np.bool_]:
        """Start a new episode at its first observation; return its map (S, S, P)."""
        self._cells[:] = 0
        self._visited[:] = False
        self._position[:] = self.extent // 2
        return self._observe(image, direction)

    def step(self, action: int, image: npt.ArrayLike, direction: int) -> npt.NDArray[np.bool_]:
        """The agent took ``action`` and now sees ``image`` heading ``direction``: the new map."""
        if self._last_image is None:
            raise RuntimeError("GridMap.step before GridMap.reset")
        if int(action) == _FORWARD:
            half = self.view // 2
            front = self._last_image[half, self.view - 2]  # the cell right ahead
            door_open = front[0] == _DOOR and front[2] == _OPEN
            if front[0] in _PASSABLE or door_open:
                self._position += _DIR_TO_VEC[self._last_direction]
        return self._observe(image, direction)

    def _observe(self, image: npt.ArrayLike, direction: int) -> npt.NDArray[np.bool_]:
        view = np.asarray(image, np.uint8)
        if view.shape != (self.view, self.view, 3):
            raise ValueError(
                f"GridMap expects a ({self.view}, {self.view}, 3) MiniGrid image, got {view.shape}"
            )
        direction = int(direction) % 4
        world = self._position + self._view_offsets[direction]  # (V, V, 2)
        inside = ((world >= 0) & (world < self.extent)).all(-1) & (view[..., 0] != _UNSEEN)
        x, y = world[inside].T
        self._cells[x, y] = view[inside]
        px, py = self._position
        if 0 <= px < self.extent and 0 <= py < self.extent:
            self._cells[px, py] = (_EMPTY, 0, 0)  # the view shows what the agent carries here
            self._visited[px, py] = True
        self._last_image, self._last_direction = view, direction
        return self.crop()

    @property
    def pose(self) -> tuple[int, int, int]:
        """The agent's dead-reckoned (x, y, heading) in the map's frame (heading: MiniGrid's)."""
        x, y = self._position.tolist()
        return int(x), int(y), self._last_direction

    def passable(self) -> npt.NDArray[np.bool_]:
        """(extent, extent) cells the agent has seen it could step into (never unseen ones)."""
        kind, state = self._cells[..., 0], self._cells[..., 2]
        walkable = np.isin(kind, (_EMPTY, _FLOOR, _GOAL)) | ((kind == _DOOR) & (state == _OPEN))
        out: npt.NDArray[np.bool_] = walkable | self._visited
        return out

    def crop(self) -> npt.NDArray[np.bool_]:
        """The egocentric crop of the map around the agent: (S, S, P) bool."""
        return self._planes(self._position + self._crop_offsets[self._last_direction])

    def coarse_crop(self) -> npt.NDArray[np.bool_]:
        """The coarse egocentric view around the agent: (Sc, Sc, 1 + P) bool, Sc = 2Rc + 1
        (:data:`COARSE_MAP_PLANES`), oriented as :meth:`crop`.

        Raises:
            ValueError: The map was made without a ``coarse_radius``.
        """
        if self.coarse_radius is None:
            raise ValueError("GridMap.coarse_crop needs a GridMap made with coarse_radius")
        fine = self._planes(self._position + self._coarse_offsets[self._last_direction])
        side, k = 2 * self.coarse_radius + 1, COARSE_SCALE
        blocks = fine.reshape(side, k, side, k, fine.shape[-1])
        seen_all = np.asarray(blocks[..., 0].all(axis=(1, 3)))
        anywhere = np.asarray(blocks.any(axis=(1, 3)))
        return np.concatenate([seen_all[..., None], anywhere], axis=-1)

    def _planes(self, world: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """The planes (:data:`MAP_PLANES`) of the map cells at ``world`` (H, W, 2): (H, W, P)."""
        inside = np.asarray(((world >= 0) & (world < self.extent)).all(-1))
        x, y = np.clip(world, 0, self.extent - 1).transpose(2, 0, 1)
        cells = np.where(inside[..., None], self._cells[x, y], 0)  # (S, S, 3)
        visited = inside & self._visited[x, y]
        kind, colour, state = cells[..., 0], cells[..., 1], cells[..., 2]
        coloured = (kind >= _DOOR) & (kind <= _BOX)
        planes = [kind != _UNSEEN]
        planes += [kind == t for t in _TYPE_PLANES]
        planes += [(kind == _DOOR) & (state == _CLOSED), (kind == _DOOR) & (state == _LOCKED)]
        planes += [coloured & (colour == c) for c in range(_NUM_COLOURS)]
        planes.append(visited)
        return np.stack(planes, axis=-1)


def replay(episode: Episode, grid_map: GridMap) -> Iterator[int]:
    """Feed an episode's views and moves to ``grid_map``; yield each step t (0..T) once seen.

    Between yields, ``grid_map`` holds the map, pose and crop after observation t.

    Raises:
        ValueError: If the episode has no ``"image"``/``"direction"`` entries or no actions.
    """
    obs = episode.observations
    if "image" not in obs or "direction" not in obs or episode.actions is None:
        raise ValueError(
            "a map needs an episode with 'image' and 'direction' observations and actions "
            "(a MiniGrid/BabyAI demonstration)"
        )
    images, directions = np.asarray(obs["image"]), np.asarray(obs["direction"])
    grid_map.reset(images[0], int(directions[0]))
    yield 0
    for t, action in enumerate(np.asarray(episode.actions).tolist()):
        grid_map.step(int(action), images[t + 1], int(directions[t + 1]))
        yield t + 1


def episode_with_map(
    episode: Episode, radius: int = DEFAULT_MAP_RADIUS, coarse_radius: int | None = None
) -> Episode:
    """``episode`` with a ``"map"`` observation (T+1, S, S, P) rebuilt from its views and moves
    (and ``"map_coarse"``, (T+1, Sc, Sc, 1 + P), with ``coarse_radius``).

    Raises:
        ValueError: If the episode has no ``"image"``/``"direction"`` entries or no actions.
    """
    view = (
        np.asarray(episode.observations["image"]).shape[1] if "image" in episode.observations else 7
    )
    grid_map = GridMap(radius, coarse_radius=coarse_radius, view=view)
    maps, coarse = [], []
    for _ in replay(episode, grid_map):
        maps.append(grid_map.crop())
        if coarse_radius is not None:
            coarse.append(grid_map.coarse_crop())
    added = {MAP_KEY: np.stack(maps)}
    if coarse:
        added[COARSE_MAP_KEY] = np.stack(coarse)
    return dataclasses.replace(episode, observations={**episode.observations, **added})


class GridMapWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Adds the explored map (``"map"``) to every observation of a MiniGrid environment.

    Args:
        env: A MiniGrid/BabyAI environment with dict observations holding ``"image"`` and
            ``"direction"``.
        radius: R of the crop.
        coarse_radius: Rc of the coarse view, added as ``"map_coarse"``; ``None``: none.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        radius: int = DEFAULT_MAP_RADIUS,
        coarse_radius: int | None = None,
    ) -> None:
        super().__init__(env)
        view = int(getattr(env.unwrapped, "agent_view_size", 7))
        self._map = GridMap(radius, coarse_radius=coarse_radius, view=view)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._with_map(obs, self._map.reset(obs["image"], obs["direction"])), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        grid = self._map.step(int(action), obs["image"], obs["direction"])
        return self._with_map(obs, grid), reward, terminated, truncated, info

    def _with_map(self, obs: dict[str, Any], grid: npt.NDArray[np.bool_]) -> dict[str, Any]:
        if self._map.coarse_radius is None:
            return {**obs, MAP_KEY: grid}
        return {**obs, MAP_KEY: grid, COARSE_MAP_KEY: self._map.coarse_crop()}
