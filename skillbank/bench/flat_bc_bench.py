"""Flat behavioural cloning on one BabyAI level against BabyAI 1.1's low-data anchors.

``skillbank bench flat-bc``: is the baseline skillbank is compared with a strong one? BabyAI 1.1
(Hui et al., 2020) reports flat imitation learning from few demonstrations: GoToRedBall 99.3%
with 5,000 demos, GoTo 96.1% with 10,000, PutNextLocal 99.5% with 100,000 (see
``/work/shared/ANCHORS.md``; secondary readings of the paper). Per demonstration count:

1. the BabyAI bot demonstrates the level on training seeds ``0, 1, ...`` (failures skipped and
   logged); the dataset is cached in ``data_dir/<level>`` and reused, and every count trains on a
   prefix of the same dataset;
2. flat BC (:mod:`skillbank.bench.baselines.flat_bc`) is trained from scratch;
3. it is evaluated greedily on ``eval_episodes`` seeds from :data:`EVAL_SEED` (10**9), disjoint
   from every training seed.

The result records the success rate, the published anchor and the gap to it, the parameter
count, training time, updates and epochs actually run (a wall-time cap may stop training early),
the final training loss and action accuracy, and the machine, versions, seeds and command line.

Example:
    >>> result = run_flat_bc_bench(  # doctest: +SKIP
    ...     "GoToRedBall", (5000,), config=FlatBCConfig(num_actions=7), eval_episodes=512,
    ...     seed=0, data_dir=Path("runs/flat-bc-data"),
    ... )
    >>> result.rows[0].success, result.rows[0].gap  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillbank.bench.babyai_bench import EVAL_SEED, collect_level_demos
from skillbank.bench.baselines.flat_bc import FlatBCConfig, FlatBCPolicy, train_flat_bc
from skillbank.bench.run_info import machine_info, package_versions
from skillbank.events import Event, NullObserver, Observer

__all__ = [
    "ANCHORS",
    "FlatBCAnchor",
    "FlatBCBenchResult",
    "FlatBCBenchRow",
    "run_flat_bc_bench",
]


@dataclass(frozen=True, slots=True)
class FlatBCAnchor:
    """A published flat imitation-learning result.

    Attributes:
        level: BabyAI level name.
        demos: Demonstrations it was trained on.
        success: Its success rate in [0, 1].
        source: Where the figure comes from.
    """

    level: str
    demos: int
    success: float
    source: str

    def __post_init__(self) -> None:
        if self.demos < 1 or not 0.0 <= self.success <= 1.0:
            raise ValueError(f"FlatBCAnchor({self.level}): demos >= 1 and success in [0, 1]")


_BABYAI_11 = "Hui et al. 2020, BabyAI 1.1, flat IL, best architecture (secondary reading)"
ANCHORS: dict[str, FlatBCAnchor] = {
    "GoToRedBall": FlatBCAnchor("GoToRedBall", 5000, 0.993, _BABYAI_11),
    "GoTo": FlatBCAnchor("GoTo", 10000, 0.961, _BABYAI_11),
    "PutNextLocal": FlatBCAnchor("PutNextLocal", 100000, 0.995, _BABYAI_11),
}
"""The low-data anchors of ``/work/shared/ANCHORS.md``, by level."""


@dataclass(frozen=True, slots=True)
class FlatBCBenchRow:
    """Flat BC trained on one number of demonstrations.

    Attributes:
        demos: Demonstrations trained on.
        num_transitions: Demonstrated steps in them.
        train_seeds: (first, last) training seed tried.
        success: Success rate on the evaluation seeds.
        eval_episodes: Evaluation episodes.
        num_params: Trainable parameters.
        train_s: Wall time of training.
        num_updates: Gradient updates made.
        epochs_run: Epochs started (fewer than configured when the wall-time cap stopped it).
        final_loss: Mean training loss of the last epoch.
        final_accuracy: Training action accuracy of the last epoch.
        steps_per_s: Environment steps/s of the evaluation.
    """

    demos: int
    num_transitions: int
    train_seeds: tuple[int, int]
    success: float
    eval_episodes: int
    num_params: int
    train_s: float
    num_updates: int
    epochs_run: int
    final_loss: float
    final_accuracy: float | None
    steps_per_s: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.success <= 1.0:
            raise ValueError(f"FlatBCBenchRow.success must lie in [0, 1], got {self.success}")
        if self.demos < 1:
            raise ValueError(f"FlatBCBenchRow.demos must be >= 1, got {self.demos}")


@dataclass(frozen=True, slots=True)
class FlatBCBenchResult:
    """One level, one or more demonstration counts.

    Attributes:
        level: BabyAI level name.
        rows: One per demonstration count, ascending.
        config: Flat BC settings (seed included; encoder filled in).
        seed: Seed of training.
        bot_success_rate: The bot's success on the training seeds tried (largest count).
        anchor: The published figure for this level, if there is one.
        wall_s: Seconds the whole run took (collection included).
        collect_s: Seconds spent collecting (or loading) demonstrations.
    """

    level: str
    rows: tuple[FlatBCBenchRow, ...]
    config: FlatBCConfig
    seed: int
    bot_success_rate: float
    anchor: FlatBCAnchor | None
    wall_s: float
    collect_s: float

    def to_json(self, command: str = "") -> dict[str, Any]:
        """The result file: rows with the anchor and gap, plus machine, versions, seeds, command."""
        anchor = self.anchor
        rows = []
        for row in self.rows:
            record = dataclasses.asdict(row)
            record["train_seeds"] = list(row.train_seeds)
            record["eval_seeds"] = [EVAL_SEED, EVAL_SEED + row.eval_episodes - 1]
            # The gap is against the anchor's figure; it compares like with like only at the
            # anchor's demonstration count (``at_anchor_demos``).
            record["anchor_success"] = anchor.success if anchor else None
            record["gap"] = row.success - anchor.success if anchor else None
            record["at_anchor_demos"] = anchor is not None and row.demos == anchor.demos
            rows.append(record)
        return {
            "benchmark": "flat-bc",
            "level": self.level,
            "command": command,
            "machine": {**machine_info(), "versions": package_versions("minigrid")},
            "seed": self.seed,
            "eval_seed_start": EVAL_SEED,
            "bot_success_rate": self.bot_success_rate,
            "anchor": dataclasses.asdict(anchor) if anchor else None,
            "flat_bc_config": self.config.to_json(),
            "rows": rows,
            "collect_s": self.collect_s,
            "wall_s": self.wall_s,
        }


def run_flat_bc_bench(
    level: str,
    demo_counts: Sequence[int],
    *,
    config: FlatBCConfig,
    eval_episodes: int,
    seed: int,
    data_dir: Path,
    device: str = "cpu",
    observer: Observer | None = None,
) -> FlatBCBenchResult:
    """Train and evaluate flat BC on ``level`` for each demonstration count; see the module doc.

    Args:
        level: BabyAI level name, e.g. ``"GoToRedBall"``.
        demo_counts: Demonstration counts (each trains a fresh network on a prefix).
        config: Flat BC settings (its ``seed`` and ``device`` are replaced by the arguments).
        eval_episodes: Evaluation episodes per count.
        seed: Seed of training.
        data_dir: Demonstrations are cached in ``data_dir/<level>`` and reused.
        device: Torch device for training and evaluation.
        observer: Receives ``flat_bc_bench.*`` events (and the collector's and trainer's own).
    """
    from skillbank.envs.rollout import babyai_env_factory, evaluate_policy

    counts = sorted(set(demo_counts))
    if not counts or counts[0] < 1:
        raise ValueError(f"demo_counts must be >= 1 each and not empty, got {list(demo_counts)}")
    if eval_episodes < 1:
        raise ValueError(f"eval_episodes must be >= 1, got {eval_episodes}")
    observe = observer or NullObserver()
    start = time.perf_counter()

    # --- demonstrations: the largest count once; smaller counts train on its prefixes ---
    episodes, _, bot_rate = collect_level_demos(level, counts[-1], data_dir / level, observe)
    collect_s = time.perf_counter() - start
    observe(Event("flat_bc_bench.demos", {"demos": float(len(episodes))}, {"level": level}))

    # --- per count: train from scratch, evaluate on unseen seeds ---
    config = dataclasses.replace(config, seed=seed, device=device)
    make_env = babyai_env_factory(level)
    rows: list[FlatBCBenchRow] = []
    for count in counts:
        chosen = episodes[:count]
        epochs: list[dict[str, float]] = []

        def record(
            event: Event, epochs: list[dict[str, float]] = epochs, demos: str = str(count)
        ) -> None:
            if event.name == "flat_bc.epoch":
                epochs.append(dict(event.values))
                observe(Event(event.name, event.values, {"level": level, "demos": demos}))
            else:
                observe(event)

        result = train_flat_bc(chosen, config, observer=record)
        config = result.config  # the encoder filled in, for the result file
        evaluation = evaluate_policy(
            make_env, FlatBCPolicy(result.model), episodes=eval_episodes, seed=EVAL_SEED
        )
        row = FlatBCBenchRow(
            demos=len(chosen),
            num_transitions=result.num_transitions,
            train_seeds=(0, chosen[-1].seed),
            success=evaluation.success_rate,
            eval_episodes=eval_episodes,
            num_params=result.num_params,
            train_s=result.train_seconds,
            num_updates=result.num_updates,
            epochs_run=len(result.losses),
            final_loss=result.losses[-1] if result.losses else float("nan"),
            final_accuracy=epochs[-1].get("accuracy") if epochs else None,
            steps_per_s=evaluation.steps_per_s,
        )
        rows.append(row)
        observe(
            Event(
                "flat_bc_bench.evaluated",
                {"demos": float(row.demos), "success": row.success, "train_s": row.train_s},
                {"level": level},
            )
        )
    return FlatBCBenchResult(
        level=level,
        rows=tuple(rows),
        config=config,
        seed=seed,
        bot_success_rate=bot_rate,
        anchor=ANCHORS.get(level),
        wall_s=time.perf_counter() - start,
        collect_s=collect_s,
    )
