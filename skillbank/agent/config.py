"""The agent's settings and reports: AgentConfig, LearnReport, EvalResult.

Example:
    >>> AgentConfig(seed=3).seeded().skill.seed
    3
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skillbank.errors import ConfigError
from skillbank.learning.cluster import ClusterConfig
from skillbank.learning.composite_mining import CompositeMiningConfig
from skillbank.learning.composite_training import CompositeTrainConfig
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.segment import SegmenterConfig
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.skill_vae import SkillVAETrainConfig

__all__ = [
    "SETTING_PRESETS",
    "AgentConfig",
    "EpisodeOutcome",
    "EvalResult",
    "LearnReport",
    "SkillCall",
    "expand_presets",
]

SETTING_PRESETS: Mapping[str, tuple[str, ...]] = {
    "hindsight": (
        "skill.argument=hindsight",
        "controller.target_copy=true",
        "skill.relabel_targets=true",
        "controller.history=true",
        "skill.relabel_nearby=true",
        "sequence_positions=32",
        "skill.relabel_held=true",
        "skill.read_history=true",
    ),
}
"""Named bundles of settings, given as ``@name`` wherever settings are (``--set @hindsight``).

``hindsight``: the best measured recipe for BabyAI's levels learned in one call (the
benchmark's ``--protocol joint``): hindsight targets copied off the mission and relabelled to
what the mission names (beside it, and never what the agent holds), the call history, and 32
mission positions. The shipped BabyAI pack was learned with the first five (its manifest spells
them out); ``skill.relabel_held`` joined when duration-aware termination heads made it a gain
(its docstring). ``skill.read_history``: skills read the explored map where the demonstrations
recorded one (``--map``) and nothing changes where they did not; with the map it beat the map
read by the controller alone (seed 0, BossLevel 59.0% vs 51.2, no map 50.8) and the map beat no
map on BossLevel on every seed (README). Off by default because level by level (frozen early
skills) and on the demo's primitive levels alone the defaults did better (README, "Experimental
switches").
"""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Settings of :class:`ProceduralMemoryAgent`.

    Attributes:
        segmenter: The unsupervised segmenter's settings.
        vae: Skill VAE training; ``vae.latent_dim`` is the key dimension.
        cluster: How segments become skills (and how many).
        skill: Training of each skill module.
        controller: Training of the controller.
        explain_threshold: A segment is explained by an existing skill when its mean per-step
            action log-likelihood under that skill reaches this (nats; log 0.5 by default).
        explain_candidates: Existing skills, nearest by key, whose likelihood is checked.
        merge_tolerance: Clusters merge into one skill when the VAE decodes each one's segments
            with the other's centre losing at most this many nats per step (0: never merge).
        top_k: Skills mixed per decision at run time.
        sample_actions: Sample discrete actions (seeded) rather than take the argmax.
        sample_skills: Sample the skill from the controller's attention (seeded; top_k = 1).
        sample_targets: Sample a target argument from the controller's distribution over each
            of its groups (seeded) rather than take the most likely value. No clear gain: same
            memories and 256 unseen BossLevel episodes, 50.8% vs 50.8 (no map, seed 0), 59.8 vs
            59.0 and 53.1 vs 50.8 (map, seeds 0 and 3).
        interrupt_margin: Interrupt a running skill when the controller's attention prefers
            another by more than this (1.0: skills run until their termination head fires).
        max_skill_steps: A skill that has not stopped after this many steps is stopped.
        stall_steps: K > 0: a call whose last K actions changed nothing in the observation ends,
            and the controller's next choice passes over the skill that stalled
            (:class:`~skillbank.agent.executor.SkillExecutor`); 0: off. Not a clear gain: in
            failed BossLevel episodes of the map recipe (seed 3) 17% of the steps change nothing
            the agent sees (2% without the map, seed 0), nearly all in runs of three or more;
            K = 3 ends those runs, yet on the same memories and 256 unseen episodes BossLevel
            gave 50.0% vs 50.8 (no map, seed 0) and, with the map, 59.4 / 51.6 / 48.8 / 54.7 vs
            59.0 / 52.0 / 48.0 / 50.8 (seeds 0-3).
        num_envs: Environments stepped together in :meth:`ProceduralMemoryAgent.evaluate`.
        replay_steps: Steps of earlier learn calls' segments kept (a seeded uniform subset of
            whole segments, stored in the memory as ``segment-replay-v2``: ~0.16 KB a step for
            BabyAI's 2016 features, so 8192 steps ~1.3 MB) and replayed with new data to the
            controller, so it does not forget. 8192 by measurement on the small BabyAI
            curriculum (GoToLocal, PickupLoc, Open, PutNextLocal, GoTo learned one by one; seeds
            0-2; 128 eval episodes): mean final success over the five levels 0.457 vs 0.413 at
            2048 (PickupLoc 0.23 vs 0.07, GoToLocal 0.59 vs 0.55), learning CPU 126 s vs 101 s;
            16384 did not help (0.439, 160 s: the last level learns worse, GoTo 0.49 vs 0.56).
        composites: Learn composite skills (recurring sequences of skills, see
            :mod:`skillbank.learning.composite_mining`) and let the controller choose them; off:
            flat skills only, and composites already in the memory are not used.
        composite_mining: The rule for when a recurring sequence becomes a composite.
        composite_training: Training of the composites' sub-controllers and the relabelled
            controller.
        sequence_positions: Positions of a token sequence (a mission) encoded one-hot beside
            its bag of tokens when a memory's features are first fitted (later learn calls keep
            the stored features); the controller's target copy can point only at these
            (:mod:`skillbank.learning.features`). 12 by default; 32 with the hindsight
            switches, the call history and ``skill.relabel_nearby`` (the README's table): the
            six benchmark levels learned in one call, seeds 0-3, BossLevel 0.505 mean vs 0.457
            without those three.
        seed: Seed of every learning step (segmenter, VAE, clustering, modules, controller).
    """

    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    vae: SkillVAETrainConfig = field(default_factory=SkillVAETrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    skill: SkillTrainConfig = field(default_factory=SkillTrainConfig)
    controller: ControllerTrainConfig = field(default_factory=ControllerTrainConfig)
    explain_threshold: float = math.log(0.5)
    explain_candidates: int = 3
    merge_tolerance: float = 0.05
    top_k: int = 1
    sample_actions: bool = True
    sample_skills: bool = True
    sample_targets: bool = False
    interrupt_margin: float = 1.0
    max_skill_steps: int = 64
    stall_steps: int = 0
    num_envs: int = 64
    replay_steps: int = 8192
    composites: bool = False
    composite_mining: CompositeMiningConfig = field(default_factory=CompositeMiningConfig)
    composite_training: CompositeTrainConfig = field(default_factory=CompositeTrainConfig)
    sequence_positions: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        if self.replay_steps < 0:
            raise ValueError("AgentConfig.replay_steps must be >= 0")
        if self.sequence_positions < 1:
            raise ValueError("AgentConfig.sequence_positions must be >= 1")
        if self.top_k < 1 or self.explain_candidates < 1:
            raise ValueError("AgentConfig.top_k and .explain_candidates must be >= 1")
        if self.max_skill_steps < 1 or self.num_envs < 1:
            raise ValueError("AgentConfig.max_skill_steps and .num_envs must be >= 1")
        if self.stall_steps < 0:
            raise ValueError(f"AgentConfig.stall_steps must be >= 0, got {self.stall_steps}")
        if self.composites and self.controller.history is True:
            raise ValueError(
                "AgentConfig.composites with controller.history=True: composites relabel "
                "the controller without call histories; turn one of them off (or leave "
                "controller.history unset: off with composites)"
            )

    def with_settings(self, settings: Sequence[str]) -> AgentConfig:
        """This config with ``part.field=value`` (or ``field=value``) settings applied (in any
        order; a later setting of the same field wins; each part is checked once, whole).
        ``@name`` stands for the settings of :data:`SETTING_PRESETS` ``[name]``, in its place.

        A value parses as the field's current value does: ``true``/``false`` for switches,
        numbers, comma-separated numbers for tuples (``128,128``), ``none`` for an unset
        switch, text otherwise.

        Raises:
            ConfigError: An unknown part or field, a value that does not parse, or one the
                config refuses (its own check's message).

        Example:
            >>> AgentConfig().with_settings(["skill.argument=hindsight", "top_k=2"]).top_k
            2
        """
        changes: dict[str, dict[str, Any]] = {}  # part ("" = the config itself) -> field -> value
        for setting in expand_presets(settings):
            name, sep, text = setting.partition("=")
            path = name.strip().split(".")
            if not sep or not all(path) or len(path) > 2:
                raise ConfigError(f"setting {setting!r} is not part.field=value or field=value")
            part_name, field_name = ("", path[0]) if len(path) == 1 else (path[0], path[1])
            part = self if not part_name else getattr(self, part_name, None)
            if part is None or not dataclasses.is_dataclass(part):
                raise ConfigError(
                    f"setting {setting!r}: AgentConfig has no part {part_name!r}",
                    hint=f"parts: {', '.join(_parts(self))}",
                )
            value = _parse_field(part, field_name, text.strip(), setting)
            changes.setdefault(part_name, {})[field_name] = value
        try:
            parts = {
                name: dataclasses.replace(getattr(self, name), **fields)
                for name, fields in changes.items()
                if name
            }
            return dataclasses.replace(self, **changes.get("", {}), **parts)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"settings {list(settings)}: {error}") from None

    def seeded(self) -> AgentConfig:
        """This config with ``seed`` pushed into every learning step's own seed."""
        s = self.seed
        return dataclasses.replace(
            self,
            segmenter=dataclasses.replace(self.segmenter, seed=s),
            vae=dataclasses.replace(self.vae, seed=s),
            cluster=dataclasses.replace(self.cluster, seed=s),
            skill=dataclasses.replace(self.skill, seed=s),
            controller=dataclasses.replace(self.controller, seed=s),
            composite_training=dataclasses.replace(self.composite_training, seed=s),
        )


def expand_presets(settings: Sequence[str]) -> list[str]:
    """``settings`` with every ``@name`` replaced by the settings of that preset, in order.

    Raises:
        ConfigError: No preset has that name.
    """
    expanded: list[str] = []
    for setting in settings:
        name = setting.strip()
        if not name.startswith("@"):
            expanded.append(setting)
            continue
        preset = SETTING_PRESETS.get(name[1:])
        if preset is None:
            raise ConfigError(
                f"setting {setting!r}: no preset {name[1:]!r}",
                hint=f"presets: {', '.join('@' + p for p in SETTING_PRESETS)}",
            )
        expanded.extend(preset)
    return expanded


def _parts(config: AgentConfig) -> list[str]:
    """The names of the config's sub-configs (the ``part`` of ``part.field=value``)."""
    return [
        f.name
        for f in dataclasses.fields(config)
        if dataclasses.is_dataclass(getattr(config, f.name))
    ]


def _parse_like(current: Any, text: str) -> Any:
    """``text`` parsed as a value of ``current``'s type (see :meth:`AgentConfig.with_settings`)."""
    lowered = text.lower()
    if isinstance(current, bool) or current is None:
        if lowered in ("true", "on", "yes", "1"):
            return True
        if lowered in ("false", "off", "no", "0"):
            return False
        if current is None and lowered == "none":
            return None
        if current is not None:
            raise ValueError(f"{text!r} is not true/false")
    if current is None or isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            want = "true/false/none or a number" if current is None else "a number"
            raise ValueError(f"{text!r} is not {want}") from None
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if isinstance(current, tuple):
        kind = type(current[0]) if current else int
        return tuple(kind(v) for v in text.split(",") if v.strip())
    if isinstance(current, str):
        return text
    raise ValueError(f"a {type(current).__name__} cannot be set from the command line")


def _parse_field(config: Any, name: str, text: str, setting: str) -> Any:
    """The value of field ``name`` of ``config`` (a frozen dataclass) parsed from ``text``."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    if name not in fields:
        raise ConfigError(
            f"setting {setting!r}: {type(config).__name__} has no field {name!r}",
            hint=f"fields: {', '.join(fields)}",
        )
    current = getattr(config, name)
    if dataclasses.is_dataclass(current):
        raise ConfigError(
            f"setting {setting!r}: {name!r} is a part, not a field",
            hint=f"set one of its fields, e.g. {name}.{dataclasses.fields(current)[0].name}=...",
        )
    # an optional field (annotated ``X | None``) takes ``none`` whatever its current value
    if "None" in str(fields[name].type) and text.lower() == "none":
        return None
    try:
        return _parse_like(current, text)
    except ValueError as error:
        raise ConfigError(f"setting {setting!r}: {error}") from None


@dataclass(frozen=True, slots=True)
class LearnReport:
    """What one call of :meth:`ProceduralMemoryAgent.learn` did.

    Attributes:
        num_episodes: Demonstrations used (with actions).
        num_segments: Segments cut from them.
        num_reused: Segments explained by skills already in memory.
        new_skill_ids: Skills added to the memory, in key order.
        skill_ids: Every skill the controller now chooses from, in key order.
        segmentation_f1: Boundary F1 (±1 step) against annotations, ``None`` without them.
        cluster_purity: Purity of the segment -> skill assignment against annotations.
        silhouettes: k -> silhouette of the clusterings tried for the new skills.
        train_s: Wall-clock seconds of the whole call.
        composite_ids: Every composite skill the controller now chooses from, in key order
            (after the primitives).
        new_composite_ids: Composite skills added by this call.
        dataset_scores: (boundary F1, cluster purity) of each dataset given, in order, scored
            like the whole (``(None, None)`` for one without annotations); the clustering is
            the call's, so each dataset's purity counts skills shared with the others.
    """

    num_episodes: int
    num_segments: int
    num_reused: int
    new_skill_ids: tuple[str, ...]
    skill_ids: tuple[str, ...]
    segmentation_f1: float | None
    cluster_purity: float | None
    silhouettes: Mapping[int, float]
    train_s: float
    composite_ids: tuple[str, ...] = ()
    new_composite_ids: tuple[str, ...] = ()
    dataset_scores: tuple[tuple[float | None, float | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "num_episodes": self.num_episodes,
            "num_segments": self.num_segments,
            "num_reused": self.num_reused,
            "new_skill_ids": list(self.new_skill_ids),
            "skill_ids": list(self.skill_ids),
            "segmentation_f1": self.segmentation_f1,
            "cluster_purity": self.cluster_purity,
            "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
            "train_s": self.train_s,
            "composite_ids": list(self.composite_ids),
            "new_composite_ids": list(self.new_composite_ids),
            "dataset_scores": [list(pair) for pair in self.dataset_scores],
        }


@dataclass(frozen=True, slots=True)
class SkillCall:
    """One skill call of an evaluation episode (``evaluate(..., trace=True)``).

    Attributes:
        step: The episode step at which the call started (0: the first action).
        skill: Id of the skill called.
        argument: The argument it was given (the controller's target; empty-width for skills
            that take none), rounded to 4 decimals.
        actions: The actions it took (discrete action spaces; empty for continuous ones).
    """

    step: int
    skill: str
    argument: tuple[float, ...] = ()
    actions: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"step", "skill", "argument", "actions"}``."""
        return {
            "step": self.step,
            "skill": self.skill,
            "argument": list(self.argument),
            "actions": list(self.actions),
        }


@dataclass(frozen=True, slots=True)
class EpisodeOutcome:
    """One evaluation episode: ``seed``, ``success``, ``steps``, its ``task`` text and, when
    traced, the skill ``calls`` it made."""

    seed: int
    success: bool
    steps: int
    task: str = ""
    calls: tuple[SkillCall, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"seed", "success", "steps", "task"}``, with ``"calls"`` when traced."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "success": self.success,
            "steps": self.steps,
            "task": self.task,
        }
        if self.calls:
            out["calls"] = [call.to_json() for call in self.calls]
        return out


@dataclass(frozen=True, slots=True)
class EvalResult:
    """What :meth:`ProceduralMemoryAgent.evaluate` measured.

    Attributes:
        env: Environment id.
        episodes: Episodes run.
        seed: Seed of the first episode (episode k uses seed + k).
        success_rate: Fraction of episodes that succeeded.
        mean_steps: Mean environment steps per episode.
        steps_per_s: Environment steps per second, agent included.
        skills_used: Skill id -> times executed.
        outcomes: Per episode, in order: its seed, success, steps and task text (``""`` where
            the environment states none), so results can be broken down by task afterwards.
    """

    env: str
    episodes: int
    seed: int
    success_rate: float
    mean_steps: float
    steps_per_s: float
    skills_used: Mapping[str, int]
    outcomes: tuple[EpisodeOutcome, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.success_rate <= 1.0:
            raise ValueError("EvalResult.success_rate must lie in [0, 1]")
        if self.outcomes and len(self.outcomes) != self.episodes:
            raise ValueError("EvalResult.outcomes must be empty or one per episode")

    def to_json(self) -> dict[str, Any]:
        """The eval JSON (keys of the issue: env, episodes, seed, success_rate, ...)."""
        return {
            "env": self.env,
            "episodes": self.episodes,
            "seed": self.seed,
            "success_rate": self.success_rate,
            "mean_steps": self.mean_steps,
            "steps_per_s": self.steps_per_s,
            "skills_used": dict(self.skills_used),
            "per_episode": [outcome.to_json() for outcome in self.outcomes],
        }
