"""Train composite skills, and teach the top controller to choose them.

:func:`train_composite`: every occurrence of a composite's sequence in the demonstrations is one
call of it: L consecutive segments, child ``sequence[p]`` acting in segment p. The sub-controller
learns, at the first step of segment p (position p), to pick that child (cross-entropy of the
attention over the child keys + the done key) and the argument to hand it (the frozen child's
action log-likelihood on the segment and its termination loss, through the argument, as in
:mod:`skillbank.learning.hierarchy_training`), and at the observation after the last segment
(position L) to pick "done". The children never move (stored skills are never overwritten).

:func:`relabel_controller`: a copy of the top controller is tuned on relabelled calls (a
composite's whole span is one call of the composite, one decision) over the keys of the
primitives and composites; the whole controller moves, its arguments for primitives held where
they were by distillation towards the original's (or, optionally, only its query head moves).

Example:
    >>> skill = train_composite(  # doctest: +SKIP
    ...     segments, occurrences, config, children, child_keys, action, CompositeTrainConfig())
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from skillbank.errors import TrainingError
from skillbank.learning.composite_skill import CompositeSkill, CompositeSkillConfig
from skillbank.learning.segment_set import SegmentSet
from skillbank.nn.controller import Controller, attention_logits
from skillbank.nn.optim import adam
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy, action_log_prob

__all__ = ["CompositeTrainConfig", "relabel_controller", "train_composite"]


@dataclass(frozen=True, slots=True)
class CompositeTrainConfig:
    """Settings of :func:`train_composite` and :func:`relabel_controller`.

    Attributes:
        num_epochs: Passes over a composite's occurrences.
        batch_size: Occurrences per gradient step.
        learning_rate: Adam step size (both loops).
        termination_weight: Weight of the children's termination loss (through the argument).
        relabel_epochs: Passes over the relabelled steps when tuning the top controller.
        relabel_batch_size: Steps per gradient step when tuning the top controller.
        decision_weight: Loss weight of a call's first step against its other steps.
        distill_weight: Weight of keeping the top controller's arguments where they were
            (``relabel_trunk`` only).
        relabel_trunk: Tune the whole top controller (trunk and heads, its arguments held by
            distillation); ``False``: only its query head, so the arguments it hands primitives
            stay exactly as trained. Measured on ``skillbank demo --composites`` (seed 0, 128
            seeds a level; success GoToLocal/PickupLoc/Open/PutNextLocal/unseen GoTo): all
            .766/.398/.883/.062/.352, head only .820/.312/.867/.047/.398 (no composites:
            .781/.258/.867/.016/.492); head only cannot tell the composite from GoTo and picks it
            nearly everywhere, tuning all picks it where it belongs (PickupLoc, PutNextLocal).
        seed: Seed of initialisation and batching.
    """

    num_epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    termination_weight: float = 1.0
    relabel_epochs: int = 8
    relabel_batch_size: int = 128
    decision_weight: float = 4.0
    distill_weight: float = 10.0
    relabel_trunk: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        counts = (self.num_epochs, self.batch_size, self.relabel_epochs, self.relabel_batch_size)
        if min(counts) < 1 or self.learning_rate <= 0:
            raise ValueError("CompositeTrainConfig: counts >= 1 and learning_rate > 0")
        if min(self.termination_weight, self.decision_weight, self.distill_weight) < 0:
            raise ValueError("CompositeTrainConfig: loss weights must be >= 0")


def train_composite(
    segments: SegmentSet,
    occurrences: Sequence[Sequence[int]],
    config: CompositeSkillConfig,
    children: Sequence[SkillPolicy],
    child_keys: npt.NDArray[np.float32],
    action: ActionSpec,
    train: CompositeTrainConfig,
    init: Controller | None = None,
    stops: Sequence[tuple[int, int]] = (),
) -> CompositeSkill:
    """Fit a composite's sub-controller on the spans it covers; the children stay frozen.

    Args:
        segments: The segments of the demonstrations.
        occurrences: Per occurrence, the L segment indices it covers, in order.
        config: The composite's shape (its ``sequence`` gives each position's child).
        children: (C,) the child skills, in ``config.children`` order (not trained).
        child_keys: (C, Z) their keys.
        action: The action space.
        train: Epochs, batch, rate, loss weights, seed.
        init: The top controller: the sub-controller starts as its copy (trunk as is, its query
            and argument heads repeated per position), so it starts out choosing and
            parameterising children as the top controller would; ``None``: from scratch.
        stops: ``(segment, p)`` where a demonstration began the sequence but ended it early:
            its first p children ran, the last in ``segment``, and then something else
            followed. The sub-controller learns "done" there (position p, the observation after
            the segment), so a composite chosen where only its start is wanted stops in time.

    Raises:
        TrainingError: No occurrence, wrong lengths, or a diverging loss.
    """
    length = config.length
    if not occurrences or any(len(o) != length for o in occurrences):
        raise TrainingError(
            f"composite training: need occurrences of {length} segments each",
            hint="mine patterns with skillbank.learning.composite_mining first",
        )
    if len(children) != len(config.children):
        raise TrainingError("composite training: one child module per child id is needed")
    # --- per position: decision features, the segment's steps, the observation after it --------
    occ = np.asarray(occurrences, np.int64)  # (M, L)
    num_occ = len(occ)
    starts, ends, steps, end_taken = [], [], [], []
    for p in range(length):
        seg = occ[:, p].tolist()
        starts.append(torch.from_numpy(segments.start_features(seg)))  # (M, O)
        ends.append(torch.from_numpy(segments.end_features(seg)))  # (M, O)
        feats, acts, owner = segments.steps(seg)  # (S_p, O), (S_p,...), (S_p,)
        within, lengths = segments.durations(seg)  # (S_p,), (M,): actions taken in the call
        steps.append(
            (
                torch.from_numpy(feats),
                torch.from_numpy(acts),
                torch.from_numpy(owner),
                torch.from_numpy(within),
            )
        )
        end_taken.append(torch.from_numpy(lengths))
    targets = [torch.full((num_occ,), c, dtype=torch.long) for c in config.sequence]
    done = torch.full((num_occ,), len(config.children), dtype=torch.long)
    early_x = torch.from_numpy(
        segments.end_features([s for s, _ in stops])
        if stops
        else np.zeros((0, segments.obs_dim), np.float32)
    )  # (E, O)
    early_p = torch.tensor([p for _, p in stops], dtype=torch.long)  # (E,)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        generator = torch.Generator().manual_seed(train.seed)
        skill = CompositeSkill(config, torch.from_numpy(np.asarray(child_keys, np.float32)))
        if init is not None:
            _start_from(skill, init)
        for child in children:
            child.requires_grad_(False)
        optimizer = adam(skill.parameters(), lr=train.learning_rate)

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            where = torch.full((num_occ,), -1, dtype=torch.long)
            where[idx] = torch.arange(len(idx))
            choice = idx.new_zeros(()).float()
            act_loss = choice.new_zeros(())
            term_loss = choice.new_zeros(())
            for p in range(length):
                position = torch.full((len(idx),), p, dtype=torch.long)
                logits, argument = skill(starts[p][idx], position)  # (b, C+1), (b, D)
                choice = choice + nn.functional.cross_entropy(logits, targets[p][idx])
                feats, acts, owner, within = steps[p]
                rows = where[owner]
                keep = rows >= 0
                child = children[config.sequence[p]]
                out, stop = child(feats[keep], argument[rows[keep]], within[keep])
                act_loss = act_loss - action_log_prob(out, acts[keep], action, child.log_std).mean()
                _, end_stop = child(ends[p][idx], argument, end_taken[p][idx])
                term_loss = term_loss + nn.functional.binary_cross_entropy_with_logits(
                    torch.cat([stop, end_stop]),
                    torch.cat([torch.zeros_like(stop), torch.ones_like(end_stop)]),
                )
            position = torch.full((len(idx),), length, dtype=torch.long)
            logits, _ = skill(ends[length - 1][idx], position)
            choice = choice + nn.functional.cross_entropy(logits, done[idx])
            if len(early_x):
                # as many early stops as occurrences in the batch, drawn at random
                pick = torch.randint(len(early_x), (len(idx),), generator=generator)
                logits, _ = skill(early_x[pick], early_p[pick])
                choice = choice + nn.functional.cross_entropy(logits, done[: len(idx)])
            if not config.arg_dim:
                return choice / (length + 1)
            return (
                choice / (length + 1)
                + act_loss / length
                + train.termination_weight * term_loss / length
            )

        # --- train ---------------------------------------------------------------------------
        batches = max(1, math.ceil(num_occ / train.batch_size))
        for epoch in range(train.num_epochs):
            order = torch.randperm(num_occ, generator=generator)
            for b in range(batches):
                idx = order[b * train.batch_size : (b + 1) * train.batch_size]
                loss = batch_loss(idx)
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"composite training loss diverged at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
        for child in children:
            child.requires_grad_(True)
    skill.eval()
    return skill


@torch.no_grad()
def _start_from(skill: CompositeSkill, top: Controller) -> None:
    """Copy ``top``'s trunk into the sub-controller and repeat its heads per position."""
    own = skill.controller.state_dict()
    for name, value in top.state_dict().items():
        if name not in own:
            continue
        head = name.split(".")[0]
        if head in ("query_head", "arg_head"):
            repeats = own[name].shape[0] // value.shape[0]
            if repeats * value.shape[0] == own[name].shape[0]:
                own[name] = value.repeat(repeats, *([1] * (value.dim() - 1)))
        elif own[name].shape == value.shape:
            own[name] = value.clone()
    skill.controller.load_state_dict(own)


def relabel_controller(
    controller: Controller,
    segments: SegmentSet,
    labels: Sequence[int],
    keys: npt.NDArray[np.float32],
    train: CompositeTrainConfig,
) -> Controller:
    """A copy of ``controller`` tuned to choose among primitives and composites.

    Args:
        controller: The trained top controller (not changed).
        segments: The calls: a composite's occurrence is one segment spanning its children's.
        labels: (N,) each call's key index (primitives first, then composites).
        keys: (K, Z) every primitive's and composite's key.
        train: Epochs, batch, rate, decision and distillation weights, seed.

    Returns:
        The tuned copy (query over all K keys; arguments kept close to the original's).

    Raises:
        TrainingError: Labels out of range or a diverging loss.
    """
    label_np = np.asarray(labels, np.int64)
    if len(label_np) != segments.num_segments or label_np.min() < 0 or label_np.max() >= len(keys):
        raise TrainingError("relabel: one label per call, each a row of keys, is needed")
    feats, _, owner = segments.steps(list(range(segments.num_segments)))
    first = np.concatenate([[True], owner[1:] != owner[:-1]])
    x = torch.from_numpy(feats)  # (S, O)
    y = torch.from_numpy(label_np[owner])  # (S,)
    w = torch.from_numpy(np.where(first, train.decision_weight, 1.0)).float()  # (S,)
    key_tensor = torch.from_numpy(np.asarray(keys, np.float32))  # (K, Z)
    with torch.no_grad():
        _, target_args = controller.query_and_argument(x)  # (S, D)
    tuned = copy.deepcopy(controller)
    tuned.train(train.relabel_trunk)  # a frozen trunk keeps its normalisation statistics
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        generator = torch.Generator().manual_seed(train.seed)
        tuned.requires_grad_(train.relabel_trunk)
        tuned.query_head.requires_grad_(True)
        params = [p for p in tuned.parameters() if p.requires_grad]
        optimizer = adam(params, lr=train.learning_rate)
        batches = max(1, math.ceil(len(x) / train.relabel_batch_size))
        for epoch in range(train.relabel_epochs):
            order = torch.randperm(len(x), generator=generator)
            for b in range(batches):
                idx = order[b * train.relabel_batch_size : (b + 1) * train.relabel_batch_size]
                query, argument = tuned.query_and_argument(x[idx])
                ce = nn.functional.cross_entropy(
                    attention_logits(query, key_tensor), y[idx], reduction="none"
                )
                loss = (ce * w[idx]).sum() / w[idx].sum()
                if argument.shape[1] and train.relabel_trunk:
                    loss = loss + train.distill_weight * nn.functional.mse_loss(
                        argument, target_args[idx]
                    )
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"controller relabelling loss diverged at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    tuned.requires_grad_(True)
    tuned.eval()
    return tuned
