"""Environment ids: one name for every environment skillbank knows, resolved in one place.

Ids read ``babyai/<Level>`` (``babyai/GoToLocal`` -> ``BabyAI-GoToLocal-v0``),
``metaworld/<task>-v3`` (the MT50 tasks, e.g. ``metaworld/reach-v3``), ``toy/<task>``
(:data:`~skillbank.envs.toy.TOY_TASKS`), or any registered Gymnasium id (``CartPole-v1``;
``BabyAI-GoToLocal-v0`` becomes ``babyai/GoToLocal``).

minigrid and metaworld are imported only inside the functions that need them; without them a
``babyai/...`` or ``metaworld/...`` id raises :class:`~skillbank.errors.MissingExtraError` naming
the pip command. An unknown id raises :class:`~skillbank.errors.EnvironmentNotFoundError` listing
the closest valid names.

Example:
    >>> resolve_env_id("toy/fetch").family
    'toy'
    >>> resolve_env_id("babyai/GoToLocal").gym_id  # doctest: +SKIP
    'BabyAI-GoToLocal-v0'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym

from skillbank.envs.grid_approach import GridApproachProposer
from skillbank.envs.toy import TOY_TASKS, make_toy_env
from skillbank.errors import EnvironmentNotFoundError, MissingExtraError
from skillbank.interfaces import BoundaryProposer
from skillbank.types import Episode

__all__ = [
    "BABYAI_ALIASES",
    "FAMILIES",
    "EnvSpec",
    "babyai_levels",
    "boundary_proposer",
    "list_env_ids",
    "make_env",
    "metaworld_tasks",
    "resolve_env_id",
]

Family = Literal["babyai", "metaworld", "toy", "gym"]
FAMILIES: tuple[Family, ...] = ("babyai", "metaworld", "toy", "gym")
"""Environment families: the prefix of an id, or ``"gym"`` for a plain Gymnasium id."""

BABYAI_ALIASES: dict[str, str] = {"PutNext": "PutNextS7N4"}
"""BabyAI level names of the papers that minigrid registers only under a sized name: the papers'
``PutNext`` (an object next to another, in a 7x7-room maze) is ``PutNextS7N4``."""

_EXTRAS = {"babyai": ("minigrid", "BabyAI"), "metaworld": ("metaworld", "Meta-World")}


@dataclass(frozen=True, slots=True)
class EnvSpec:
    """A resolved environment id.

    Attributes:
        env_id: The canonical id, e.g. ``"babyai/GoToLocal"``, ``"metaworld/reach-v3"``,
            ``"toy/fetch"``, ``"CartPole-v1"``.
        family: ``"babyai"``, ``"metaworld"``, ``"toy"`` or ``"gym"``.
        name: The id within its family: the level, task, or Gymnasium id.
        gym_id: The Gymnasium id that builds it (``None`` for Meta-World tasks, which metaworld
            builds by task name).
    """

    env_id: str
    family: Family
    name: str
    gym_id: str | None

    def __post_init__(self) -> None:
        if not self.env_id or not self.name:
            raise ValueError("EnvSpec.env_id and .name must be non-empty")
        if self.family not in FAMILIES:
            raise ValueError(f"EnvSpec.family must be one of {FAMILIES}, got {self.family!r}")


# --- optional families ----------------------------------------------------------------------------


def _require_extra(family: str) -> None:
    module, what = _EXTRAS[family]
    try:
        __import__(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} environments need {module}, which is not installed",
            hint=f"pip install 'skillbank[{family}]'",
        ) from exc


def babyai_levels() -> list[str]:
    """Every registered BabyAI level name (``"GoToLocal"``, ``"GoToObjS6-v1"``), sorted.

    The names are the Gymnasium ids that start with ``BabyAI-``, without that prefix and without
    a ``-v0`` suffix.

    Raises:
        MissingExtraError: If minigrid is not installed.
    """
    _require_extra("babyai")
    return sorted(
        key.removeprefix("BabyAI-").removesuffix("-v0")
        for key in gym.registry
        if key.startswith("BabyAI-")
    )


def metaworld_tasks() -> list[str]:
    """The 50 Meta-World MT50 task names (``"reach-v3"``, ...), sorted.

    Raises:
        MissingExtraError: If metaworld is not installed.
    """
    _require_extra("metaworld")
    from metaworld.env_dict import MT50_V3

    return sorted(MT50_V3)


def list_env_ids(family: Family | None = None) -> list[str]:
    """Canonical ids of every environment of ``family`` (or of every installed family).

    Families whose extra is missing are left out when ``family`` is ``None``; naming one raises
    :class:`~skillbank.errors.MissingExtraError`. Plain Gymnasium ids are listed only when
    ``family == "gym"``.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    ids: list[str] = []
    if family in (None, "toy"):
        ids += [f"toy/{task}" for task in TOY_TASKS]
    for name, lister in (("babyai", babyai_levels), ("metaworld", metaworld_tasks)):
        if family in (None, name):
            try:
                ids += [f"{name}/{item}" for item in lister()]
            except MissingExtraError:
                if family is not None:
                    raise
    if family == "gym":
        ids += sorted(gym.registry)
    return ids


# --- resolution -----------------------------------------------------------------------------------


def _not_found(env_id: str, candidates: list[str], what: str) -> EnvironmentNotFoundError:
    lowered = {c.lower(): c for c in candidates}
    close = [
        lowered[c] for c in difflib.get_close_matches(env_id.lower(), lowered, n=5, cutoff=0.6)
    ]
    closest = ", ".join(close) if close else "none close"
    return EnvironmentNotFoundError(f"unknown {what} {env_id!r}; closest: {closest}")


def _resolve_babyai(env_id: str, level: str) -> EnvSpec:
    _require_extra("babyai")
    level = BABYAI_ALIASES.get(level, level)
    for gym_id in (f"BabyAI-{level}-v0", f"BabyAI-{level}"):
        if gym_id in gym.registry:
            name = gym_id.removeprefix("BabyAI-").removesuffix("-v0")
            return EnvSpec(f"babyai/{name}", "babyai", name, gym_id)
    versions = sorted(k for k in gym.registry if k.startswith(f"BabyAI-{level}-v"))
    if len(versions) == 1:  # "GoToObjS6" -> "BabyAI-GoToObjS6-v1"
        name = versions[0].removeprefix("BabyAI-")
        return EnvSpec(f"babyai/{name}", "babyai", name, versions[0])
    raise _not_found(env_id, [f"babyai/{lv}" for lv in babyai_levels()], "BabyAI level")


def _resolve_metaworld(env_id: str, task: str) -> EnvSpec:
    tasks = metaworld_tasks()
    for name in (task, f"{task}-v3"):
        if name in tasks:
            return EnvSpec(f"metaworld/{name}", "metaworld", name, None)
    raise _not_found(env_id, [f"metaworld/{t}" for t in tasks], "Meta-World task")


def _all_known_ids() -> list[str]:
    """Everything an id could have meant: every family that is installed, and Gymnasium's ids."""
    ids = list_env_ids()
    return ids + [k for k in gym.registry if not k.startswith("BabyAI-")]


def resolve_env_id(env_id: str) -> EnvSpec:
    """Resolve any accepted spelling of an environment id to its :class:`EnvSpec`.

    Raises:
        EnvironmentNotFoundError: Unknown id (the message lists the closest valid names).
        MissingExtraError: The id needs minigrid or metaworld, which is not installed.

    Example:
        >>> resolve_env_id("toy/fetch")
        EnvSpec(env_id='toy/fetch', family='toy', name='fetch', gym_id='skillbank/Toy-fetch-v0')
    """
    env_id = env_id.strip()
    if not env_id:
        raise ValueError("env_id must be a non-empty string")
    prefix, _, rest = env_id.partition("/")
    if prefix == "toy" and rest:
        if rest not in TOY_TASKS:
            raise _not_found(env_id, [f"toy/{t}" for t in TOY_TASKS], "toy task")
        from skillbank.envs.toy import register_toy_envs, toy_gym_id

        register_toy_envs()
        return EnvSpec(env_id, "toy", rest, toy_gym_id(rest))
    if prefix == "babyai" and rest:
        return _resolve_babyai(env_id, rest)
    if prefix == "metaworld" and rest:
        return _resolve_metaworld(env_id, rest)
    if env_id.startswith("BabyAI-"):
        return _resolve_babyai(env_id, env_id.removeprefix("BabyAI-").removesuffix("-v0"))
    if env_id in gym.registry:
        return EnvSpec(env_id, "gym", env_id, env_id)
    raise _not_found(env_id, _all_known_ids(), "environment")


def boundary_proposer(episode: Episode) -> BoundaryProposer | None:
    """The boundary proposer of the episode's environment family, or ``None`` if it has none.

    BabyAI (MiniGrid) episodes get :class:`~skillbank.envs.grid_approach.GridApproachProposer`.
    """
    env_id = episode.task.env_id
    if env_id.partition("/")[0] == "babyai" or env_id.startswith("BabyAI-"):
        return GridApproachProposer()
    return None


def make_env(env_id: str, *, seed: int | None = None, **kwargs: Any) -> gym.Env[Any, Any]:
    """Build the environment of any accepted id.

    Args:
        env_id: See :func:`resolve_env_id`.
        seed: Meta-World only: seeds the task sampler (metaworld ignores ``reset(seed=)`` for
            that). Other environments are seeded by ``reset(seed=)`` as usual.
        **kwargs: Passed to the environment's constructor.

    Raises:
        EnvironmentNotFoundError: Unknown id.
        MissingExtraError: The extra the environment needs is not installed.
    """
    spec = resolve_env_id(env_id)
    if spec.family == "toy":
        return make_toy_env(spec.name, **kwargs)
    if spec.family == "metaworld":
        import metaworld  # noqa: F401 - registers the Meta-World/* ids

        env: gym.Env[Any, Any] = gym.make(
            "Meta-World/MT1", env_name=spec.name, seed=seed, disable_env_checker=True, **kwargs
        )
        return env
    assert spec.gym_id is not None
    return gym.make(spec.gym_id, **kwargs)
