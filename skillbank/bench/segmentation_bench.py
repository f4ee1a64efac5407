"""Segmentation benchmark: boundary F1 and cluster purity against a demonstrator's subgoals.

Per level: collect (or reuse the cached) demonstrations on seeds 0, 1, ..., run the unsupervised
segmenter on them and score its boundaries (±1 step), then run the agent's own ``learn`` on a
fresh temporary memory, whose report scores the segment -> skill assignment (cluster purity) and
the boundaries once more. Annotations are read here, to score, and never by the segmenter.

Besides the headline numbers, each level records a breakdown by true transition
(``"Explore->GoNextTo": {"true": 633, "found": 0}``) and where the unmatched predicted boundaries
fall (``spurious_in``: the true label of the subgoal they cut), so a miss can be traced to a kind
of boundary rather than guessed at.

Levels are BabyAI level names (``GoTo``, ``BossLevel``; ``PutNext`` is an alias of
``PutNextS7N4``, BabyAI's largest PutNext level, since minigrid registers no plain ``PutNext``) or
toy-world tasks (``toy/fetch``).

The agent's skill-module and controller training do not change segments or clusters (both are
decided before that training, on a fresh memory), so they run for ``train_epochs`` epochs only;
the skill VAE, whose codes are clustered, trains at its default settings.

Example:
    >>> result = run_segmentation_bench(SegmentationBenchConfig(levels=("GoTo",)))  # doctest: +SKIP
    >>> result["levels"][0]["segmentation_f1"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillbank.bench.run_info import machine_info, package_versions
from skillbank.envs.registry import BABYAI_ALIASES, boundary_proposer
from skillbank.events import Event, NullObserver, Observer
from skillbank.learning.metrics import boundary_f1, matched_boundaries
from skillbank.learning.segment import OptionHMMSegmenter, SegmenterConfig
from skillbank.types import Episode

__all__ = [
    "LEVEL_ALIASES",
    "SegmentationBenchConfig",
    "boundary_breakdown",
    "load_level_demos",
    "run_segmentation_bench",
    "score_level",
]

LEVEL_ALIASES = BABYAI_ALIASES
"""Level names of the issue that minigrid registers under another name (the registry's)."""


@dataclass(frozen=True, slots=True)
class SegmentationBenchConfig:
    """What :func:`run_segmentation_bench` runs.

    Attributes:
        levels: BabyAI levels (``"GoTo"``) or toy tasks (``"toy/fetch"``), scored separately.
        episodes: Demonstrations per level (seeds 0, 1, ... until that many succeed).
        seed: Seed of the segmenter and of the agent's learning.
        data_dir: Demonstration cache, one dataset per level (``data_dir/<level>``); reused.
        learn: Also run the agent's ``learn`` (cluster purity); off: boundaries only.
        train_epochs: Epochs of the agent's skill-module and controller training (they do not
            affect segments or clusters).
        segmenter: The segmenter's settings (its ``seed`` is replaced by ``seed``).
        settings: Agent settings ``part.field=value`` for the learn (``--set``, e.g.
            ``cluster.merge_silhouette=0.55``; :meth:`AgentConfig.with_settings`).
    """

    levels: tuple[str, ...] = ("GoTo", "PutNext", "BossLevel")
    episodes: int = 200
    seed: int = 0
    data_dir: Path = Path("runs/segmentation-data")
    learn: bool = True
    train_epochs: int = 1
    segmenter: SegmenterConfig = dataclasses.field(default_factory=SegmenterConfig)
    settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("SegmentationBenchConfig.levels must name at least one level")
        if self.episodes < 1:
            raise ValueError(f"SegmentationBenchConfig.episodes must be >= 1, got {self.episodes}")
        if self.train_epochs < 1:
            raise ValueError("SegmentationBenchConfig.train_epochs must be >= 1")
        if self.settings:  # checked now, not after the demonstrations are collected
            from skillbank.agent import AgentConfig

            AgentConfig().with_settings(self.settings)


def _source_factory(level: str) -> tuple[str, Callable[[], Any]]:
    """The canonical env id of ``level`` and a picklable factory of its demonstrator."""
    if level.startswith("toy/"):
        from skillbank.envs.toy import ToyDemonstrator

        return level, functools.partial(ToyDemonstrator, level.removeprefix("toy/"))
    from skillbank.envs.babyai import BabyAIDemoSource

    name = LEVEL_ALIASES.get(level, level)
    return BabyAIDemoSource(name).env_id, functools.partial(BabyAIDemoSource, name)


def load_level_demos(
    level: str,
    episodes: int,
    root: Path,
    observer: Observer | None = None,
    num_workers: int | None = None,
) -> tuple[str, list[Episode]]:
    """Collect ``episodes`` demonstrations of ``level`` into ``root`` (resuming), and load them.

    ``num_workers``: collection processes (default: every core; 1 runs in this process).

    Returns:
        The level's env id and its first ``episodes`` episodes.
    """
    from skillbank.envs.collect import collect
    from skillbank.envs.dataset import load_dataset

    env_id, factory = _source_factory(level)
    collect(
        factory,
        itertools.count(0),
        root,
        num_episodes=episodes,
        num_workers=num_workers,
        observer=observer,
    )
    return env_id, list(load_dataset(root, verify=False)[:episodes])


def boundary_breakdown(
    episodes: Sequence[Episode], predicted: Sequence[Sequence[int]], tolerance: int = 1
) -> dict[str, Any]:
    """Which true transitions were found and where unmatched predictions fall.

    Matches boundaries with :func:`~skillbank.learning.metrics.matched_boundaries`, as
    :func:`~skillbank.learning.metrics.boundary_f1` does, so the counts add up to its scores.

    Returns:
        ``{"transitions": {"A->B": {"true": n, "found": m}}, "spurious_in": {"A": k}}``.
    """
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    spurious: Counter[str] = Counter()
    for episode, pred in zip(episodes, predicted, strict=True):
        if episode.annotations is None:
            continue
        starts = list(episode.annotations.boundaries)
        labels = list(episode.annotations.labels)
        pairs = matched_boundaries(pred, starts, tolerance)
        matched = set(pairs.values())
        for b in sorted({b for b in pred if b != 0} - set(pairs)):
            inside = max(i for i, s in enumerate(starts) if s <= b)
            spurious[labels[inside]] += 1
        for i in range(1, len(starts)):
            key = f"{labels[i - 1]}->{labels[i]}"
            total[key] += 1
            found[key] += starts[i] in matched
    return {
        "transitions": {k: {"true": n, "found": found[k]} for k, n in total.most_common()},
        "spurious_in": dict(spurious.most_common()),
    }


def score_level(
    level: str,
    env_id: str,
    episodes: Sequence[Episode],
    config: SegmentationBenchConfig,
    observer: Observer | None = None,
) -> dict[str, Any]:
    """Segment ``episodes``, score the boundaries, and (``config.learn``) the agent's clusters."""
    observe = observer or NullObserver()
    segmenter_config = dataclasses.replace(config.segmenter, seed=config.seed)
    tick = time.perf_counter()
    predicted = OptionHMMSegmenter(segmenter_config, boundary_proposer).segment(episodes)
    segment_s = time.perf_counter() - tick
    annotated = [i for i, e in enumerate(episodes) if e.annotations is not None]
    score = boundary_f1(
        [predicted[i] for i in annotated],
        [episodes[i].annotations.boundaries for i in annotated],  # type: ignore[union-attr]
    )
    row: dict[str, Any] = {
        "level": level,
        "env_id": env_id,
        "episodes": len(episodes),
        "annotated_episodes": len(annotated),
        "steps": sum(e.num_steps for e in episodes),
        "train_seeds": [min(e.seed for e in episodes), max(e.seed for e in episodes)],
        "segmentation_f1": score.f1,
        "precision": score.precision,
        "recall": score.recall,
        "num_predicted": score.num_predicted,
        "num_true": score.num_true,
        "segment_seconds": segment_s,
        **boundary_breakdown(episodes, predicted),
        "cluster_purity": None,
        "learn_segmentation_f1": None,
        "num_skills": None,
        "learn_seconds": None,
    }
    if config.learn:
        from skillbank.agent import AgentConfig, ProceduralMemoryAgent
        from skillbank.memory.store import SkillMemory

        agent_config = (
            AgentConfig(segmenter=segmenter_config, seed=config.seed)
            .with_settings(config.settings)
            .seeded()
        )
        agent_config = dataclasses.replace(
            agent_config,
            skill=dataclasses.replace(agent_config.skill, num_epochs=config.train_epochs),
            controller=dataclasses.replace(agent_config.controller, num_epochs=config.train_epochs),
        )
        with tempfile.TemporaryDirectory(prefix="skillbank-segbench-") as tmp:
            tick = time.perf_counter()
            report = ProceduralMemoryAgent(SkillMemory(Path(tmp) / "memory"), agent_config).learn(
                [list(episodes)], observer=observe
            )
            row["learn_seconds"] = time.perf_counter() - tick
        row["cluster_purity"] = report.cluster_purity
        row["learn_segmentation_f1"] = report.segmentation_f1
        row["num_skills"] = len(report.skill_ids)
    row["seconds"] = segment_s + (row["learn_seconds"] or 0.0)
    return row


def run_segmentation_bench(
    config: SegmentationBenchConfig, *, command: str = "", observer: Observer | None = None
) -> dict[str, Any]:
    """Run every level of ``config``; the JSON-ready result (machine, versions, seeds, rows)."""
    observe = observer or NullObserver()
    rows = []
    for level in config.levels:
        tick = time.perf_counter()
        env_id, episodes = load_level_demos(
            level, config.episodes, config.data_dir / level.replace("/", "-"), observe
        )
        collect_s = time.perf_counter() - tick
        row = score_level(level, env_id, episodes, config, observe)
        row["collect_seconds"] = collect_s
        observe(
            Event(
                "bench.segmentation",
                {"f1": row["segmentation_f1"], "purity": row["cluster_purity"] or float("nan")},
                {"level": level},
            )
        )
        rows.append(row)
    return {
        "benchmark": "segmentation",
        "command": command,
        "machine": machine_info(),
        "versions": package_versions("minigrid"),
        "seed": config.seed,
        "episodes": config.episodes,
        "data_dir": str(config.data_dir),
        "segmenter": {
            f.name: getattr(config.segmenter, f.name) for f in dataclasses.fields(config.segmenter)
        }
        | {"seed": config.seed},
        "train_epochs": config.train_epochs,
        "settings": list(config.settings),
        "levels": rows,
    }
