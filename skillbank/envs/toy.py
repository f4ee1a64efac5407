"""The toy world: a NumPy-only grid with compositional tasks and a scripted demonstrator.

It is the fixture of the default test suite, so its tasks share real, reusable sub-skills:

- ``toy/goto``: "go to the red ball" — GoTo
- ``toy/pickup``: "pick up the green key" — GoTo, Pickup
- ``toy/open``: "open the blue box" — GoTo, Open
- ``toy/fetch``: "put the red ball next to the yellow key" — GoTo, Pickup, GoTo, Drop
- ``toy/open-pickup``: "open the blue box and pick up what is inside" — GoTo, Open, Pickup
- ``toy/open-then-fetch``: "open the blue box and put what is inside next to the green key" —
  GoTo, Open, Pickup, GoTo, Drop

World: a ``size`` × ``size`` room (default 7×7) holding ``num_objects`` objects of distinct
(colour, type) pairs — colours red, green, blue, yellow; types ball, key, box. Objects block
movement. Balls and keys can be carried (one at a time) and dropped on the free cell in front; a box
opened (toggled) is replaced by the object inside it, as in BabyAI. The agent has a position and a
heading (0 right, 1 down, 2 left, 3 up) and acts like a BabyAI agent:

    0 left, 1 right, 2 forward, 3 pickup, 4 drop, 5 toggle

"Next to" means one of the four neighbouring cells; "go to" means facing the object from an
adjacent cell. Success ends the episode with reward ``1 - 0.9 * steps / max_steps``; otherwise it
is truncated after ``max_steps``.

Observation: one float32 vector (O = :func:`toy_obs_dim`), laid out as
``[agent (x, y) / (size-1) | heading one-hot (4) | carried flag, colour (4), type (3) |
task one-hot (len(TOY_TASKS)) | argument 1 colour (4), type (3) | argument 2 colour (4), type (3) |
per object slot: present, x, y, dx, dy, ahead, right, in-front, colour (4), type (3), carried,
is-argument-1, is-argument-2]``; coordinates are divided by ``size - 1``; ``ahead``/``right`` are
the offsets in the agent's own frame. A box keeps its slot when opened: the slot then describes
the object that came out, so "argument 1" follows the thing to fetch. ``info["mission"]`` holds
the mission text.

Seeding: ``reset(seed=s)`` fixes the layout, task arguments and box contents; the world itself
has no randomness after that, so one seed always gives the same episode.

Example:
    >>> env = make_toy_env("fetch")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape == (toy_obs_dim(),), info["mission"].startswith("put the")
    (True, True)
    >>> episode = ToyDemonstrator("fetch").demonstrate(seed=0)
    >>> episode.success, episode.annotations.labels
    (True, ('GoTo', 'Pickup', 'GoTo', 'Drop'))
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from skillbank.types import Episode, SubgoalAnnotation, TaskSpec

__all__ = [
    "ACTIONS",
    "COLOURS",
    "DEMONSTRATOR",
    "OBJECT_TYPES",
    "TOY_TASKS",
    "ToyDemonstrator",
    "ToyEnv",
    "make_toy_env",
    "register_toy_envs",
    "toy_gym_id",
    "toy_obs_dim",
]

TOY_TASKS: tuple[str, ...] = ("goto", "pickup", "open", "fetch", "open-pickup", "open-then-fetch")
"""Every toy task; ``toy/<task>`` is its environment id."""

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
OBJECT_TYPES: tuple[str, ...] = ("ball", "key", "box")
ACTIONS: tuple[str, ...] = ("left", "right", "forward", "pickup", "drop", "toggle")
DEMONSTRATOR = "toy-scripted"
"""The ``Episode.demonstrator`` of every toy episode."""

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = range(6)
_BOX = OBJECT_TYPES.index("box")
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # heading -> (dx, dy): right, down, left, up
_NUM_C, _NUM_T = len(COLOURS), len(OBJECT_TYPES)
_SLOT_DIM = 8 + _NUM_C + _NUM_T + 3
# Tasks whose first argument must be a box (with something inside), and those that drop.
_OPEN_TASKS = frozenset({"open", "open-pickup", "open-then-fetch"})
_DROP_TASKS = frozenset({"fetch", "open-then-fetch"})


def toy_obs_dim(num_objects: int = 4) -> int:
    """O, the length of the toy observation vector for ``num_objects`` object slots."""
    return (
        2
        + 4
        + (1 + _NUM_C + _NUM_T)
        + len(TOY_TASKS)
        + 2 * (_NUM_C + _NUM_T)
        + (num_objects * _SLOT_DIM)
    )


def toy_gym_id(task: str) -> str:
    """The Gymnasium id of a toy task, e.g. ``"skillbank/Toy-fetch-v0"``."""
    return f"skillbank/Toy-{task}-v0"


class ToyEnv(gym.Env[npt.NDArray[np.float32], np.int64]):
    """One toy task. See the module docstring for the world, actions and observation layout.

    Args:
        task: One of :data:`TOY_TASKS`.
        size: Side of the square room (>= 5).
        num_objects: Objects in the room (3 to 8).
        max_steps: Steps before truncation.
    """

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(
        self,
        task: str = "fetch",
        *,
        size: int = 7,
        num_objects: int = 4,
        max_steps: int = 100,
        render_mode: str | None = None,
    ) -> None:
        if task not in TOY_TASKS:
            raise ValueError(f"task must be one of {TOY_TASKS}, got {task!r}")
        if size < 5:
            raise ValueError(f"size must be >= 5, got {size}")
        if not 3 <= num_objects <= 8:
            raise ValueError(f"num_objects must be in [3, 8], got {num_objects}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.task = task
        self.size = size
        self.num_objects = num_objects
        self.max_steps = max_steps
        self.render_mode = render_mode
        self._obs_dim = toy_obs_dim(num_objects)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(self._obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        # State (set by reset): slot arrays of length num_objects.
        self.colour = np.zeros(num_objects, dtype=np.int64)
        self.kind = np.zeros(num_objects, dtype=np.int64)
        self.pos = np.zeros((num_objects, 2), dtype=np.int64)
        self.content = np.full((num_objects, 2), -1, dtype=np.int64)  # boxes: (colour, type)
        self.grid = np.full((size, size), -1, dtype=np.int64)  # [x, y] -> slot or -1
        self.agent = (0, 0)
        self.heading = 0
        self.carried = -1
        self.args = (-1, -1)
        self.mission = ""
        self.steps = 0
        self._task_index = TOY_TASKS.index(task)
        self._static = np.zeros(0, dtype=np.float32)

    # --- gymnasium API ---

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self._generate(self.np_random)
        self.steps = 0
        return self._observe(), {"mission": self.mission, "success": False}

    def step(
        self, action: np.int64 | int
    ) -> tuple[npt.NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        a = int(action)
        x, y = self.agent
        dx, dy = _DIRS[self.heading]
        fx, fy = x + dx, y + dy
        inside = 0 <= fx < self.size and 0 <= fy < self.size
        front = int(self.grid[fx, fy]) if inside else -1
        if a == LEFT:
            self.heading = (self.heading - 1) % 4
        elif a == RIGHT:
            self.heading = (self.heading + 1) % 4
        elif a == FORWARD:
            if inside and front < 0:
                self.agent = (fx, fy)
        elif a == PICKUP:
            if front >= 0 and self.carried < 0 and self.kind[front] != _BOX:
                self.carried = front
                self.grid[fx, fy] = -1
        elif a == DROP:
            if inside and front < 0 and self.carried >= 0:
                self.pos[self.carried] = (fx, fy)
                self.grid[fx, fy] = self.carried
                self.carried = -1
        elif a == TOGGLE:
            if front >= 0 and self.kind[front] == _BOX:
                self.colour[front], self.kind[front] = self.content[front]
                self.content[front] = (-1, -1)
        else:
            raise ValueError(f"action must be in [0, {len(ACTIONS)}), got {action}")
        self.steps += 1
        success = self._succeeded()
        reward = 1.0 - 0.9 * self.steps / self.max_steps if success else 0.0
        truncated = not success and self.steps >= self.max_steps
        info = {"mission": self.mission, "success": success}
        return self._observe(), reward, success, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        rows = []
        for y in range(self.size):
            row = []
            for x in range(self.size):
                slot = int(self.grid[x, y])
                if (x, y) == self.agent:
                    row.append(">v<^"[self.heading] + " ")
                elif slot >= 0:
                    row.append(COLOURS[self.colour[slot]][0].upper() + "bkx"[self.kind[slot]])
                else:
                    row.append(". ")
            rows.append(" ".join(row))
        return "\n".join([*rows, self.mission])

    # --- state queries (used by the demonstrator) ---

    def front_cell(self) -> tuple[int, int]:
        """The cell the agent faces (may lie outside the room)."""
        dx, dy = _DIRS[self.heading]
        return self.agent[0] + dx, self.agent[1] + dy

    def free(self, x: int, y: int) -> bool:
        """True if (x, y) is inside the room and holds no object (the agent's cell counts free)."""
        return 0 <= x < self.size and 0 <= y < self.size and self.grid[x, y] < 0

    def describe(self, slot: int) -> str:
        """``"red ball"`` for the object in ``slot``."""
        return f"{COLOURS[self.colour[slot]]} {OBJECT_TYPES[self.kind[slot]]}"

    # --- internals ---

    def _generate(self, rng: np.random.Generator) -> None:
        n = self.num_objects
        # Distinct (colour, type) pairs for the objects and whatever the boxes hold, so every
        # mission names exactly one object.
        pairs = [(c, t) for c in range(_NUM_C) for t in range(_NUM_T)]
        order = rng.permutation(len(pairs))
        carryable = [pairs[i] for i in order if pairs[i][1] != _BOX]
        boxes = [pairs[i] for i in order if pairs[i][1] == _BOX]
        num_boxes = (
            1 + int(rng.integers(0, 2)) if self.task in _OPEN_TASKS else int(rng.integers(0, 2))
        )
        chosen = boxes[:num_boxes] + carryable[: n - num_boxes]
        inside = carryable[n - num_boxes : n]  # one distinct carryable object per box
        perm = rng.permutation(n)
        for slot, index in enumerate(perm):
            self.colour[slot], self.kind[slot] = chosen[index]
        self.content[:] = -1
        box_slots = [s for s in range(n) if self.kind[s] == _BOX]
        for k, slot in enumerate(box_slots):
            self.content[slot] = inside[k]
        carry_slots = [s for s in range(n) if self.kind[s] != _BOX]
        # Task arguments.
        if self.task in _OPEN_TASKS:
            first = box_slots[int(rng.integers(len(box_slots)))]
        elif self.task == "goto":
            first = int(rng.integers(n))
        else:
            first = carry_slots[int(rng.integers(len(carry_slots)))]
        second = -1
        if self.task in _DROP_TASKS:
            others = [s for s in range(n) if s != first]
            second = others[int(rng.integers(len(others)))]
        self.args = (first, second)
        # Layout: rejection-sample until every object can be reached (free cells connected, each
        # object beside a free cell) and the task is not already done.
        cells = self.size * self.size
        while True:
            spots = rng.choice(cells, size=n + 1, replace=False)
            self.grid[:] = -1
            for slot in range(n):
                x, y = divmod(int(spots[slot]), self.size)
                self.pos[slot] = (x, y)
                self.grid[x, y] = slot
            self.agent = divmod(int(spots[n]), self.size)
            self.heading = int(rng.integers(4))
            self.carried = -1
            if self._layout_ok() and not self._succeeded():
                break
        self.mission = self._mission_text()
        self._static = self._static_features()

    def _layout_ok(self) -> bool:
        for x, y in self.pos:
            if not any(self.free(int(x) + dx, int(y) + dy) for dx, dy in _DIRS):
                return False
        first, second = self.args
        if second >= 0 and np.abs(self.pos[first] - self.pos[second]).sum() <= 1:
            return False  # the object must be carried over, not already in place
        seen = {self.agent}
        queue = deque([self.agent])
        while queue:
            x, y = queue.popleft()
            for dx, dy in _DIRS:
                nxt = (x + dx, y + dy)
                if nxt not in seen and self.free(*nxt):
                    seen.add(nxt)
                    queue.append(nxt)
        return len(seen) == int((self.grid < 0).sum())

    def _mission_text(self) -> str:
        first, second = self.args
        what = self.describe(first)
        if self.task == "goto":
            return f"go to the {what}"
        if self.task == "pickup":
            return f"pick up the {what}"
        if self.task == "open":
            return f"open the {what}"
        if self.task == "fetch":
            return f"put the {what} next to the {self.describe(second)}"
        if self.task == "open-pickup":
            return f"open the {what} and pick up what is inside"
        return f"open the {what} and put what is inside next to the {self.describe(second)}"

    def _static_features(self) -> npt.NDArray[np.float32]:
        """Task one-hot and argument encodings: fixed for the episode."""
        feats = np.zeros(len(TOY_TASKS) + 2 * (_NUM_C + _NUM_T), dtype=np.float32)
        feats[self._task_index] = 1.0
        offset = len(TOY_TASKS)
        for arg in self.args:
            if arg >= 0:
                feats[offset + self.colour[arg]] = 1.0
                feats[offset + _NUM_C + self.kind[arg]] = 1.0
            offset += _NUM_C + _NUM_T
        return feats

    def _observe(self) -> npt.NDArray[np.float32]:
        scale = 1.0 / (self.size - 1)
        obs = np.zeros(self._obs_dim, dtype=np.float32)  # (O,)
        ax, ay = self.agent
        obs[0], obs[1] = ax * scale, ay * scale
        obs[2 + self.heading] = 1.0
        i = 6
        if self.carried >= 0:
            obs[i] = 1.0
            obs[i + 1 + self.colour[self.carried]] = 1.0
            obs[i + 1 + _NUM_C + self.kind[self.carried]] = 1.0
        i += 1 + _NUM_C + _NUM_T
        obs[i : i + len(self._static)] = self._static
        i += len(self._static)
        hx, hy = _DIRS[self.heading]
        fx, fy = ax + hx, ay + hy
        for slot in range(self.num_objects):
            if self.kind[slot] < 0:  # an empty box that was opened: slot stays empty
                i += _SLOT_DIM
                continue
            carried = slot == self.carried
            ox, oy = (ax, ay) if carried else (int(self.pos[slot, 0]), int(self.pos[slot, 1]))
            dx, dy = ox - ax, oy - ay
            obs[i : i + 8] = (
                1.0,
                ox * scale,
                oy * scale,
                dx * scale,
                dy * scale,
                (dx * hx + dy * hy) * scale,  # ahead, in the agent's frame
                (dy * hx - dx * hy) * scale,  # to the right, in the agent's frame
                float((ox, oy) == (fx, fy) and not carried),
            )
            obs[i + 8 + self.colour[slot]] = 1.0
            obs[i + 8 + _NUM_C + self.kind[slot]] = 1.0
            j = i + 8 + _NUM_C + _NUM_T
            obs[j] = float(carried)
            obs[j + 1] = float(slot == self.args[0])
            obs[j + 2] = float(slot == self.args[1])
            i += _SLOT_DIM
        return obs

    def _succeeded(self) -> bool:
        first, second = self.args
        if self.task == "goto":
            fx, fy = self.front_cell()
            inside = 0 <= fx < self.size and 0 <= fy < self.size
            return inside and int(self.grid[fx, fy]) == first
        if self.task in ("pickup", "open-pickup"):
            return self.carried == first and int(self.kind[first]) != _BOX
        if self.task == "open":
            return int(self.kind[first]) != _BOX
        # fetch / open-then-fetch: the object is on the floor next to the second argument.
        if self.carried == first or self.kind[first] == _BOX:
            return False
        (x1, y1), (x2, y2) = self.pos[first], self.pos[second]
        return abs(int(x1) - int(x2)) + abs(int(y1) - int(y2)) == 1

    def _at(self, slot: int) -> tuple[int, int]:
        if slot == self.carried:
            return self.agent
        return int(self.pos[slot, 0]), int(self.pos[slot, 1])


def make_toy_env(task: str, **kwargs: Any) -> ToyEnv:
    """Build the toy environment of ``task`` (``"fetch"`` or ``"toy/fetch"``).

    Args:
        task: A name from :data:`TOY_TASKS`, optionally prefixed ``toy/``.
        **kwargs: ``size``, ``num_objects``, ``max_steps``, ``render_mode`` (see :class:`ToyEnv`).
    """
    return ToyEnv(task.removeprefix("toy/"), **kwargs)


def register_toy_envs() -> None:
    """Register every toy task with Gymnasium as :func:`toy_gym_id` (idempotent).

    Afterwards ``gym.make("skillbank/Toy-fetch-v0")`` and ``gym.make_vec(...)`` work.
    """
    for task in TOY_TASKS:
        gym_id = toy_gym_id(task)
        if gym_id not in gym.registry:
            gym.register(
                gym_id,
                entry_point=f"{__name__}:ToyEnv",
                kwargs={"task": task},
                max_episode_steps=None,
            )


# --- the scripted demonstrator --------------------------------------------------------------------

_PLANS: dict[str, tuple[str, ...]] = {
    "goto": ("GoTo",),
    "pickup": ("GoTo", "Pickup"),
    "open": ("GoTo", "Open"),
    "fetch": ("GoTo", "Pickup", "GoToDrop", "Drop"),
    "open-pickup": ("GoTo", "Open", "Pickup"),
    "open-then-fetch": ("GoTo", "Open", "Pickup", "GoToDrop", "Drop"),
}
_ONE_STEP = {"Pickup": PICKUP, "Open": TOGGLE, "Drop": DROP}


def _path_to_facing(env: ToyEnv, targets: set[tuple[int, int]]) -> list[int]:
    """Shortest action sequence (left/right/forward) to a pose facing one of ``targets``.

    Breadth-first search over poses (x, y, heading); ties are broken by action order, so the
    path is a deterministic function of the state.
    """
    start = (env.agent[0], env.agent[1], env.heading)
    parents: dict[tuple[int, int, int], tuple[tuple[int, int, int], int] | None] = {start: None}
    queue = deque([start])
    while queue:
        pose = queue.popleft()
        x, y, h = pose
        if (x + _DIRS[h][0], y + _DIRS[h][1]) in targets:
            path: list[int] = []
            step = parents[pose]
            while step is not None:
                pose, action = step
                path.append(action)
                step = parents[pose]
            return path[::-1]
        dx, dy = _DIRS[h]
        for action, nxt in (
            (LEFT, (x, y, (h - 1) % 4)),
            (RIGHT, (x, y, (h + 1) % 4)),
            (FORWARD, (x + dx, y + dy, h)),
        ):
            if nxt not in parents and (action != FORWARD or env.free(nxt[0], nxt[1])):
                parents[nxt] = (pose, action)
                queue.append(nxt)
    raise RuntimeError(f"toy/{env.task}: no path to {sorted(targets)} (layout check failed)")


class ToyDemonstrator:
    """Scripted expert of one toy task; solves every seed, with its subgoals as ground truth.

    Implements :class:`skillbank.interfaces.DemoSource`. It reads the world's state (it is an
    expert, not a learner), walks shortest paths, and labels each action with the subgoal it
    serves: ``"GoTo"``, ``"Pickup"``, ``"Open"`` or ``"Drop"`` (going to a drop spot is
    ``"GoTo"`` too). Episodes hold ``observations["obs"]`` (T+1, O) float32 and ``actions``
    (T,) int64.

    Args:
        task: A toy task, ``"fetch"`` or ``"toy/fetch"``.
        **env_kwargs: Passed to :class:`ToyEnv` (``size``, ``num_objects``, ``max_steps``).

    Example:
        >>> episode = ToyDemonstrator("open-then-fetch").demonstrate(seed=3)
        >>> episode.annotations.labels
        ('GoTo', 'Open', 'Pickup', 'GoTo', 'Drop')
    """

    def __init__(self, task: str, **env_kwargs: Any) -> None:
        self._env = make_toy_env(task, **env_kwargs)

    def __repr__(self) -> str:
        return f"ToyDemonstrator({self._env.task!r})"

    @property
    def env_id(self) -> str:
        """Canonical id, e.g. ``"toy/fetch"``."""
        return f"toy/{self._env.task}"

    @property
    def demonstrator(self) -> str:
        """Who produces the episodes: ``"toy-scripted"``."""
        return DEMONSTRATOR

    def demonstrate(self, seed: int) -> Episode:
        """Solve the task on ``seed`` and return the episode (it always succeeds)."""
        env = self._env
        obs, info = env.reset(seed=seed)
        observations = [obs]
        actions: list[int] = []
        rewards: list[float] = []
        terminations: list[bool] = []
        truncations: list[bool] = []
        boundaries: list[int] = []
        labels: list[str] = []
        for subgoal in _PLANS[env.task]:
            first, second = env.args
            if subgoal == "GoTo":
                plan = _path_to_facing(env, {env._at(first)})
            elif subgoal == "GoToDrop":
                x, y = env._at(second)
                spots = {(x + dx, y + dy) for dx, dy in _DIRS if env.free(x + dx, y + dy)}
                plan = _path_to_facing(env, spots)  # the agent's own cell counts, once it moves
            else:
                plan = [_ONE_STEP[subgoal]]
            if not plan:
                continue  # already there: a subgoal of no steps leaves no boundary
            boundaries.append(len(actions))
            labels.append(subgoal.removesuffix("Drop") if subgoal == "GoToDrop" else subgoal)
            for action in plan:
                obs, reward, terminated, truncated, info = env.step(action)
                observations.append(obs)
                actions.append(action)
                rewards.append(float(reward))
                terminations.append(terminated)
                truncations.append(truncated)
                if terminated or truncated:
                    break
            if terminated or truncated:
                break
        return Episode(
            observations={"obs": np.stack(observations)},  # (T+1, O)
            actions=np.asarray(actions, dtype=np.int64),  # (T,)
            rewards=np.asarray(rewards, dtype=np.float32),
            terminations=np.asarray(terminations, dtype=np.bool_),
            truncations=np.asarray(truncations, dtype=np.bool_),
            task=TaskSpec(env_id=self.env_id, mission=info["mission"]),
            success=bool(info["success"]),
            seed=seed,
            demonstrator=DEMONSTRATOR,
            annotations=SubgoalAnnotation(boundaries=tuple(boundaries), labels=tuple(labels)),
        )
