"""Meta-World demonstrations from the library's scripted policies (MT50 tasks, v3 names).

Each of the 50 tasks (``"reach-v3"``, ``"push-v3"``, ...) has a hand-written policy in
``metaworld.policies`` (Yu et al., 2019, "Meta-World: A Benchmark and Evaluation for Multi-Task and
Meta Reinforcement Learning"). Observations are the goal-observable 39-vector of the MT benchmarks.

Seeding. metaworld 3.1.1 ignores ``reset(seed=...)``: the object and goal positions come from the
task's ``rand_vec``, which is frozen by ``set_task`` or, when unfrozen, drawn from the global
``np.random`` state. The env's own seeded path is used instead: unfreeze, set ``seeded_rand_vec``,
call ``env.seed(seed)`` and reset, so the positions are drawn from the env's ``np_random`` seeded
by ``seed``. The same seed gives the same bytes; different seeds give different positions; nothing
touches the global NumPy state.

Only successful episodes are kept: an episode ends at the first step with ``info["success"]``
(its last termination is then ``True``); a seed whose policy runs the full ``max_path_length``
(500) steps without success gives ``None``. The scripted policies do not expose their phases
(their ``_desired_pos`` branches are private and unnamed), so ``annotations`` is ``None``.

Observations per episode (T steps): ``"obs"``: (T+1, 39) float32. Actions: (T, 4) float32 in
[-1, 1] (the policy's output clipped to the action space, exactly what was executed).

Evaluation. :func:`make_metaworld_env` builds the same goal-observable environment, whose
``reset(seed=s)`` draws the positions exactly as the demonstrations do for seed ``s`` (so
evaluation seeds are disjoint from training seeds in the same sense as for BabyAI), and which
truncates at ``max_path_length`` (500). It is built directly (one MuJoCo model), not through
``gym.make("Meta-World/MT1")``, which pre-samples 50 tasks with a second environment on every
construction (~2.6 s per environment, most of a 50-episode evaluation on a loaded machine).

metaworld and mujoco are imported lazily; without them :class:`MetaWorldDemoSource` and
:func:`make_metaworld_env` raise :class:`~skillbank.errors.MissingExtraError`.

Example:
    >>> source = MetaWorldDemoSource("reach-v3")  # doctest: +SKIP
    >>> episode = source.demonstrate(seed=0)  # doctest: +SKIP
    >>> episode.observations["obs"].shape[1], episode.actions.shape[1]  # doctest: +SKIP
    (39, 4)
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from skillbank.errors import EnvironmentNotFoundError, MissingExtraError
from skillbank.types import Episode, TaskSpec

__all__ = [
    "DEMONSTRATOR",
    "MetaWorldDemoSource",
    "make_metaworld_env",
    "metaworld_env_factory",
    "metaworld_tasks",
]

logger = logging.getLogger(__name__)

DEMONSTRATOR = "metaworld-scripted"
"""The ``Episode.demonstrator`` of every Meta-World episode."""

_INSTALL_HINT = "pip install 'skillbank[metaworld]'"


def _import_metaworld() -> tuple[Any, Any]:
    """Return (task name -> env class, task name -> policy class), or explain how to install."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from metaworld.env_dict import ALL_V3_ENVIRONMENTS
            from metaworld.policies import ENV_POLICY_MAP
    except ImportError as exc:
        raise MissingExtraError(
            f"Meta-World needs metaworld and mujoco, which are not installed ({exc})",
            hint=_INSTALL_HINT,
        ) from exc
    return ALL_V3_ENVIRONMENTS, ENV_POLICY_MAP


def metaworld_tasks() -> list[str]:
    """Return the names of the 50 Meta-World tasks that have a scripted policy, sorted.

    Raises:
        MissingExtraError: If metaworld is not installed.
    """
    envs, policies = _import_metaworld()
    return sorted(set(envs) & set(policies))


def _task_name(task: str) -> str:
    """``"metaworld/push-v3"``, ``"push-v3"`` or ``"push"`` -> ``"push-v3"``, or raise."""
    name = task.removeprefix("metaworld/")
    tasks = metaworld_tasks()
    for candidate in (name, f"{name}-v3"):
        if candidate in tasks:
            return candidate
    close = difflib.get_close_matches(name, tasks, n=5, cutoff=0.5)
    suggestion = ", ".join(f"metaworld/{c}" for c in close) if close else "none close"
    raise EnvironmentNotFoundError(
        f"unknown Meta-World task {task!r}; closest: {suggestion}",
        hint=f"tasks: {len(tasks)} MT50 names with -v3, e.g. metaworld/reach-v3",
    )


def _goal_observable_env(task: str) -> Any:
    """The raw environment of ``task`` ("push-v3") in the MT benchmarks' goal-observable setting."""
    envs, _ = _import_metaworld()
    env = envs[task]()
    # The MT benchmarks' goal-observable setting (as MT1 does through set_task): the last 3 of
    # the 39 features are the goal.
    env._partially_observable = False
    del env.sawyer_observation_space  # a cached property: recompute for the new setting
    env._set_task_called = True
    return env


def _seeded_reset(env: Any, seed: int) -> Any:
    """Reset with the object and goal positions drawn from ``seed`` (see the module docstring)."""
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.seed(seed)
    obs, _ = env.reset()
    env._freeze_rand_vec = True
    return obs


class _SeededReset(gym.Wrapper[Any, Any, Any, Any]):
    """``reset(seed=s)`` places the objects and goal from ``s`` as the demonstrations do."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:  # the positions the environment's own generator draws next
            obs, info = self.env.reset()
            return obs, dict(info)
        return _seeded_reset(self.env.unwrapped, seed), {}


def make_metaworld_env(task: str) -> gym.Env[Any, Any]:
    """A goal-observable Meta-World environment for evaluation (see the module docstring).

    Args:
        task: ``"push-v3"``, ``"metaworld/push-v3"`` or ``"push"``.

    Returns:
        An environment with 39-dim observations and 4-dim actions in [-1, 1]; ``reset(seed=s)``
        gives the positions of demonstration seed ``s``; it truncates after 500 steps and never
        terminates (``info["success"]`` says when the task is done).

    Raises:
        EnvironmentNotFoundError: Unknown task.
        MissingExtraError: metaworld is not installed.

    Example:
        >>> env = make_metaworld_env("reach-v3")  # doctest: +SKIP
        >>> env.reset(seed=1_000_000)[0].shape  # doctest: +SKIP
        (39,)
    """
    return _SeededReset(_goal_observable_env(_task_name(task)))


def metaworld_env_factory(task: str) -> Callable[[int], gym.Env[Any, Any]]:
    """A ``make_env(index)`` for :func:`skillbank.envs.rollout.evaluate_policy` building
    :func:`make_metaworld_env` environments of ``task``.

    Raises:
        EnvironmentNotFoundError: Unknown task (here, not in the first slot).
        MissingExtraError: metaworld is not installed.
    """
    name = _task_name(task)

    def make_env(index: int) -> gym.Env[Any, Any]:
        return make_metaworld_env(name)

    return make_env


class MetaWorldDemoSource:
    """Demonstrations of one Meta-World task by its scripted policy.

    Implements :class:`skillbank.interfaces.DemoSource`.

    Args:
        task: ``"push-v3"``, ``"metaworld/push-v3"`` or ``"push"``.

    Raises:
        EnvironmentNotFoundError: Unknown task.
        MissingExtraError: metaworld is not installed.
    """

    def __init__(self, task: str) -> None:
        self._task = _task_name(task)
        self._env: Any = None
        self._policy: Any = None

    def __repr__(self) -> str:
        return f"MetaWorldDemoSource({self._task!r})"

    @property
    def env_id(self) -> str:
        """Canonical id, e.g. ``"metaworld/push-v3"``."""
        return f"metaworld/{self._task}"

    @property
    def demonstrator(self) -> str:
        """Who produces the episodes: ``"metaworld-scripted"``."""
        return DEMONSTRATOR

    def _build(self) -> tuple[Any, Any]:
        if self._env is None:
            _, policies = _import_metaworld()
            self._env, self._policy = _goal_observable_env(self._task), policies[self._task]()
        return self._env, self._policy

    def demonstrate(self, seed: int) -> Episode | None:
        """Return the scripted policy's episode for ``seed``, or ``None`` if it failed."""
        result = self.attempt(seed)
        return result if isinstance(result, Episode) else None

    def attempt(self, seed: int) -> Episode | str:
        """Run the scripted policy on ``seed``; return the episode, or why there is none.

        Args:
            seed: Seeds the task's object and goal positions.

        Returns:
            The successful :class:`Episode`, or a one-line reason the policy failed.
        """
        env, policy = self._build()
        obs = _seeded_reset(env, seed)

        observations = [np.asarray(obs, dtype=np.float32)]
        actions: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        rewards: list[float] = []
        success = False
        with warnings.catch_warnings():
            # The policies warn when their gains exceed the action range; the env clips anyway.
            warnings.simplefilter("ignore")
            for _ in range(env.max_path_length):
                action = np.clip(policy.get_action(obs), -1.0, 1.0).astype(np.float32)
                obs, reward, _, truncated, info = env.step(action)
                observations.append(np.asarray(obs, dtype=np.float32))
                actions.append(action)
                rewards.append(float(reward))
                if info["success"]:
                    success = True
                    break
                if truncated:
                    break
        if not success:
            reason = f"scripted policy did not succeed within {len(actions)} steps"
            logger.info("%s seed %d: %s", self.env_id, seed, reason)
            return reason

        num_steps = len(actions)
        terminations = np.zeros(num_steps, dtype=np.bool_)
        terminations[-1] = True
        return Episode(
            observations={"obs": np.stack(observations)},  # (T+1, 39)
            actions=np.stack(actions),  # (T, 4)
            rewards=np.asarray(rewards, dtype=np.float32),  # (T,)
            terminations=terminations,
            truncations=np.zeros(num_steps, dtype=np.bool_),
            task=TaskSpec(env_id=self.env_id),
            success=True,
            seed=seed,
            demonstrator=DEMONSTRATOR,
            annotations=None,
        )
