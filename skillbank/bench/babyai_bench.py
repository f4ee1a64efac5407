"""The BabyAI curriculum benchmark: skillbank against flat behavioural cloning, side by side.

Levels run in curriculum order, primitive ones first (GoToLocal, PickupLoc, Open, PutNextLocal),
then composite ones (GoTo, Pickup, Unlock, PutNext, Synth, GoToSeq, SynthSeq, BossLevel). Per level:

1. the bot demonstrates ``demos`` episodes on training seeds ``0, 1, ...`` (seeds it fails on are
   skipped and logged; datasets are cached under ``out_dir/demos`` and reused);
2. the procedural-memory agent learns the level's demonstrations into one growing memory (skills
   of earlier levels are reused, new ones added), and reports segmentation F1 and cluster purity
   against the bot's subgoals;
3. flat BC is trained from scratch on every demonstration seen so far (the same data the agent has
   had; a cumulative, mission-conditioned baseline is the stronger one). With the agent in the
   run, flat BC is fair by construction: its widths are chosen so its parameter count is within
   ±20% of what the agent acts with (stored skills + controller; the skill VAE, which only
   encodes segments while learning, is reported separately), counted on the trained agent at
   run time (:func:`fair_flat_bc_config`), and it gets the same CPU time to train as the agent
   has spent learning so far (this process's CPU seconds, which other users of a shared machine
   do not shrink; its epochs are only a cap);
4. both are evaluated on the same ``eval_episodes`` seeds starting at :data:`EVAL_SEED` (10**9),
   disjoint from every training seed.

That is the ``curriculum`` protocol. The ``joint`` protocol (``--protocol joint``) gives both
methods every level's demonstrations at once: the agent learns them in one call (segmentation F1
and purity still per level, :attr:`LearnReport.dataset_scores`), flat BC trains once on all of
them with the agent's parameter count and CPU time, and then each level is evaluated. Side by side,
the two protocols measure what learning level by level (skills frozen once stored) costs.

Budgets: ``smoke`` (CI, a few minutes: two primitive levels, tiny data and networks, 64 evaluation
episodes instead of 512 — the result file says so), ``small`` and ``full`` (every level, 512
evaluation episodes; ``full`` totals 20,000 demonstrations, the issue's target budget).

Example:
    >>> result = run_babyai_bench(  # doctest: +SKIP
    ...     BUDGETS["smoke"], seed=0, out_dir=Path("runs/bench")
    ... )
    >>> result.levels[0].flat_bc_success  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.bench.baselines.flat_bc import (
    FlatBCConfig,
    FlatBCPolicy,
    count_parameters,
    encoder_for,
    match_parameter_count,
    train_flat_bc,
)
from skillbank.bench.run_info import machine_info, package_versions
from skillbank.envs.grid_map import DEFAULT_MAP_RADIUS
from skillbank.events import Event, NullObserver, Observer
from skillbank.types import Episode

__all__ = [
    "BUDGETS",
    "EVAL_SEED",
    "FLAT_BC_BUDGET",
    "PARAM_TOLERANCE",
    "PRIMITIVE_LEVELS",
    "PROTOCOLS",
    "BabyAIBenchResult",
    "BenchBudget",
    "LevelPlan",
    "LevelResult",
    "agent_parameter_counts",
    "collect_level_demos",
    "fair_flat_bc_config",
    "markdown_table",
    "run_babyai_bench",
    "scaled_agent_config",
    "select_levels",
]

_log = logging.getLogger(__name__)

EVAL_SEED = 10**9
"""First evaluation seed; training seeds count up from 0 and never get near it."""

PARAM_TOLERANCE = 0.2
"""Flat BC's parameter count may differ from the agent's acting parameters by this fraction."""

FLAT_BC_BUDGET = (
    "equal CPU time: flat BC trains for the CPU seconds (this process, time.process_time) "
    "the agent spent learning"
)
"""How flat BC's training budget is matched to the agent's (written into result files)."""

PRIMITIVE_LEVELS = ("GoToLocal", "PickupLoc", "Open", "PutNextLocal")
COMPOSITE_LEVELS = (
    "GoTo",
    "Pickup",
    "Unlock",
    "PutNext",
    "Synth",
    "GoToSeq",
    "SynthSeq",
    "BossLevel",
)


@dataclass(frozen=True, slots=True)
class LevelPlan:
    """One curriculum step.

    Attributes:
        level: BabyAI level name, e.g. ``"GoToLocal"``.
        demos: Bot demonstrations of this level to learn from.
    """

    level: str
    demos: int

    def __post_init__(self) -> None:
        if self.demos < 1:
            raise ValueError(f"LevelPlan.demos must be >= 1, got {self.demos} for {self.level}")


@dataclass(frozen=True, slots=True)
class BenchBudget:
    """How much the benchmark runs.

    Attributes:
        name: ``"smoke"``, ``"small"`` or ``"full"``.
        levels: The curriculum, in order.
        eval_episodes: Evaluation episodes per level and method (512 except for smoke).
        flat_bc: Flat BC settings (its ``seed`` is replaced by the run's seed). With the agent
            in the run its widths are rescaled to the agent's parameter count and its ``epochs``
            only cap the CPU-time budget.
        agent_scale: Multiplies the agent's training epochs (smoke trains briefly).
        note: What this budget leaves out, written into the result file.
    """

    name: str
    levels: tuple[LevelPlan, ...]
    eval_episodes: int
    flat_bc: FlatBCConfig
    agent_scale: float = 1.0
    note: str = ""

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("BenchBudget.levels must not be empty")
        if self.eval_episodes < 1:
            raise ValueError("BenchBudget.eval_episodes must be >= 1")

    @property
    def total_demos(self) -> int:
        """Demonstrations over the whole curriculum."""
        return sum(p.demos for p in self.levels)


BUDGETS: dict[str, BenchBudget] = {
    "smoke": BenchBudget(
        name="smoke",
        levels=(LevelPlan("GoToLocal", 48), LevelPlan("PickupLoc", 48)),
        eval_episodes=64,
        # The full-size network (comparable in parameters to the agent), trained briefly.
        flat_bc=FlatBCConfig(num_actions=7, epochs=25, episodes_per_batch=8, lr=2e-3),
        agent_scale=0.2,
        note="smoke: 2 levels, 48 demos each, 64 evaluation episodes per level (not 512)",
    ),
    "small": BenchBudget(
        name="small",
        levels=(
            *(LevelPlan(level, 500) for level in PRIMITIVE_LEVELS),
            *(LevelPlan(level, 250) for level in COMPOSITE_LEVELS),
        ),
        eval_episodes=512,
        flat_bc=FlatBCConfig(num_actions=7, epochs=10, episodes_per_batch=16),
        agent_scale=0.5,
    ),
    "full": BenchBudget(
        name="full",
        levels=(
            *(LevelPlan(level, 2500) for level in PRIMITIVE_LEVELS),
            *(LevelPlan(level, 1250) for level in COMPOSITE_LEVELS),
        ),
        eval_episodes=512,
        flat_bc=FlatBCConfig(num_actions=7, epochs=20, episodes_per_batch=16),
    ),
}
"""The named budgets of ``skillbank bench babyai --budget``."""


def select_levels(
    budget: BenchBudget,
    levels: Sequence[str] | None = None,
    demos: Mapping[str, int] | None = None,
) -> BenchBudget:
    """``budget`` cut to ``levels`` (curriculum order kept), with ``demos`` overriding counts.

    Raises:
        ValueError: A level is not in the budget, or a demonstration count is below 1.
    """
    known = [p.level for p in budget.levels]
    wanted = list(levels) if levels else known
    demos = dict(demos or {})
    unknown = sorted((set(wanted) | set(demos)) - set(known))
    if unknown:
        raise ValueError(f"levels {unknown} are not in the {budget.name} budget ({known})")
    missing = sorted(set(demos) - set(wanted))
    if missing:
        raise ValueError(f"demonstration counts for {missing}, which are not run ({wanted})")
    plans = tuple(
        LevelPlan(p.level, demos.get(p.level, p.demos)) for p in budget.levels if p.level in wanted
    )
    changed = {p.level: p.demos for p in plans if demos.get(p.level) is not None}
    note = budget.note
    if changed:
        note = (note + "; " if note else "") + f"demonstrations changed: {changed}"
    return dataclasses.replace(budget, levels=plans, note=note)


@dataclass(frozen=True, slots=True)
class LevelResult:
    """What one level measured (``None``: not measured, e.g. the agent was left out).

    Attributes:
        level: Level name.
        demos: Demonstrations of this level used.
        demos_cumulative: Demonstrations both methods had learned from when evaluated here
            (curriculum: this and every earlier level; joint: every level).
        train_seeds: (first, last) training seed tried for this level.
        eval_seeds: (first, last) evaluation seed.
        bot_success_rate: The bot's success rate on the training seeds tried.
        skillbank_success: The agent's success rate.
        flat_bc_success: Flat BC's success rate.
        segmentation_f1: Boundary F1 (±1 step) of the agent's segmentation vs the bot's subgoals.
        cluster_purity: Purity of the agent's skill assignment vs the bot's subgoal types.
        num_skills: Skills in the memory after this level (joint: after the one call).
        skillbank_train_s: Seconds the agent spent learning this level (joint: the one call).
        flat_bc_train_s: Seconds flat BC spent training.
        flat_bc_params: Flat BC's trainable parameters.
        skillbank_params: Parameters of what the agent acts with (stored skills + controller),
            which ``flat_bc_params`` is matched to.
        skillbank_vae_params: Parameters of the agent's skill VAE (used while learning only).
        flat_bc_budget_s: CPU-time budget flat BC got (the agent's learning CPU time so far);
            ``None`` without the agent (epochs only).
        flat_bc_train_cpu_s: CPU seconds flat BC spent training.
        flat_bc_updates: Gradient updates flat BC made.
        flat_bc_epochs: Epochs flat BC started.
        skillbank_steps_per_s: Environment steps/s of the agent's evaluation.
        flat_bc_steps_per_s: Environment steps/s of flat BC's evaluation.
    """

    level: str
    demos: int
    demos_cumulative: int
    train_seeds: tuple[int, int]
    eval_seeds: tuple[int, int]
    bot_success_rate: float
    skillbank_success: float | None
    flat_bc_success: float
    segmentation_f1: float | None
    cluster_purity: float | None
    num_skills: int | None
    skillbank_train_s: float | None
    flat_bc_train_s: float
    flat_bc_params: int
    skillbank_params: int | None
    skillbank_steps_per_s: float | None
    flat_bc_steps_per_s: float
    skillbank_vae_params: int | None = None
    flat_bc_budget_s: float | None = None
    flat_bc_updates: int = 0
    flat_bc_epochs: int = 0
    flat_bc_train_cpu_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-able record."""
        data = dataclasses.asdict(self)
        data["train_seeds"] = list(self.train_seeds)
        data["eval_seeds"] = list(self.eval_seeds)
        return data


@dataclass(frozen=True, slots=True)
class BabyAIBenchResult:
    """The whole run.

    Attributes:
        budget: The budget run.
        seed: Seed of every learning step.
        levels: One result per curriculum level, in order.
        skill_ids: (N,) ids of the memory's skills at the end.
        skill_keys: (N, Z) their keys (for the 2-D map of skills).
        wall_s: Seconds the run took.
        settings: Agent settings changed from the defaults (``part.field=value``).
        protocol: ``"curriculum"`` or ``"joint"`` (:func:`run_babyai_bench`).
        explored_map: The demonstrations and evaluation episodes carried the explored map.
    """

    budget: BenchBudget
    seed: int
    levels: tuple[LevelResult, ...]
    skill_ids: tuple[str, ...] = ()
    skill_keys: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, 0), np.float32)
    )
    wall_s: float = 0.0
    settings: tuple[str, ...] = ()
    protocol: str = "curriculum"
    explored_map: bool = False

    def to_json(self, command: str = "") -> dict[str, Any]:
        """The result file: per-level records plus machine, versions, seeds and command line."""
        return {
            "benchmark": "babyai",
            "budget": self.budget.name,
            "note": self.budget.note,
            "eval_episodes": self.budget.eval_episodes,
            "total_demos": self.budget.total_demos,
            "seed": self.seed,
            "protocol": self.protocol,
            "explored_map": self.explored_map,
            "agent_settings": list(self.settings),
            "eval_seed_start": EVAL_SEED,
            "command": command,
            "machine": {**machine_info(), "versions": package_versions("minigrid")},
            "flat_bc_config": self.budget.flat_bc.to_json(),
            "flat_bc_budget": FLAT_BC_BUDGET
            if any(r.flat_bc_budget_s is not None for r in self.levels)
            else f"epochs={self.budget.flat_bc.epochs} (no agent to match)",
            "param_tolerance": PARAM_TOLERANCE,
            "levels": [level.to_json() for level in self.levels],
            "num_skills": len(self.skill_ids),
            "skill_ids": list(self.skill_ids),
            "skill_keys": self.skill_keys.tolist(),
            "wall_s": self.wall_s,
        }


def collect_level_demos(
    level: str, demos: int, root: Path, observer: Observer, map_radius: int | None = None
) -> tuple[list[Episode], tuple[int, int], float]:
    """Collect ``demos`` bot episodes of ``level`` on seeds 0, 1, ... into ``root`` (with the
    explored map of ``map_radius``, if given).

    Episodes already in ``root`` are reused (collection resumes), so a second call is cheap.

    Returns:
        The episodes, the (first, last) training seed tried, and the bot's success rate on them.
    """
    from skillbank.envs.babyai import BabyAIDemoSource
    from skillbank.envs.collect import collect
    from skillbank.envs.dataset import load_dataset

    info = collect(
        functools.partial(BabyAIDemoSource, level, map_radius=map_radius),
        itertools.count(0),
        root,
        num_episodes=demos,
        observer=observer,
    )
    dataset = load_dataset(root, verify=False)
    episodes = list(dataset[:demos])
    last_seed = episodes[-1].seed
    tried = last_seed + 1
    failed = sum(1 for s in info.failures if s <= last_seed)
    return episodes, (0, last_seed), (tried - failed) / tried


def agent_parameter_counts(agent: Any) -> tuple[int, int]:
    """(acting, vae): parameters of what a trained agent acts with (its stored skills and the
    controller) and of its skill VAE (which encodes segments while learning)."""
    acting = sum(count_parameters(m) for m in agent.skills()[2])
    if agent.controller is not None:
        acting += count_parameters(agent.controller)
    vae = count_parameters(agent.vae) if agent.vae is not None else 0
    return acting, vae


def fair_flat_bc_config(
    base: FlatBCConfig, agent_params: int, budget_s: float, num_outputs: int = 7
) -> tuple[FlatBCConfig, int]:
    """``base`` resized to ``agent_params`` parameters and given ``budget_s`` CPU seconds.

    The widths come from :func:`~skillbank.bench.baselines.flat_bc.match_parameter_count`
    (counted, not trained); a match outside :data:`PARAM_TOLERANCE` is logged.

    Returns:
        The config and its parameter count.
    """
    config, count = match_parameter_count(base, max(1, agent_params), num_outputs)
    if agent_params > 0 and abs(count / agent_params - 1) > PARAM_TOLERANCE:
        _log.warning(
            "flat BC has %d parameters, the agent %d: outside ±%.0f%%",
            count,
            agent_params,
            100 * PARAM_TOLERANCE,
        )
    budgeted = dataclasses.replace(config, max_seconds=max(budget_s, 1e-3), budget_clock="process")
    return budgeted, count


def scaled_agent_config(seed: int, scale: float, settings: Sequence[str] = ()) -> Any:
    """The agent's default config with its training epochs scaled (smoke trains briefly), then
    ``settings`` (``part.field=value``, :meth:`AgentConfig.with_settings`) applied.

    Raises:
        ConfigError: A setting is unknown or malformed.
    """
    from skillbank.agent import AgentConfig

    config = AgentConfig(seed=seed)

    def scaled(sub: Any) -> Any:
        name = "num_epochs"
        return dataclasses.replace(sub, **{name: max(1, round(getattr(sub, name) * scale))})

    config = dataclasses.replace(
        config,
        vae=scaled(config.vae),
        skill=scaled(config.skill),
        controller=scaled(config.controller),
    )
    return config.with_settings(settings).seeded()


PROTOCOLS = ("curriculum", "joint")
"""How the agent and flat BC meet the levels' demonstrations (``--protocol``)."""


def run_babyai_bench(
    budget: BenchBudget,
    *,
    seed: int,
    out_dir: Path,
    include_agent: bool = True,
    device: str = "cpu",
    observer: Observer | None = None,
    settings: Sequence[str] = (),
    protocol: str = "curriculum",
    explored_map: bool = False,
) -> BabyAIBenchResult:
    """Run the benchmark; see the module docstring.

    Args:
        budget: What to run.
        seed: Seed of every learning step (agent and flat BC).
        out_dir: Demonstrations are cached in ``out_dir/demos``; the agent's memory is
            ``out_dir/memory-<budget>-seed<seed>`` (replaced at the start of each run).
        include_agent: Run the procedural-memory agent (else its fields are ``None``).
        device: Torch device for flat BC.
        observer: Receives ``bench.*`` events (and the collectors' / learners' own).
        settings: Agent settings changed from the defaults (``part.field=value``), recorded.
        protocol: ``"curriculum"``: one learn call per level, in order, each level evaluated
            after its own call (stored skills of earlier levels are reused, never retrained);
            ``"joint"``: every level's demonstrations learned in one call, then every level
            evaluated (flat BC likewise trained once on all of them).
        explored_map: Record the agent's explored map in the demonstrations
            (:mod:`skillbank.envs.grid_map`; cached in ``out_dir/demos-map``), so flat BC and
            the agent's controller read it, its skills too with ``skill.read_history`` (in
            ``@hindsight``); the evaluation environments add it too.

    Raises:
        ValueError: ``protocol`` is not one of :data:`PROTOCOLS`.
    """
    from skillbank.agent import expand_presets

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    observe = observer or NullObserver()
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    agent: Any = None
    if include_agent:
        from skillbank.agent import ProceduralMemoryAgent
        from skillbank.memory.store import SkillMemory

        memory_dir = out_dir / f"memory-{budget.name}-seed{seed}"
        if memory_dir.exists():
            shutil.rmtree(memory_dir)
        agent = ProceduralMemoryAgent(
            SkillMemory(memory_dir), scaled_agent_config(seed, budget.agent_scale, settings)
        )
    map_radius = DEFAULT_MAP_RADIUS if explored_map else None
    run = _BenchRun(budget, seed, out_dir, agent, device, observe, map_radius)
    if protocol == "joint":
        results = run.joint()
    else:
        results = [run.next_level(plan) for plan in budget.levels]

    # --- the memory's keys, for the 2-D map ---
    skill_ids: tuple[str, ...] = ()
    keys = np.zeros((0, 0), np.float32)
    if agent is not None:
        ids, keys, _ = agent.skills()
        skill_ids = tuple(ids)
    return BabyAIBenchResult(
        budget=budget,
        seed=seed,
        levels=tuple(results),
        skill_ids=skill_ids,
        skill_keys=np.asarray(keys, np.float32),
        wall_s=time.perf_counter() - start,
        settings=tuple(expand_presets(settings)),  # recorded with presets spelled out
        protocol=protocol,
        explored_map=explored_map,
    )


@dataclass(frozen=True, slots=True)
class _Learned:
    """What the agent's learning left for one level's row."""

    f1: float | None
    purity: float | None
    train_s: float
    num_skills: int


class _BenchRun:
    """One benchmark run's state: the demonstrations seen, the agent's learning CPU time (flat
    BC's budget), and the steps both protocols share (collect, learn, train flat BC, evaluate)."""

    def __init__(
        self,
        budget: BenchBudget,
        seed: int,
        out_dir: Path,
        agent: Any,
        device: str,
        observe: Observer,
        map_radius: int | None = None,
    ) -> None:
        self.budget = budget
        self.map_radius = map_radius
        self.seed = seed
        self.out_dir = out_dir
        self.agent = agent
        self.device = device
        self.observe = observe
        self.seen: list[Episode] = []
        self.agent_learn_cpu_s = 0.0

    def collect(self, plan: LevelPlan) -> tuple[list[Episode], tuple[int, int], float]:
        """The level's demonstrations (cached), added to those seen."""
        demos = "demos" if self.map_radius is None else "demos-map"
        data = collect_level_demos(
            plan.level, plan.demos, self.out_dir / demos / plan.level, self.observe, self.map_radius
        )
        self.seen += data[0]
        self.observe(Event("bench.demos", {"demos": len(data[0])}, {"level": plan.level}))
        return data

    def learn(self, datasets: Sequence[Sequence[Episode]]) -> Any:
        """One learn call of the agent, its CPU time counted."""
        tick = time.process_time()
        report = self.agent.learn(datasets, observer=self.observe)
        self.agent_learn_cpu_s += time.process_time() - tick
        return report

    def train_flat_bc(self) -> tuple[Any, float | None]:
        """Flat BC from scratch on every demonstration seen; with the agent, as many parameters
        as it acts with and the CPU time it has learned for. Returns it and that budget."""
        config = dataclasses.replace(self.budget.flat_bc, seed=self.seed, device=self.device)
        if self.seen:
            config = dataclasses.replace(config, encoder=encoder_for(config.encoder, self.seen[0]))
        budget_s: float | None = None
        if self.agent is not None:
            budget_s = self.agent_learn_cpu_s
            config, _ = fair_flat_bc_config(config, agent_parameter_counts(self.agent)[0], budget_s)
        return train_flat_bc(self.seen, config), budget_s

    def next_level(self, plan: LevelPlan) -> LevelResult:
        """Curriculum protocol: learn this level into the growing memory, then evaluate."""
        data = self.collect(plan)
        learned = None
        if self.agent is not None:
            report = self.learn([data[0]])
            learned = _Learned(
                report.segmentation_f1,
                report.cluster_purity,
                report.train_s,
                len(report.skill_ids),
            )
        return self.evaluate(plan, data, learned, self.train_flat_bc())

    def joint(self) -> list[LevelResult]:
        """Joint protocol: every level's demonstrations in one learn call, then each level."""
        data = [self.collect(plan) for plan in self.budget.levels]
        scores: Sequence[tuple[float | None, float | None]] = [(None, None)] * len(data)
        report = None
        if self.agent is not None:
            report = self.learn([episodes for episodes, _, _ in data])
            scores = report.dataset_scores
        bc = self.train_flat_bc()
        return [
            self.evaluate(
                plan,
                level_data,
                None
                if report is None
                else _Learned(f1, purity, report.train_s, len(report.skill_ids)),
                bc,
            )
            for plan, level_data, (f1, purity) in zip(self.budget.levels, data, scores, strict=True)
        ]

    def evaluate(
        self,
        plan: LevelPlan,
        data: tuple[list[Episode], tuple[int, int], float],
        learned: _Learned | None,
        bc_and_budget: tuple[Any, float | None],
    ) -> LevelResult:
        """Both methods on the level's evaluation seeds, as one result row."""
        from skillbank.envs.rollout import babyai_env_factory, evaluate_policy

        info = {"level": plan.level}
        episodes, train_seeds, bot_rate = data
        bc, budget_s = bc_and_budget
        make_env = babyai_env_factory(plan.level, map_radius=self.map_radius)
        sb_success = sb_sps = sb_params = vae_params = None
        if learned is not None:
            evaluation = self.agent.evaluate(make_env, self.budget.eval_episodes, EVAL_SEED)
            sb_success, sb_sps = evaluation.success_rate, evaluation.steps_per_s
            sb_params, vae_params = agent_parameter_counts(self.agent)
            self.observe(Event("bench.skillbank", {"success": sb_success}, info))
        bc_eval = evaluate_policy(
            make_env, FlatBCPolicy(bc.model), episodes=self.budget.eval_episodes, seed=EVAL_SEED
        )
        self.observe(Event("bench.flat_bc", {"success": bc_eval.success_rate}, info))
        return LevelResult(
            level=plan.level,
            demos=len(episodes),
            demos_cumulative=len(self.seen),
            train_seeds=train_seeds,
            eval_seeds=(EVAL_SEED, EVAL_SEED + self.budget.eval_episodes - 1),
            bot_success_rate=bot_rate,
            skillbank_success=sb_success,
            flat_bc_success=bc_eval.success_rate,
            segmentation_f1=None if learned is None else learned.f1,
            cluster_purity=None if learned is None else learned.purity,
            num_skills=None if learned is None else learned.num_skills,
            skillbank_train_s=None if learned is None else learned.train_s,
            flat_bc_train_s=bc.train_seconds,
            flat_bc_params=bc.num_params,
            skillbank_params=sb_params,
            skillbank_steps_per_s=sb_sps,
            flat_bc_steps_per_s=bc_eval.steps_per_s,
            skillbank_vae_params=vae_params,
            flat_bc_budget_s=budget_s,
            flat_bc_updates=bc.num_updates,
            flat_bc_epochs=len(bc.losses),
            flat_bc_train_cpu_s=bc.train_cpu_seconds,
        )


def markdown_table(levels: Sequence[LevelResult]) -> str:
    """A markdown table of the per-level results (success in %, ``—`` where not measured)."""

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}"

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    def ratio(a: float | None, b: float) -> str:
        return "—" if a is None or b <= 0 else f"{a / b:.2f}×"

    def count(value: int | None) -> str:
        return "—" if value is None else f"{value:,}"

    rows = [
        "| level | demos | demos so far | skillbank % | flat BC % | ratio | seg. F1 | purity "
        "| skills | skillbank s | flat BC s | skillbank params | flat BC params |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in levels:
        rows.append(
            f"| {r.level} | {r.demos} | {r.demos_cumulative} | {pct(r.skillbank_success)} "
            f"| {pct(r.flat_bc_success)} | {ratio(r.skillbank_success, r.flat_bc_success)} "
            f"| {num(r.segmentation_f1)} | {num(r.cluster_purity)} "
            f"| {r.num_skills if r.num_skills is not None else '—'} "
            f"| {num(r.skillbank_train_s)} | {r.flat_bc_train_s:.2f} "
            f"| {count(r.skillbank_params)} | {count(r.flat_bc_params)} |"
        )
    return "\n".join(rows) + "\n"
