"""Any Gymnasium environment plus any callable demonstrator, as a demonstration source.

A demonstrator is a callable ``(observation, info) -> action``: a scripted policy, a trained
agent, a human at a keyboard. :class:`GymDemoSource` runs it on ``env.reset(seed=seed)`` and
returns the :class:`~skillbank.types.Episode`, so it plugs into everything that takes a
:class:`~skillbank.interfaces.DemoSource` (the dataset writer, ``skillbank demos collect``).

Observations become a mapping of named arrays (T+1, ...): a Box (or Discrete) observation is
stored under ``"obs"``; a Dict observation keeps its keys (nested keys joined with ``/``); string
entries such as BabyAI's ``"mission"`` become the episode's mission text instead.

Example:
    A PD-style controller balancing CartPole; an episode counts as a success when the pole stays
    up until the time limit (Gymnasium truncates it at 500 steps):

    >>> source = GymDemoSource(
    ...     "CartPole-v1",
    ...     lambda obs, info: int(obs[2] + 0.5 * obs[3] > 0),
    ...     name="cartpole-pd",
    ...     success=lambda reward, terminated, truncated, info: truncated,
    ... )
    >>> episode = source.demonstrate(seed=0)
    >>> episode.num_steps, episode.observations["obs"].shape, episode.actions.dtype
    (500, (501, 4), dtype('int64'))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from skillbank.envs.registry import make_env, resolve_env_id
from skillbank.types import Episode, TaskSpec

__all__ = ["Demonstrator", "GymDemoSource", "SuccessRule", "observation_arrays"]

logger = logging.getLogger(__name__)

Demonstrator = Callable[[Any, Mapping[str, Any]], Any]
"""``(observation, info) -> action``: picks the next action."""

SuccessRule = Callable[[float, bool, bool, Mapping[str, Any]], bool]
"""``(last reward, terminated, truncated, last info) -> success`` of a finished episode."""


def _default_success(
    reward: float, terminated: bool, truncated: bool, info: Mapping[str, Any]
) -> bool:
    if "success" in info:
        return bool(info["success"])
    return terminated and not truncated


def observation_arrays(observation: Any) -> tuple[dict[str, npt.NDArray[Any]], str | None]:
    """Split one observation into named arrays and, where there is one, a mission string.

    Args:
        observation: A Box/Discrete value, a (nested) dict, or a tuple.

    Returns:
        (name -> array for this step, mission text or ``None``).
    """
    arrays: dict[str, npt.NDArray[Any]] = {}
    mission: str | None = None

    def visit(prefix: str, value: Any) -> None:
        nonlocal mission
        if isinstance(value, str):
            if mission is None or prefix == "mission":
                mission = value
        elif isinstance(value, Mapping):
            for key, item in value.items():
                visit(f"{prefix}/{key}" if prefix else str(key), item)
        elif isinstance(value, tuple):
            for index, item in enumerate(value):
                visit(f"{prefix}/{index}" if prefix else str(index), item)
        else:
            arrays[prefix or "obs"] = np.asarray(value)

    visit("", observation)
    return arrays, mission


class GymDemoSource:
    """Runs a demonstrator on a Gymnasium environment, one seed per episode.

    Implements :class:`skillbank.interfaces.DemoSource`.

    Args:
        env: An environment id (see :func:`~skillbank.envs.registry.resolve_env_id`), an
            environment, or a function that builds one (called once, on first use).
        demonstrator: ``(observation, info) -> action``.
        make_demonstrator: Instead of ``demonstrator``: called with the environment after every
            reset, returns that episode's demonstrator (for experts that keep per-episode state,
            like minigrid's BabyAIBot).
        env_id: Canonical id recorded in the episodes (default: the resolved ``env`` id, or the
            environment's Gymnasium id).
        name: Who demonstrates, recorded as ``Episode.demonstrator``.
        success: Decides success from the last step (default: ``info["success"]`` where the
            environment reports it, else terminated and not truncated).
        max_steps: Stop (as truncated) after this many steps, whatever the environment says.
        keep_failures: Return failed episodes too (default: ``None`` for a failure).
        state_only: Drop the actions, as when watching another agent whose actions are unseen.
    """

    def __init__(
        self,
        env: str | gym.Env[Any, Any] | Callable[[], gym.Env[Any, Any]],
        demonstrator: Demonstrator | None = None,
        *,
        make_demonstrator: Callable[[gym.Env[Any, Any]], Demonstrator] | None = None,
        env_id: str | None = None,
        name: str = "scripted",
        success: SuccessRule | None = None,
        max_steps: int = 100_000,
        keep_failures: bool = False,
        state_only: bool = False,
    ) -> None:
        if (demonstrator is None) == (make_demonstrator is None):
            raise ValueError("give exactly one of demonstrator and make_demonstrator")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not name:
            raise ValueError("name must be a non-empty string")
        self._env: gym.Env[Any, Any] | None = None
        self._make_env: Callable[[], gym.Env[Any, Any]]
        if isinstance(env, str):
            spec = resolve_env_id(env)
            env_id = env_id or spec.env_id
            self._make_env = lambda: make_env(spec.env_id)
        elif isinstance(env, gym.Env):
            self._env = env
            self._make_env = lambda: env
            if env_id is None and env.spec is not None:
                env_id = env.spec.id
        else:
            self._make_env = env
        if not env_id:
            raise ValueError("env_id is required when the environment has no Gymnasium id")
        self._env_id = env_id
        self._demonstrator = demonstrator
        self._make_demonstrator = make_demonstrator
        self._name = name
        self._success = success or _default_success
        self._max_steps = max_steps
        self._keep_failures = keep_failures
        self._state_only = state_only

    def __repr__(self) -> str:
        return f"GymDemoSource({self._env_id!r}, name={self._name!r})"

    @property
    def env_id(self) -> str:
        """Canonical id recorded in the episodes."""
        return self._env_id

    @property
    def demonstrator(self) -> str:
        """Who demonstrates (``Episode.demonstrator``)."""
        return self._name

    @property
    def env(self) -> gym.Env[Any, Any]:
        """The environment (built on first use)."""
        if self._env is None:
            self._env = self._make_env()
        return self._env

    def demonstrate(self, seed: int) -> Episode | None:
        """Return the episode of ``seed``, or ``None`` if the demonstrator failed on it."""
        result = self.attempt(seed)
        return result if isinstance(result, Episode) else None

    def attempt(self, seed: int) -> Episode | str:
        """Run the demonstrator on ``seed``; return the episode, or a one-line reason it failed.

        Exceptions raised by the demonstrator are not caught: a broken demonstrator is a bug to
        see, not a failure to log.
        """
        env = self.env
        observation, info = env.reset(seed=seed)
        policy = self._demonstrator
        if self._make_demonstrator is not None:
            policy = self._make_demonstrator(env)
        assert policy is not None
        first, mission = observation_arrays(observation)
        if mission is None and isinstance(info.get("mission"), str):
            mission = info["mission"]
        frames: dict[str, list[npt.NDArray[Any]]] = {k: [v] for k, v in first.items()}
        actions: list[Any] = []
        rewards: list[float] = []
        terminations: list[bool] = []
        truncations: list[bool] = []
        terminated = truncated = False
        reward = 0.0
        while not (terminated or truncated):
            action = policy(observation, info)
            observation, raw_reward, terminated, truncated, info = env.step(action)
            reward = float(raw_reward)
            if len(actions) + 1 >= self._max_steps:
                truncated = True
            step, _ = observation_arrays(observation)
            if step.keys() != frames.keys():
                raise ValueError(
                    f"{self._env_id}: observation keys changed from {sorted(frames)} to "
                    f"{sorted(step)} at step {len(actions)}"
                )
            for key, value in step.items():
                frames[key].append(value)
            actions.append(action)
            rewards.append(reward)
            terminations.append(bool(terminated))
            truncations.append(bool(truncated))
        success = self._success(reward, bool(terminated), bool(truncated), info)
        if not success and not self._keep_failures:
            why = "terminated" if terminated else "truncated"
            reason = f"no success: {why} after {len(actions)} steps"
            logger.info("%s seed %d: %s", self._env_id, seed, reason)
            return reason
        return Episode(
            observations={k: np.stack(v) for k, v in frames.items()},  # (T+1, ...)
            actions=None if self._state_only else np.asarray(actions),  # (T, ...)
            rewards=np.asarray(rewards, dtype=np.float32),
            terminations=np.asarray(terminations, dtype=np.bool_),
            truncations=np.asarray(truncations, dtype=np.bool_),
            task=TaskSpec(env_id=self._env_id, mission=mission),
            success=bool(success),
            seed=seed,
            demonstrator=self._name,
        )
