"""Vectorised evaluation of any batched policy: many environments stepped at once.

A plain list of environments is stepped in a loop (no vector-env autoreset subtleties): slot ``i``
runs one episode after another, each reset with the next unused seed (``seed, seed + 1, ...``).
The policy sees one batch of observations for all slots at every step and answers one action per
slot; :meth:`BatchPolicy.on_done` names the slots whose episode just ended, so a recurrent or
hierarchical policy can reset their state before it sees their next first observation.

Observations reach the policy in the same layout the demonstrators record (no torch here: envs is
layer 1 and knows no nn; the policy turns arrays into tensors itself):

- BabyAI: ``"image"`` (B, 7, 7, 3) uint8, ``"direction"`` (B,) int64, ``"mission"`` (B, L) int64
  token ids (:func:`babyai_observation`, the conversion :mod:`skillbank.envs.babyai` records).
- A Box observation (Meta-World): ``"obs"`` (B, O) float32.

Example:
    >>> result = evaluate_policy(babyai_env_factory("GoToRedBall"), policy,
    ...                          episodes=512, seed=10**9)  # doctest: +SKIP
    >>> result.success_rate  # doctest: +SKIP
    0.99
"""

from __future__ import annotations

import contextlib
import functools
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from skillbank.envs.babyai_vocab import MISSION_LEN, tokenize_mission
from skillbank.envs.grid_map import COARSE_MAP_KEY, MAP_KEY, GridMapWrapper

__all__ = [
    "BatchPolicy",
    "ObsConverter",
    "RolloutResult",
    "SuccessFn",
    "babyai_env_factory",
    "babyai_observation",
    "babyai_success",
    "default_observation",
    "evaluate_policy",
    "info_success",
    "stack_observations",
    "task_text",
]

ObsMapping = Mapping[str, npt.NDArray[Any]]
SuccessFn = Callable[[float, bool, bool, Mapping[str, Any]], bool]
"""``(last_reward, terminated, truncated, last_info) -> success`` at an episode's end."""
ObsConverter = Callable[[Any], dict[str, npt.NDArray[Any]]]
"""Raw environment observation -> named arrays of one example (no batch axis)."""


@runtime_checkable
class BatchPolicy(Protocol):
    """A policy acting in ``num_envs`` environments at once."""

    def reset(self, num_envs: int) -> None:
        """Forget all state; the next :meth:`act` gets batches of ``num_envs`` observations."""
        ...

    def act(self, obs: ObsMapping) -> npt.NDArray[Any]:
        """Return one action per slot, (B,) for discrete or (B, A) for continuous actions.

        Args:
            obs: name -> (B, ...) arrays. Slots whose environment has no episode left to run keep
                their last observation; their actions are ignored.
        """
        ...

    def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
        """The episodes in these slots ended; the next observation there starts a new one."""
        ...


@dataclass(frozen=True, slots=True)
class RolloutResult:
    """What an evaluation measured.

    Attributes:
        success_rate: Fraction of episodes that succeeded.
        mean_steps: Mean environment steps per episode.
        steps_per_s: Environment steps per second of wall time, policy included.
        seeds: (episodes,) the seed of each episode, in order.
        successes: (episodes,) whether each episode succeeded.
        steps: (episodes,) steps each episode took.
        wall_s: Seconds the evaluation took.
        tasks: (episodes,) each episode's task text as its first observation states it (a
            ``"mission"`` string, MiniGrid/BabyAI style), ``""`` where it states none; empty
            when not recorded.
    """

    success_rate: float
    mean_steps: float
    steps_per_s: float
    seeds: tuple[int, ...]
    successes: tuple[bool, ...]
    steps: tuple[int, ...]
    wall_s: float
    tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.seeds) == len(self.successes) == len(self.steps):
            raise ValueError("RolloutResult.seeds, .successes and .steps must have equal lengths")
        if self.tasks and len(self.tasks) != len(self.seeds):
            raise ValueError("RolloutResult.tasks must be empty or one per episode")
        if not 0.0 <= self.success_rate <= 1.0:
            raise ValueError("RolloutResult.success_rate must lie in [0, 1]")

    @property
    def episodes(self) -> int:
        """Number of episodes evaluated."""
        return len(self.seeds)

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary (per-episode lists included)."""
        return {
            "episodes": self.episodes,
            "success_rate": self.success_rate,
            "mean_steps": self.mean_steps,
            "steps_per_s": self.steps_per_s,
            "wall_s": self.wall_s,
            "seeds": list(self.seeds),
            "successes": list(self.successes),
            "steps": list(self.steps),
            "tasks": list(self.tasks),
        }


# --- observation conversion and success -----------------------------------------------------------


def babyai_observation(obs: Mapping[str, Any], mission_len: int = MISSION_LEN) -> dict[str, Any]:
    """Turn a raw minigrid observation into the arrays the BabyAI demonstrator records.

    Returns:
        ``"image"`` (7, 7, 3) uint8, ``"direction"`` () int64, ``"mission"`` (L,) int64, and
        ``"map"`` (S, S, P) bool (and ``"map_coarse"``) where the environment adds the explored
        map (:class:`~skillbank.envs.grid_map.GridMapWrapper`).
    """
    arrays = {
        "image": np.asarray(obs["image"], dtype=np.uint8),
        "direction": np.int64(obs["direction"]),
        "mission": _mission_tokens(str(obs["mission"]), mission_len),
    }
    for key in (MAP_KEY, COARSE_MAP_KEY):
        if key in obs:
            arrays[key] = np.asarray(obs[key], dtype=np.bool_)
    return arrays


@functools.lru_cache(maxsize=4096)
def _mission_tokens(text: str, length: int) -> npt.NDArray[np.int64]:
    # A mission stays fixed for an episode; tokenise it once, not at every step.
    tokens = tokenize_mission(text, length)
    tokens.flags.writeable = False
    return tokens


def default_observation(obs: Any) -> dict[str, Any]:
    """BabyAI dicts via :func:`babyai_observation`, other dicts as they are, arrays as ``"obs"``."""
    if isinstance(obs, Mapping):
        if "mission" in obs and isinstance(obs["mission"], str):
            return babyai_observation(obs)
        return {k: np.asarray(v) for k, v in obs.items()}
    return {"obs": np.asarray(obs, dtype=np.float32)}


def stack_observations(items: Sequence[Mapping[str, Any]]) -> dict[str, npt.NDArray[Any]]:
    """Stack per-env observations into a batch: name -> (B, ...)."""
    return {name: np.stack([item[name] for item in items]) for name in items[0]}


def babyai_success(
    reward: float, terminated: bool, truncated: bool, info: Mapping[str, Any]
) -> bool:
    """BabyAI: the episode terminated with a positive reward."""
    return terminated and reward > 0


def info_success(reward: float, terminated: bool, truncated: bool, info: Mapping[str, Any]) -> bool:
    """Meta-World: the last step's ``info["success"]`` is set."""
    return bool(info.get("success", False))


def babyai_env_factory(
    level: str, *, map_radius: int | None = None, coarse_radius: int | None = None
) -> Callable[[int], Any]:
    """A ``make_env(index)`` for :func:`evaluate_policy` building the BabyAI level ``level``;
    with ``map_radius``, its observations also hold the explored map (and its coarse view with
    ``coarse_radius``) (:class:`~skillbank.envs.grid_map.GridMapWrapper`; it costs about a fifth
    of the evaluation's steps/s, so only policies that read it get it).

    Raises:
        EnvironmentNotFoundError: Unknown level.
        MissingExtraError: minigrid is not installed.
    """
    from skillbank.envs.babyai import babyai_gym_id

    gym_id = babyai_gym_id(level)

    def make_env(index: int) -> Any:
        import gymnasium as gym

        env = gym.make(gym_id, disable_env_checker=True)
        return env if map_radius is None else GridMapWrapper(env, map_radius, coarse_radius)

    return make_env


def task_text(raw_observation: Any) -> str:
    """The task an episode's first observation states: its ``"mission"`` string (MiniGrid and
    BabyAI observations carry one), else ``""``."""
    if isinstance(raw_observation, Mapping):
        mission = raw_observation.get("mission")
        if isinstance(mission, str):
            return mission
    return ""


def _reset(env: Any, seed: int) -> Any:
    # minigrid prints every rejected layout sample to stdout; keep stdout for the caller.
    with contextlib.redirect_stdout(io.StringIO()):
        obs, _ = env.reset(seed=seed)
    return obs


# --- the loop -------------------------------------------------------------------------------------


def evaluate_policy(
    make_env: Callable[[int], Any],
    policy: BatchPolicy,
    *,
    episodes: int,
    seed: int,
    num_envs: int = 64,
    success_fn: SuccessFn = babyai_success,
    convert_obs: ObsConverter = default_observation,
    max_steps: int | None = None,
    end_on_success: bool = True,
) -> RolloutResult:
    """Run ``episodes`` episodes of ``policy``, ``num_envs`` at a time, on seeds seed, seed+1, ...

    Args:
        make_env: Builds environment ``index`` (a ``gymnasium.Env``); called ``num_envs`` times.
        policy: The batched policy.
        episodes: Episodes to run.
        seed: Seed of the first episode; episode ``k`` uses ``seed + k``.
        num_envs: Environments stepped together (capped at ``episodes``).
        success_fn: Decides success at an episode's end.
        convert_obs: Raw observation -> named arrays.
        max_steps: Cut an episode after this many steps (counts as a failure); ``None`` trusts the
            environment's own time limit.
        end_on_success: End an episode at its first step whose ``info["success"]`` is set, as
            Meta-World's evaluation does and as its demonstrations end (its environments never
            terminate, so otherwise success is judged only after the 500th step, and an arm that
            reached the goal and drifted on counts as a failure). Environments without that key
            (BabyAI) are unaffected.

    Returns:
        The :class:`RolloutResult`; per-episode fields are ordered by episode index.
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if num_envs <= 0:
        raise ValueError(f"num_envs must be positive, got {num_envs}")
    num_envs = min(num_envs, episodes)
    start = time.perf_counter()

    # --- set up: one environment and one episode per slot ---
    envs = [make_env(i) for i in range(num_envs)]
    episode_of = np.arange(num_envs, dtype=np.int64)  # slot -> episode index, -1 when idle
    steps_in = np.zeros(num_envs, dtype=np.int64)
    successes = np.zeros(episodes, dtype=np.bool_)
    steps = np.zeros(episodes, dtype=np.int64)
    tasks = [""] * episodes
    current: list[dict[str, Any]] = []
    for i, env in enumerate(envs):
        raw = _reset(env, seed + i)
        tasks[i] = task_text(raw)
        current.append(convert_obs(raw))
    next_episode = num_envs
    policy.reset(num_envs)
    total_steps = 0

    # --- step every busy slot until every episode has ended ---
    while (episode_of >= 0).any():
        actions = np.asarray(policy.act(stack_observations(current)))
        if len(actions) != num_envs:
            raise ValueError(f"policy returned {len(actions)} actions for {num_envs} envs")
        done: list[int] = []
        for i in np.flatnonzero(episode_of >= 0).tolist():
            action = actions[i].item() if actions.ndim == 1 else actions[i]
            raw, reward, terminated, truncated, info = envs[i].step(action)
            steps_in[i] += 1
            total_steps += 1
            cut = max_steps is not None and steps_in[i] >= max_steps
            reached = end_on_success and bool(info.get("success", False))
            if terminated or truncated or cut or reached:
                k = int(episode_of[i])
                successes[k] = success_fn(float(reward), bool(terminated), bool(truncated), info)
                steps[k] = steps_in[i]
                done.append(i)
                if next_episode < episodes:
                    episode_of[i] = next_episode
                    raw = _reset(envs[i], seed + next_episode)
                    tasks[next_episode] = task_text(raw)
                    next_episode += 1
                else:
                    episode_of[i] = -1
                steps_in[i] = 0
            current[i] = convert_obs(raw)
        if done:
            policy.on_done(np.asarray(done, dtype=np.int64))

    # --- summarise ---
    for env in envs:
        env.close()
    wall = time.perf_counter() - start
    return RolloutResult(
        success_rate=float(successes.mean()),
        mean_steps=float(steps.mean()),
        steps_per_s=total_steps / max(wall, 1e-9),
        seeds=tuple(range(seed, seed + episodes)),
        successes=tuple(bool(s) for s in successes),
        steps=tuple(int(s) for s in steps),
        wall_s=wall,
        tasks=tuple(tasks),
    )
