"""Train the controller: from context to the query whose attention picks the right skill.

Every step of every segment is a training example labelled with its segment's skill; the first
step of a segment (a decision point at run time) counts ``decision_weight`` times. The loss is
cross-entropy of the attention over the skill keys, so the controller learns queries, not a fixed
list of classes: adding a skill adds a key, not an output unit.

With ``ControllerTrainConfig.history`` every step also reads its episode's call history: the
skills of the *earlier* segments of the same episode (:func:`episode_call_prefixes`; a replayed
segment brings its own), as :func:`~skillbank.nn.controller.call_history` encodes them. At run
time the executor feeds the skills it has called so far in each episode.

Example:
    >>> config = ControllerTrainConfig()
    >>> controller = train_controller(segments, assignment, keys, config)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from skillbank.errors import TrainingError
from skillbank.learning.segment_set import SegmentSet
from skillbank.nn.controller import (
    HISTORY_COUNT_CAP,
    Controller,
    ControllerConfig,
    attention_logits,
    call_history,
)
from skillbank.nn.grid_trunk import GridSlice, GridTrunkSpec, TokenSlice
from skillbank.nn.optim import adam

__all__ = [
    "ControllerTrainConfig",
    "episode_call_prefixes",
    "mix_retry",
    "step_histories",
    "step_target_histories",
    "train_controller",
]


@dataclass(frozen=True, slots=True)
class ControllerTrainConfig:
    """Settings of :func:`train_controller`.

    Attributes:
        hidden_dims: Widths of the controller MLP.
        num_epochs: Passes over the steps.
        batch_size: Steps per gradient step.
        learning_rate: Adam step size.
        decision_weight: Loss weight of a segment's first step against its other steps.
        balance_skills: Weigh every skill's steps alike in total (joint training only), so a
            rare skill (one short segment per episode) is still chosen when it should be.
        grid_trunk: Give the controller a CNN over the grid slices of the features
            (``skill-controller-v3``, or ``-target-v1``) where there are any; vector worlds
            keep the MLP. ``None`` (default): on exactly when the arguments are hindsight
            targets (``SkillTrainConfig.argument``). With learned arguments it lowered the
            summed success over the demo's five levels on each of 3 seeds (2.38, 2.37, 2.38 vs
            2.41, 2.39, 2.59); naming targets it is what makes them work (demo data, seed 0,
            128 unseen episodes, hindsight with vs without it: PickupLoc 0.52 vs 0.31, GoTo
            0.59 vs 0.30).
        conv_channels: Channels of the grid trunk's convolutions.
        kernel_size: Side of the grid trunk's kernels.
        target_weight: Weight of the target head's cross-entropy (hindsight arguments, see
            ``SkillTrainConfig.argument``) against the query loss.
        history: The controller also reads the episode's call history (the last skill called and
            each skill's call count, ``skill-controller-history-v1``), learned from the skills of
            each segment's earlier segments in its episode. ``None`` (default): off: it helped every
            single-call measurement but not the curriculum benchmark (below). It needs no
            composites, whose relabelling reads no history. Measured side by side on the demo data
            (150/150/100/100 demos of GoToLocal/PickupLoc/Open/ PutNextLocal, seeds 0-3, 128 unseen
            episodes a level), mean success off vs on (cap 1, retry 0.5): GoToLocal 0.770 vs 0.766,
            PickupLoc 0.260 vs 0.311, Open 0.893 vs 0.893, PutNextLocal 0.051 vs 0.107, GoTo (never
            trained on) 0.543 vs 0.523; sum 2.516 vs 2.600 (+0.156, +0.054, +0.195, -0.070 per seed;
            the third variant tried on these seeds). BossLevel alone (250 demos, seeds 0-1): 0.352
            vs 0.418 (0.426 at cap 3). Held-out choice of "drop" at PutNextLocal drop points
            (earlier calls as the bot made them): 0.55 vs 0.68. BossLevel alone, seeds 0-3: 0.346 vs
            0.422 (better on every seed). But ``skillbank bench babyai --budget small`` (the six
            levels learned one call each, 512 unseen episodes, seed 0), off vs on: GoToLocal 0.729
            vs 0.742, PickupLoc 0.199 vs 0.256, Open 0.949 vs 0.844, PutNextLocal 0.055 vs 0.037,
            GoTo 0.584 vs 0.527, BossLevel 0.367 vs 0.322; the same six calls, seed 1, 256 unseen
            episodes: BossLevel 0.336 vs 0.371 (so no gain over the two seeds). Learning level by
            level the later calls explain segments by stored skills without histories, a likely
            cause not yet tested. With hindsight targets alone it hurt (demo data, seeds 0-1, cap 3:
            sum 2.727 vs 2.227). With all three hindsight switches (``skill.argument=hindsight``,
            ``controller.target_copy``, ``skill.relabel_targets``; cap 1) and the six levels learned
            in one call (500 demos of each primitive level, 250 of GoTo and BossLevel, 256 unseen
            episodes, seeds 0/1), off vs on: PutNextLocal 0.559/0.578 vs 0.770/0.668, GoTo
            0.887/0.867 vs 0.906/0.906, GoToSeq (never trained on) 0.754/0.746 vs 0.758/0.762,
            BossLevel 0.461/0.422 vs 0.441/0.445: with those switches it is a gain. Without it a
            PutNextLocal episode often drops X and picks it up again on the spot, over and over
            (skills drop, pick up, drop, ...); with it the calls follow go-to, pick up, go-to, drop,
            and a miss is a drop in the wrong place, after which that cycle repeats (seed 0, 64
            unseen episodes: 13.7 vs 25.4 calls per successful episode).
        history_cap: With ``history``, call counts above this read as this many (1: whether
            each skill has been called at all). Cap 3 (retry 0.5): sum 2.533 over the same 4
            seeds (GoToLocal 0.742, PutNextLocal 0.061).
        history_retry: With ``history``, the share of the steps inside a segment (not its
            first) trained with the segment's own skill already in the history, still labelled
            with that skill: a call that stopped before its job was done is called again.
            Without it the controller learns that a skill is never called twice in a row (the
            demonstrations never show it) and a skill that stops early is not retried (cap 3,
            seed 0: GoToLocal 0.54 without vs 0.76 with 0.5). 0.25 (cap 3): PutNextLocal 0.107,
            but Open 0.863, GoTo 0.490, sum 2.502.
        seed: Seed of initialisation and batching.
        read_tokens: Read every token sequence of the features (e.g. the mission) with a GRU
            (:class:`~skillbank.nn.grid_trunk.TokenReader`) whose final state joins the MLP's
            input (the positions' one-hots then reach the MLP only through it), with or
            without the grid CNN (``skill-controller-v3``); off: the flat one-hots as before.
            Off by default: it did not help. BossLevel alone (250 bot demos, 128 unseen
            episodes, seeds 0/1), all at 32 positions: 0.406/0.422 with it vs 0.414/0.438
            without (12 positions, main: 0.359/0.344). Demo data (4 seeds): summed success
            2.46 (seeds 0-3) vs 2.54/2.65 without it (seeds 0/1). With hindsight arguments
            (demo data, seeds 0/1, 32 positions): sum 2.18/2.23 vs 2.20/2.03 without it, and
            held-out target colour accuracy lower on GoToLocal and PickupLoc (0.48 vs 0.62 and
            0.61 vs 0.70, seed 0), higher on Open (0.45 vs 0.37); without FiLM 2.15 (seed 0);
            with ``token_keep`` 2.64/2.51. Learning CPU (60 BossLevel demos) 1.33x.
        token_dim: The reader's GRU state (the mission vector's width).
        token_film: With the grid CNN too, the mission vector FiLM-modulates its convolutions.
        token_keep: The positions' one-hots still reach the MLP too (the reader only adds).
        target_copy: With hindsight targets, the target is copied off the first token sequence
            of the features (the mission) by attention over its positions, plus a prior from
            the detached query for what no token names (an empty cell after a pick-up), instead
            of a linear head over the whole hidden state
            (:class:`~skillbank.nn.token_copy.TokenCopyHead`, ``skill-controller-target-v2``).
            Off by default. It names targets better: held-out colour of the target a GoToLocal
            episode's final segment ends at 0.92/0.98 (seeds 0/1) vs 0.78 (seed 0) with the
            hidden-state head (bot demos of seeds >= 400, the bot's subgoals cutting them; the
            linear head's logits ~20 learn the training episodes by heart, a copy added to it
            stayed at ~0.3 and changed nothing). Success, demo data (150/150/100/100 demos,
            128 unseen episodes a level, + GoTo unseen), seeds 0/1: GoToLocal 0.78/0.85,
            PickupLoc 0.32/0.54, Open 0.92/0.91, PutNextLocal 0.00/0.03, GoTo 0.53/0.65, sum
            2.56/2.98, vs 2.76/2.70 with the hidden-state head and 2.41/2.39 with learned
            arguments. BossLevel learned alone (250 demos, 128 unseen episodes): 0.27/0.22 vs
            0.36/0.34 with learned arguments (256 episodes, seed 0: pick-up missions 5% vs 24%).
            Why, from instrumented BossLevel rollouts: it names a door (type 4) at nearly every
            decision, "pick up a blue box" included, because most BossLevel segments end at a
            door while exploring (the target of a segment is what it ends facing, not what the
            exploring is for); the agent then opens doors and never goes to the box.
        copy_window: With ``target_copy``, W > 0: one pointer picks an anchor token and every
            target group (type, colour ...) reads the words at offsets -W .. +W around it
            (``skill-controller-target-v3``), so the target names one thing of the task; 0:
            a pointer per group, which in failed BossLevel episodes (six levels learned jointly,
            five switches, seed 0, 128 episodes) named a type of the mission with another
            phrase's colour at 25% of the decisions (11% in successful ones). W = 1 failed: the
            pointer settled on the article ("go to the blue box" -> "to the blue", the noun
            out of reach) and the target's type fell to the prior (GoTo 66.8/73.0% vs
            88.7/89.1, PutNextLocal 0.8/7.0 vs 92.2/50.0, seeds 0/1). W = 2, six levels learned
            jointly with the five switches, 256 unseen episodes, seeds 0/1: BossLevel 53.5/48.4%
            vs 50.8/50.0 without, GoToSeq 82.0/80.1 vs 83.2/78.1, GoTo 93.0/87.1 vs 88.7/89.1,
            PutNextLocal 78.9/58.6 vs 92.2/50.0: no clear change, so it stays off. The twelve
            levels of the small budget learned in one call, seed 0, 256 unseen episodes:
            GoToSeq 79.3 vs 76.2, SynthSeq 51.6 vs 48.4, Pickup 93.0 vs 89.8, PutNext 87.1 vs
            95.3, PutNextLocal 75.4 vs 85.2, BossLevel 49.6 vs 50.8: mixed again.
        history_targets: With ``history`` and hindsight targets, the call history also holds
            per skill the targets its finished calls were given (``skill-controller-history-v2``;
            from the segments' targets in training, the controller's own at run time), so the
            next part of a mission can be told from the part just done ("pick up the purple
            ball and pick up the green ball": after dropping the purple ball the controller,
            reading only which skills ran, named the purple ball again). Segments replayed from
            earlier ``learn`` calls are trained with an empty target history. Not a gain: six
            levels learned jointly with the five switches, 256 unseen episodes, seed 0:
            PutNextLocal / GoTo / GoToSeq / BossLevel 79.7 / 92.2 / 77.7 / 46.9% vs 92.2 / 88.7
            / 83.2 / 50.8 without it. Per skill the targets are OR-ed, so a drop (relabelled to
            the next thing named) and a pick-up of the same skill blur into one bag.
        history_held: With ``history`` and hindsight targets, the call history also holds what
            the agent has held so far in the episode: the contents of the target grid's
            inventory cell (:func:`~skillbank.learning.sighting.inventory_cell`, the cell only
            interactions change; BabyAI shows the carried object in the agent's own cell),
            OR-ed over the steps up to the decision (``skill-controller-history-v2`` with a
            ``held_cell``; segments replayed from earlier ``learn`` calls read what their own
            first step shows). In failed BossLevel episodes (five switches, seed 0, 128 episodes)
            32 of 59 picked the same object up three times or more ("pick up a purple ball and
            pick up the green ball": 37 times), the pick-up happening inside a go-to skill whose
            call counts and targets look the same before and after it. Not a fix: six levels
            learned jointly with the five switches, 256 unseen episodes, seed 0: PutNextLocal /
            GoTo / GoToSeq / BossLevel 77.0 / 92.6 / 78.1 / 47.7% vs 92.2 / 88.7 / 83.2 / 50.8
            without it, and 33 of its 65 failures (128 episodes) still pick the same object up
            three times or more.
        copy_done: With ``target_copy`` and ``history_targets`` and/or ``history_held``, the
            copy head's pointers also read those (``skill-controller-history-v3``): a learned
            bilinear form of what is done with each token shifts that token's score, so a word
            naming a thing already handled can be passed over by rule, not learned through the
            trunk for every word apart (:class:`~skillbank.nn.token_copy.TokenCopyHead`). Not a
            gain: the benchmark's twelve levels (small budget, 4,000 demos) learned in one call
            with the five switches, seed 0, 256 unseen episodes, PutNextLocal / Pickup / PutNext
            / GoToSeq / SynthSeq / BossLevel: 85.2 / 89.8 / 95.3 / 76.2 / 48.4 / 50.8% without;
            with targets and held 83.2 / 89.1 / 90.6 / 75.0 / 44.9 / 46.5; with held only 79.7
            / 87.9 / 85.9 / 67.6 / 46.9 / 45.3. The learned weights say why: the blocks of the
            walk and of the open / pick-up skill *raise* the words they match (+1.3 to +4.1: a
            walk's target is its next segment's, relabelled interactions take the next named
            target, and half of a walk's inner steps train on a retry history that holds its
            own target); only the drop and held blocks lower them (-0.1 to -3.0).
        copy_context: With ``target_copy``, L > 0 self-attention layers over the mission make
            the copy head's keys contextual (:class:`~skillbank.nn.token_copy.TokenCopyHead`
            ``context``): a pointer can then ask for "the object of the clause to do first",
            not only for a word at a position (the keys of plain pointers are a word plus its
            position). Why: in failed multi-clause BossLevel missions (``@hindsight`` with the
            map, seed 3, 256 unseen episodes) 42 of 107 finished none of their clauses and 65
            some (``skillbank trace``), against 79% success on one-clause missions. Not a gain,
            so off (0): the twelve small-budget levels learned in one call with ``@hindsight``,
            seed 0, 256 unseen episodes, one layer: PutNextLocal / Pickup / PutNext / GoToSeq /
            BossLevel 73.8 / 85.9 / 81.2 / 73.0 / 41.0% vs 95.7 / 93.4 / 97.7 / 73.8 / 50.8
            without, at 1.5x the learning CPU (768 vs 512 s).
    """

    hidden_dims: tuple[int, ...] = (128, 128)
    num_epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 1e-3
    decision_weight: float = 4.0
    balance_skills: bool = False
    grid_trunk: bool | None = None
    conv_channels: tuple[int, ...] = (16, 16)
    kernel_size: int = 3
    target_weight: float = 1.0
    history: bool | None = None
    history_cap: int = HISTORY_COUNT_CAP
    history_retry: float = 0.5
    seed: int = 0
    read_tokens: bool = False
    token_dim: int = 64
    token_film: bool = True
    token_keep: bool = False
    target_copy: bool = False
    copy_window: int = 0
    history_targets: bool = False
    history_held: bool = False
    copy_done: bool = False
    copy_context: int = 0

    def __post_init__(self) -> None:
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError("ControllerTrainConfig.hidden_dims must be positive widths")
        if min(self.num_epochs, self.batch_size) < 1 or self.learning_rate <= 0:
            raise ValueError("ControllerTrainConfig: counts >= 1 and learning_rate > 0")
        if not self.conv_channels or min(self.conv_channels) < 1 or self.kernel_size < 1:
            raise ValueError(
                "ControllerTrainConfig.conv_channels and .kernel_size must be positive"
            )
        if self.history_cap < 1:
            raise ValueError(
                f"ControllerTrainConfig.history_cap must be >= 1, got {self.history_cap}"
            )
        if not 0.0 <= self.history_retry <= 1.0:
            raise ValueError(
                f"ControllerTrainConfig.history_retry must be in [0, 1], got {self.history_retry}"
            )
        if self.target_weight < 0:
            raise ValueError(
                f"ControllerTrainConfig.target_weight must be >= 0, got {self.target_weight}"
            )
        if self.token_dim < 1:
            raise ValueError(f"ControllerTrainConfig.token_dim must be >= 1, got {self.token_dim}")
        if self.copy_window < 0:
            raise ValueError(
                f"ControllerTrainConfig.copy_window must be >= 0, got {self.copy_window}"
            )
        if self.copy_context < 0:
            raise ValueError(
                f"ControllerTrainConfig.copy_context must be >= 0, got {self.copy_context}"
            )
        if self.copy_done and not (
            self.target_copy and self.history and (self.history_targets or self.history_held)
        ):
            raise ValueError(
                "ControllerTrainConfig.copy_done reads what is done: set controller.target_copy, "
                "controller.history and controller.history_targets or controller.history_held too"
            )

    def reads_history(self) -> bool:
        """Whether the controller reads the call history (unset: off)."""
        return bool(self.history)

    def grid_spec(
        self,
        grids: tuple[GridSlice, ...],
        hindsight: bool = False,
        tokens: tuple[TokenSlice, ...] = (),
    ) -> GridTrunkSpec | None:
        """The controller's trunk over ``grids`` and, with ``read_tokens``, ``tokens`` (``None``:
        neither: an MLP); ``hindsight``: the controller names hindsight targets (turns an unset
        grid switch on)."""
        on = hindsight if self.grid_trunk is None else self.grid_trunk
        grids = grids if on else ()
        tokens = tokens if self.read_tokens else ()
        if not grids and not tokens:
            return None
        return GridTrunkSpec(
            grids,
            self.conv_channels,
            self.kernel_size,
            tokens=tokens,
            token_dim=self.token_dim,
            token_film=self.token_film and bool(grids and tokens),
            token_keep=self.token_keep,
        )


def step_histories(
    histories: Sequence[Sequence[int]],
    assignment: Sequence[int],
    num_skills: int,
    cap: int = HISTORY_COUNT_CAP,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per segment, its call history (N_seg, H) and its *retry* history (N_seg, H): the same
    with the segment's own skill appended (what the executor feeds after that skill stopped
    early). Encoded by :func:`~skillbank.nn.controller.call_history` over ``num_skills``."""
    if len(histories) != len(assignment):
        raise TrainingError("controller training: one call history per segment is needed")
    retry = [(*h, int(k)) for h, k in zip(histories, assignment, strict=True)]
    return call_history(histories, num_skills, cap), call_history(retry, num_skills, cap)


def step_target_histories(
    spans: Sequence[tuple[int, int, int]],
    assignment: Sequence[int],
    targets: torch.Tensor,
    num_skills: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per segment, the targets each skill was given before it in its episode (N_seg, N * C):
    per skill row, the OR of the targets (N_seg, C) of its earlier segments; and the same with
    the segment's own (skill, target) added (the *retry* history, see :func:`step_histories`).
    Segments are ordered in their episode by start; rows outside ``0 .. N-1`` add nothing.

    Example:
        >>> t = torch.eye(2)[[0, 1, 1]]  # three segments' targets (C = 2)
        >>> plain, _ = step_target_histories([(0, 0, 2), (0, 2, 4), (1, 0, 3)], [1, 0, 1], t, 2)
        >>> plain.tolist()
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    if len(spans) != len(assignment) or len(spans) != len(targets):
        raise TrainingError("controller training: one skill and one target per segment needed")
    width = targets.shape[1]
    plain = torch.zeros(len(spans), num_skills, width)
    retry = torch.zeros(len(spans), num_skills, width)
    by_episode: dict[int, list[int]] = {}
    for i, (episode, _, _) in enumerate(spans):
        by_episode.setdefault(episode, []).append(i)
    for members in by_episode.values():
        done = torch.zeros(num_skills, width)
        for i in sorted(members, key=lambda j: spans[j][1]):
            plain[i] = done
            k = int(assignment[i])
            if 0 <= k < num_skills:
                done = done.clone()
                done[k] = torch.maximum(done[k], targets[i])
            retry[i] = done
    return plain.flatten(1), retry.flatten(1)


def mix_retry(
    plain: torch.Tensor,
    retry: torch.Tensor,
    first: torch.Tensor,
    share: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Steps' histories (B, H): ``retry`` (B, H) for a seeded ``share`` of the steps that are
    not a segment's first (``first`` (B,) bool), ``plain`` (B, H) for the rest."""
    if share <= 0:
        return plain
    pick = (torch.rand(len(first), generator=generator) < share) & ~first  # (B,)
    return torch.where(pick[:, None], retry, plain)


def episode_call_prefixes(
    spans: Sequence[tuple[int, int, int]], assignment: Sequence[int]
) -> list[tuple[int, ...]]:
    """Per segment, the skills (rows) of the segments before it in its episode, oldest first.

    Args:
        spans: (episode, start, stop) of every segment.
        assignment: Skill row of every segment (< 0: none; left out of the later prefixes).

    Example:
        >>> episode_call_prefixes([(0, 0, 3), (0, 3, 5), (1, 0, 2)], [2, 0, 1])
        [(), (2,), ()]
    """
    if len(spans) != len(assignment):
        raise ValueError("episode_call_prefixes: one assignment per span is needed")
    prefixes: list[tuple[int, ...]] = [()] * len(spans)
    by_episode: dict[int, list[int]] = {}
    for i, (episode, _, _) in enumerate(spans):
        by_episode.setdefault(episode, []).append(i)
    for members in by_episode.values():
        done: list[int] = []
        for i in sorted(members, key=lambda j: spans[j][1]):
            prefixes[i] = tuple(done)
            if assignment[i] >= 0:
                done.append(int(assignment[i]))
    return prefixes


def train_controller(
    segments: SegmentSet,
    assignment: Sequence[int],
    keys: npt.NDArray[np.float32],
    config: ControllerTrainConfig,
    histories: Sequence[Sequence[int]] | None = None,
) -> Controller:
    """Fit a :class:`Controller` so that attention over ``keys`` (N, Z) picks each segment's skill.

    Args:
        segments: The segments.
        assignment: Skill index (row of ``keys``) of every segment.
        keys: (N, Z) the skills' keys.
        config: Settings.
        histories: Per segment, the skill rows called before it in its episode (used with
            ``config.history``); ``None``: from the spans (:func:`episode_call_prefixes`).

    Raises:
        TrainingError: If assignments and segments disagree or the loss diverges.
    """
    if len(assignment) != segments.num_segments:
        raise TrainingError("controller training: one skill assignment per segment is needed")
    indices = list(range(segments.num_segments))
    feats, _, owner = segments.steps(indices, compact=True)  # (S, O) as stored, _, (S,)
    labels = torch.from_numpy(np.asarray(assignment, np.int64)[owner])  # (S,)
    first = np.concatenate([[True], owner[1:] != owner[:-1]])
    weights = torch.from_numpy(np.where(first, config.decision_weight, 1.0).astype(np.float32))
    x = torch.from_numpy(feats)
    key_tensor = torch.from_numpy(np.asarray(keys, np.float32))
    num_history = len(key_tensor) if config.reads_history() else 0
    step_history: tuple[torch.Tensor, torch.Tensor] | None = None  # (S, H) plain and retry
    if num_history:
        if histories is None:
            histories = episode_call_prefixes(segments.spans, assignment)
        plain, retry = step_histories(histories, assignment, num_history, config.history_cap)
        step_history = (plain[owner], retry[owner])
    first_step = torch.from_numpy(first)  # (S,)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        controller = Controller(
            ControllerConfig(
                obs_dim=segments.obs_dim,
                latent_dim=key_tensor.shape[1],
                hidden_dims=config.hidden_dims,
                grid=config.grid_spec(segments.grids, tokens=segments.tokens),
                history_skills=num_history,
                history_cap=config.history_cap if num_history else HISTORY_COUNT_CAP,
            )
        )
        optimizer = adam(controller.parameters(), lr=config.learning_rate)
        for epoch in range(config.num_epochs):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(order), config.batch_size):
                idx = order[i : i + config.batch_size]
                hist = None  # (B, H)
                if step_history is not None:
                    hist = mix_retry(
                        step_history[0][idx],
                        step_history[1][idx],
                        first_step[idx],
                        config.history_retry,
                        generator,
                    )
                logits = attention_logits(controller(x[idx].float(), hist), key_tensor)  # (B, N)
                loss_each = nn.functional.cross_entropy(logits, labels[idx], reduction="none")
                loss = (loss_each * weights[idx]).sum() / weights[idx].sum()
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"controller loss diverged at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    controller.eval()
    return controller
