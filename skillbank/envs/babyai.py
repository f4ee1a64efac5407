"""BabyAI demonstrations from minigrid's ``BabyAIBot``, with the bot's subgoals as ground truth.

Any registered BabyAI level (``BabyAI-<Level>-v0``) can be demonstrated. The bot (Chevalier-Boisvert
et al., 2019, "BabyAI: A Platform to Study the Sample Efficiency of Grounded Language Learning")
keeps a stack of subgoals; the one on top when it picks an action is the subgoal that action
serves. Those subgoals become the episode's :class:`~skillbank.types.SubgoalAnnotation`, used only
to score segmentation.

Observations per episode (T steps):

- ``"image"``: (T+1, 7, 7, 3) uint8, the agent's egocentric view (object, colour, state ids).
- ``"direction"``: (T+1,) int64, the agent's heading (0 right, 1 down, 2 left, 3 up).
- ``"mission"``: (T+1, L) int64 token ids of the mission (constant over the episode), see
  :mod:`skillbank.envs.babyai_vocab`.
- ``"map"`` (with ``map_radius``): (T+1, S, S, P) bool, the explored map the agent has built from
  its own views and moves (:mod:`skillbank.envs.grid_map`; evaluation environments add the
  same map).

Actions are (T,) int64 minigrid action ids. Seeding: ``env.reset(seed=seed)`` fixes the level's
layout and mission, and the bot is deterministic, so one seed always gives the same bytes.

minigrid is imported lazily; without it :class:`BabyAIDemoSource` raises
:class:`~skillbank.errors.MissingExtraError`.

Example:
    >>> source = BabyAIDemoSource("GoToLocal")  # doctest: +SKIP
    >>> episode = source.demonstrate(seed=0)  # doctest: +SKIP
    >>> episode.observations["image"].shape  # doctest: +SKIP
    (9, 7, 7, 3)
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from typing import Any

import numpy as np

from skillbank.envs.babyai_vocab import MISSION_LEN, tokenize_mission
from skillbank.envs.grid_map import episode_with_map
from skillbank.envs.registry import babyai_levels, resolve_env_id
from skillbank.errors import EnvironmentNotFoundError
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec

__all__ = [
    "DEMONSTRATOR",
    "BabyAIDemoSource",
    "babyai_gym_id",
    "babyai_levels",
    "cell_object",
    "describe_cell",
]

logger = logging.getLogger(__name__)

DEMONSTRATOR = "babyai-bot"
"""The ``Episode.demonstrator`` of every BabyAI episode."""


def babyai_gym_id(level: str) -> str:
    """Turn a level name into its Gymnasium id (resolution lives in :mod:`skillbank.envs.registry`).

    Accepts ``"GoToLocal"``, ``"babyai/GoToLocal"`` or ``"BabyAI-GoToLocal-v0"``; levels registered
    under another version (``"GoToObjS6-v1"``) keep their suffix.

    Raises:
        EnvironmentNotFoundError: If no such level is registered (lists the closest names).
        MissingExtraError: If minigrid is not installed.
    """
    name = level.removeprefix("babyai/")
    spec = resolve_env_id(name if name.startswith("BabyAI-") else f"babyai/{name}")
    if spec.family != "babyai" or spec.gym_id is None:
        raise EnvironmentNotFoundError(f"{level!r} is not a BabyAI level")
    return spec.gym_id


_MAX_REPLANS_PER_STEP = 100
"""The bot replans (pops, pushes subgoals) until a subgoal suggests an action; on a few seeds
(e.g. GoToImpUnlock seed 6) it cycles forever without one. Past this many replans in one step the
seed counts as a bot failure."""


_OBJECTS = ("unseen", "empty", "wall", "floor", "door", "key", "ball", "box", "goal", "lava")
_COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
_DOOR_STATES = ("open", "closed", "locked")
_NO_OBJECT = frozenset({"unseen", "empty", "wall", "floor"})
"""Cell contents that are no object: described by their name alone, never a target object."""


def _decode_cell(values: Any) -> tuple[int, int, int]:
    """(object, colour, state) indices of a grid cell given as its three channels' one-hot
    rows, concatenated.

    Raises:
        ValueError: ``values`` is not three equal rows.
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size == 0 or flat.size % 3:
        raise ValueError(
            f"a grid cell is three equal one-hot rows (object, colour, state), got {flat.size} "
            "values; describe only arguments of BabyAI skills that take a target cell"
        )
    kind, colour, state = (int(i) for i in flat.reshape(3, -1).argmax(1))
    return kind, colour, state


def describe_cell(values: Any) -> str:
    """Words for a grid cell given as its three channels' one-hot rows (object, colour, state),
    concatenated: the form of a hindsight skill argument (the cell a segment ends facing), as an
    evaluation trace records it. ``"yellow key"``, ``"grey door (locked)"``, ``"empty"``.

    Raises:
        ValueError: ``values`` is not three equal one-hot rows.
    """
    kind, colour, state = _decode_cell(values)
    name = _OBJECTS[kind] if kind < len(_OBJECTS) else f"object {kind}"
    if name in _NO_OBJECT:
        return name
    text = f"{_COLOURS[colour] if colour < len(_COLOURS) else f'colour {colour}'} {name}"
    if name == "door":
        text += f" ({_DOOR_STATES[state] if state < len(_DOOR_STATES) else state})"
    return text


def cell_object(values: Any) -> tuple[str, str] | None:
    """The (type, colour) of the object a grid cell (as :func:`describe_cell` takes it) shows,
    e.g. ``("key", "yellow")``; ``None`` for no object (unseen, empty, wall, floor) or values
    that are no grid cell."""
    try:
        kind, colour, _ = _decode_cell(values)
    except ValueError:
        return None
    if kind >= len(_OBJECTS) or colour >= len(_COLOURS):
        return None
    name = _OBJECTS[kind]
    return None if name in _NO_OBJECT else (name, _COLOURS[colour])


class _ReplanLimitError(RuntimeError):
    """The bot replanned too often in one step without suggesting an action."""


@functools.cache
def _bounded_bot_class() -> Any:
    """minigrid's BabyAIBot with its replanning loop bounded (else identical)."""
    from minigrid.utils import baby_ai_bot

    base: Any = baby_ai_bot.BabyAIBot  # untyped library class

    class BoundedBabyAIBot(base):  # type: ignore[misc]
        # The body of BabyAIBot.replan (minigrid 3.2.0) with its `while self.stack` bounded.
        def replan(self, action_taken: Any = None) -> Any:
            self._process_obs()
            self._check_erroneous_box_opening(action_taken)
            for subgoal in self.stack:
                subgoal.update_agent_attributes()
            if self.stack:
                self.stack[-1].replan_after_action(action_taken)
            while self.stack and self.stack[-1].is_exploratory():
                self.stack.pop()
            suggested_action = None
            for _ in range(_MAX_REPLANS_PER_STEP):
                if not self.stack:
                    break
                suggested_action = self.stack[-1].replan_before_action()
                if suggested_action is not None:
                    break
            else:
                raise _ReplanLimitError(
                    f"no action after {_MAX_REPLANS_PER_STEP} replans (the bot cycles)"
                )
            if not self.stack:
                suggested_action = self.mission.unwrapped.actions.done
            self._remember_current_state()
            return suggested_action

    return BoundedBabyAIBot


def _subgoal_label(subgoal: Any) -> str:
    """Name a bot subgoal: its class without ``Subgoal`` (``"GoNextTo"``), or ``"Explore"``."""
    if subgoal.is_exploratory():
        return "Explore"
    name: str = type(subgoal).__name__
    return name.removesuffix("Subgoal")


def _subgoal_key(stack: list[Any]) -> tuple[str, int]:
    """Identify the subgoal the next action serves, stable while that subgoal is being pursued.

    Non-exploratory subgoals stay on the stack until done, so their identity marks them. The bot
    re-creates its exploratory subgoals at every step; an exploration phase is identified by the
    non-exploratory subgoal that asked for it (the nearest one below it on the stack).
    """
    if not stack:
        return ("Done", 0)
    top = stack[-1]
    if not top.is_exploratory():
        return (_subgoal_label(top), id(top))
    anchor = next((s for s in reversed(stack) if not s.is_exploratory()), None)
    return ("Explore", id(anchor))


class BabyAIDemoSource:
    """Demonstrations of one BabyAI level by minigrid's BabyAIBot.

    Implements :class:`skillbank.interfaces.DemoSource`. Seeds whose episode the bot cannot
    finish (it raises, the mission fails, or it runs past the level's ``max_steps``) give ``None``;
    :meth:`attempt` says why.

    Args:
        level: ``"GoToLocal"``, ``"babyai/GoToLocal"`` or ``"BabyAI-GoToLocal-v0"``.
        mission_len: L, tokens per mission row (default: the grammar's longest mission).
        map_radius: R of the explored map recorded as ``"map"`` (:mod:`skillbank.envs.grid_map`,
            the map evaluation environments add for memories that read it; e.g.
            ``DEFAULT_MAP_RADIUS``); ``None`` records no map.

    Raises:
        EnvironmentNotFoundError: Unknown level.
        MissingExtraError: minigrid is not installed.
    """

    def __init__(
        self,
        level: str,
        *,
        mission_len: int = MISSION_LEN,
        map_radius: int | None = None,
    ) -> None:
        if mission_len < 1:
            raise ValueError(f"mission_len must be >= 1, got {mission_len}")
        if map_radius is not None and map_radius < 0:
            raise ValueError(f"map_radius must be >= 0 or None, got {map_radius}")
        self._map_radius = map_radius
        self._gym_id = babyai_gym_id(level)
        self._level = self._gym_id.removeprefix("BabyAI-").removesuffix("-v0")
        self._mission_len = mission_len
        self._env: Any = None

    def __repr__(self) -> str:
        return f"BabyAIDemoSource({self._level!r})"

    @property
    def env_id(self) -> str:
        """Canonical id, e.g. ``"babyai/GoToLocal"``."""
        return f"babyai/{self._level}"

    @property
    def demonstrator(self) -> str:
        """Who produces the episodes: ``"babyai-bot"``."""
        return DEMONSTRATOR

    def _environment(self) -> Any:
        if self._env is None:
            import gymnasium as gym

            # The bare environment: BabyAI levels end themselves at max_steps, and the wrappers
            # (order enforcing, checks) only cost time in a tight collection loop.
            self._env = gym.make(self._gym_id, disable_env_checker=True).unwrapped
        return self._env

    def demonstrate(self, seed: int) -> Episode | None:
        """Return the bot's episode for ``seed``, or ``None`` if the bot failed on it."""
        result = self.attempt(seed)
        return result if isinstance(result, Episode) else None

    def attempt(self, seed: int) -> Episode | str:
        """Run the bot on ``seed``; return the episode, or why there is none.

        Args:
            seed: Environment seed (fixes layout and mission).

        Returns:
            The successful :class:`Episode`, or a one-line reason the bot failed.
        """
        env = self._environment()
        # minigrid prints each rejected layout sample; keep stdout for the caller.
        with contextlib.redirect_stdout(io.StringIO()) as rejected:
            obs, _ = env.reset(seed=seed)
        if rejected.getvalue():
            logger.debug("%s seed %d: %s", self.env_id, seed, rejected.getvalue().strip())
        mission_text: str = obs["mission"]
        try:
            mission_row = tokenize_mission(mission_text, self._mission_len)  # (L,)
        except ValueError as exc:
            return f"mission does not fit: {exc}"

        images = [obs["image"]]
        directions = [obs["direction"]]
        actions: list[int] = []
        rewards: list[float] = []
        keys: list[tuple[str, int]] = []
        # Keep every subgoal that served an action alive, so no two share an id() in one episode.
        served: list[Any] = []
        terminated = truncated = False
        reward = 0.0
        try:
            bot = _bounded_bot_class()(env)
            while not (terminated or truncated):
                action = bot.replan()
                keys.append(_subgoal_key(bot.stack))
                served.append(bot.stack[-1] if bot.stack else None)
                obs, reward, terminated, truncated, _ = env.step(action)
                images.append(obs["image"])
                directions.append(obs["direction"])
                actions.append(int(action))
                rewards.append(float(reward))
        except Exception as exc:  # the bot's own failures: asserts, boxes opened, dead ends
            reason = f"bot failed at step {len(actions)}: {type(exc).__name__}: {exc}"
            logger.info("%s seed %d: %s", self.env_id, seed, reason)
            return reason
        if not (terminated and reward > 0):
            why = "mission failed" if terminated else f"ran past max_steps={env.max_steps}"
            reason = f"bot did not succeed: {why} after {len(actions)} steps"
            logger.info("%s seed %d: %s", self.env_id, seed, reason)
            return reason

        num_steps = len(actions)
        boundaries, labels = _boundaries(keys)
        terminations = np.zeros(num_steps, dtype=np.bool_)
        terminations[-1] = True
        episode = Episode(
            observations={
                "image": np.stack(images).astype(np.uint8, copy=False),  # (T+1, 7, 7, 3)
                "direction": np.asarray(directions, dtype=np.int64),  # (T+1,)
                "mission": np.tile(mission_row, (num_steps + 1, 1)),  # (T+1, L)
            },
            actions=np.asarray(actions, dtype=np.int64),  # (T,)
            rewards=np.asarray(rewards, dtype=np.float32),  # (T,)
            terminations=terminations,
            truncations=np.zeros(num_steps, dtype=np.bool_),
            task=TaskSpec(env_id=self.env_id, mission=mission_text),
            success=True,
            seed=seed,
            demonstrator=DEMONSTRATOR,
            annotations=SubgoalAnnotation(boundaries=boundaries, labels=labels),
        )
        # the map is rebuilt from the recorded views and moves: the same code as evaluation's
        return episode if self._map_radius is None else episode_with_map(episode, self._map_radius)


def _boundaries(keys: list[tuple[str, int]]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Steps where the served subgoal changes, and the label of each new subgoal."""
    boundaries: list[int] = []
    labels: list[str] = []
    for step, key in enumerate(keys):
        if step == 0 or key != keys[step - 1]:
            boundaries.append(step)
            labels.append(key[0])
    return tuple(boundaries), tuple(labels)
