"""Train the controller and the new (parameterised) skills together, end to end.

Every segment is a call of its skill: the controller reads the context at the segment's first step
(the decision point) and gives a query (which skill: cross-entropy of the attention over the skill
keys, on every step, the first one counting ``decision_weight`` times) and an argument (B, D); the
skill reads its observations beside that argument and is cloned on the segment's actions, and its
termination head learns "stop" on the observation right after the segment and "go on" inside it.
The behaviour-cloning and termination losses flow back through the argument into the controller,
so the argument comes to carry what the skill needs from the context (which object to go to) and
nothing tells it what that is.

Stored skills take part frozen (they are never overwritten): their segments still teach the
controller which argument to give them. Only the new skills' weights and the controller move.

Hindsight arguments (``SkillTrainConfig.argument="hindsight"``, grid worlds): a segment's argument
is instead its *hindsight target*, the content of the interaction cell (the cell the agent acts
on, found from the data by :func:`~skillbank.learning.sighting.interaction_cell`) in the
observation right after the segment ends: what the skill ended facing. The skills are cloned
with the true target (teacher forcing, as goal-conditioned BC relabels goals in hindsight; Ghosh
et al., 2019; Andrychowicz et al., 2017), read it with ``arg_film="pointer"``, and the
controller's target head learns to predict it from the decision point (cross-entropy per one-hot
group); at run time the controller's argmax per group is the argument.

With ``ControllerTrainConfig.history`` the controller also reads each segment's call history
(the skills of the earlier segments of its episode, :func:`episode_call_prefixes`, or those a
replayed segment brings), at its decision point and at every step inside it; a share
(``history_retry``) of the inner steps reads the segment's own skill as called already, so a
call that stopped early is retried.

Example:
    >>> controller, new = train_hierarchy(  # doctest: +SKIP
    ...     segments, assignment, keys, frozen, num_new=3, action=action,
    ...     skill_config=SkillTrainConfig(), controller_config=ControllerTrainConfig())
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from skillbank.errors import TrainingError
from skillbank.learning.carry_augment import carry_swap, swap_carried
from skillbank.learning.controller_training import (
    ControllerTrainConfig,
    episode_call_prefixes,
    mix_retry,
    step_histories,
    step_target_histories,
)
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.sighting import (
    background_content,
    grid_cells,
    interaction_cell,
    inventory_cell,
    local_actions,
)
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.target_relabel import named_targets, relabel_nearby, relabel_to_named
from skillbank.nn.controller import (
    HISTORY_COUNT_CAP,
    Controller,
    ControllerConfig,
    TargetSpec,
    attention_logits,
    call_history,
)
from skillbank.nn.grid_trunk import GridSlice
from skillbank.nn.optim import adam
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy, SkillPolicyConfig, action_log_prob

__all__ = [
    "RELABEL_MODES",
    "held_so_far",
    "hindsight_target",
    "hindsight_targets",
    "inventory_of",
    "segment_arguments",
    "train_hierarchy",
]


def hindsight_target(segments: SegmentSet) -> TargetSpec | None:
    """Where the segments' hindsight targets are read: the interaction cell of the first grid
    (with known one-hot groups) that has one; ``None`` in vector worlds, with continuous actions,
    or when no action acts on a single place.

    The interaction cell is the cell that local actions (:func:`local_actions`) change most
    often among the cells that other actions change too (BabyAI: the cell in front of the agent).
    """
    if not segments.actions or segments.actions[0].dtype.kind not in "iu":
        return None
    for grid in segments.grids:
        if not grid.groups:
            continue
        cells, events = _cells_and_interactions(segments, grid)
        cell = interaction_cell(cells, events) if events else None
        if cell is not None:
            return TargetSpec(grid, cell, grid.groups)
    return None


def inventory_of(segments: SegmentSet, target: TargetSpec) -> int | None:
    """The inventory cell of the target's grid (:func:`inventory_cell`: the cell only
    interactions change, where BabyAI shows what the agent carries), or None."""
    cells, events = _cells_and_interactions(segments, target.grid)
    return inventory_cell(cells, events) if events else None


def _cells_and_interactions(
    segments: SegmentSet, grid: GridSlice
) -> tuple[list[npt.NDArray[np.bool_]], list[npt.NDArray[np.bool_]]]:
    """Per episode, the grid's cells (T+1, N, C) and where its steps are interactions
    (:func:`local_actions`) (T,); no interaction steps at all when no action is local."""
    actions = [np.asarray(a, np.int64) for a in segments.actions]
    cells = [grid_cells(f, grid) for f in segments.features]  # (T+1, N, C) each
    local = local_actions(cells, actions)  # (A,)
    if not local.any():
        return cells, []
    return cells, [local[a] for a in actions]


def held_so_far(segments: SegmentSet, target: TargetSpec, cell: int) -> torch.Tensor:
    """Per segment, what ``cell`` of the target's grid has shown from its episode's start up to
    and including the segment's first step, OR-ed (N_seg, C): what the agent has held."""
    held = [
        np.maximum.accumulate(grid_cells(f, target.grid)[:, cell], axis=0)
        for f in segments.features
    ]  # (T+1, C) each
    rows = [held[e][a] for e, a, _ in segments.spans]
    return (
        torch.from_numpy(np.stack(rows).astype(np.float32)) if rows else torch.zeros(0, target.dim)
    )


RELABEL_MODES = ("none", "next", "nearby", "nearby-held")
"""How hindsight targets are relabelled (:func:`hindsight_targets`)."""


def hindsight_targets(
    segments: SegmentSet, target: TargetSpec, relabel: str = "none"
) -> torch.Tensor:
    """Every segment's hindsight target (N, C): the content of the interaction cell at its end.

    With a token sequence in the features (e.g. the mission), a segment whose target no word of
    its task names (never the background, the content the interaction cell shows most often)
    is relabelled (:mod:`skillbank.learning.target_relabel`): ``"next"``: to the
    target of the next segment of its episode that one names; ``"nearby"``: first to a named
    content in a cell beside its own (not the next named target), else as ``"next"``;
    ``"nearby-held"``: as ``"nearby"``, and a target the agent held at the segment's start
    (the inventory cell's content, :func:`inventory_of`) counts as unnamed: a drop ends facing
    what it dropped, which is not where it was going.
    """
    if relabel not in RELABEL_MODES:
        raise ValueError(f"relabel must be one of {RELABEL_MODES}, got {relabel!r}")
    indices = list(range(segments.num_segments))
    ends = torch.from_numpy(segments.end_features(indices))
    own = target.content(ends)  # (N, C)
    if relabel == "none" or not segments.tokens:
        return own
    bag = segments.tokens[0]
    starts = segments.start_features()  # (N, O)
    words = starts[:, bag.offset : bag.offset + bag.vocab] > 0.5  # (N, V)
    # the background, never named: what the interaction cell shows most often (the floor)
    background = background_content(
        np.concatenate([grid_cells(f, target.grid)[:, target.cell] for f in segments.features])
    )
    if relabel in ("nearby", "nearby-held"):
        nearby = target.contents_beside(ends).numpy()  # (N, M, C)
        cell = inventory_of(segments, target) if relabel == "nearby-held" else None
        held = None if cell is None else target.content(torch.from_numpy(starts), cell).numpy()
        return torch.from_numpy(
            relabel_nearby(
                own.numpy(), nearby, words, segments.spans, background=background, held=held
            )
        )
    named = named_targets(own.numpy(), words, background=background)
    return torch.from_numpy(relabel_to_named(own.numpy(), segments.spans, named))


def _segment_rows(segments: SegmentSet) -> tuple[npt.NDArray[Any], ...]:
    """Steps (S, O), their segment (S,), decision features (N, O), end features (N, O); the
    features as stored (uint8 for grid worlds: turned to float a batch at a time)."""
    indices = list(range(segments.num_segments))
    feats, _, owner = segments.steps(indices, compact=True)
    starts = segments.start_features(compact=True)
    ends = segments.end_features(indices, compact=True)
    return feats, owner, starts, ends


def train_hierarchy(
    segments: SegmentSet,
    assignment: Sequence[int],
    keys: npt.NDArray[np.float32],
    frozen: Sequence[SkillPolicy],
    num_new: int,
    action: ActionSpec,
    skill_config: SkillTrainConfig,
    controller_config: ControllerTrainConfig,
    histories: Sequence[Sequence[int]] | None = None,
) -> tuple[Controller, list[SkillPolicy]]:
    """Fit the controller (query + argument heads) and ``num_new`` new skills jointly.

    Args:
        segments: The segments (this call's and any replayed ones).
        assignment: Skill index of every segment: ``0 .. len(frozen)-1`` are the stored skills,
            the next ``num_new`` the new ones (rows of ``keys`` in the same order).
        keys: (N, Z) every skill's key, N = len(frozen) + num_new.
        frozen: The stored skills, in key order (not trained).
        num_new: New skills to create and train.
        action: The action space.
        skill_config: New skills' shape and training (``arg_dim``, epochs, batch, rate, ...).
        controller_config: The controller's shape and its loss weights.
        histories: Per segment, the skill rows called before it in its episode (read with
            ``controller_config.history``); ``None``: from the spans.

    Returns:
        The controller and the new skills, in key order.

    Raises:
        TrainingError: Inconsistent inputs or a diverging loss.
    """
    total = len(frozen) + num_new
    labels_np = np.asarray(assignment, np.int64)
    if len(labels_np) != segments.num_segments or len(keys) != total:
        raise TrainingError(
            "hierarchy training: one assignment per segment and one key per skill are needed"
        )
    if len(labels_np) and (labels_np.min() < 0 or labels_np.max() >= total):
        raise TrainingError("hierarchy training: a segment is assigned to no known skill")
    # Stored skills fix the kind of argument (a memory of learned-argument skills keeps one).
    hindsight = skill_config.argument == "hindsight"
    if frozen:
        hindsight = all(p.config.argument == "hindsight" for p in frozen)
    target = hindsight_target(segments) if hindsight else None
    arg_dim = target.dim if target is not None else skill_config.arg_dim
    if any(p.config.arg_dim != arg_dim for p in frozen):
        raise TrainingError(
            f"hierarchy training: stored skills read arguments of another width than {arg_dim}",
            hint="learn into a memory whose skills all take the same kind of argument",
        )
    feats, owner, starts, ends = _segment_rows(segments)
    acts = segments.step_actions(range(segments.num_segments))
    first = np.concatenate([[True], owner[1:] != owner[:-1]])
    x = torch.from_numpy(feats)  # (S, O)
    y = torch.from_numpy(acts)  # (S,) | (S, A)
    step_seg = torch.from_numpy(owner)  # (S,)
    step_w = torch.from_numpy(np.where(first, controller_config.decision_weight, 1.0)).float()
    if controller_config.balance_skills:
        # Each skill's steps weigh alike in all: rare skills (a drop once per episode) count.
        step_skill = torch.from_numpy(labels_np[owner])
        mass = torch.zeros(total).index_add_(0, step_skill, step_w)
        present = mass > 0
        step_w = step_w * (mass[present].mean() / mass.clamp(min=1e-6))[step_skill]
    start_x = torch.from_numpy(starts)  # (N, O)
    end_x = torch.from_numpy(ends)  # (N, O)
    # actions taken in the call at each step (S,) and at each end (N,), for duration-aware stops
    step_taken, seg_length = (
        torch.from_numpy(a) for a in segments.durations(range(segments.num_segments))
    )
    seg_skill = torch.from_numpy(labels_np)  # (N,)
    # Hindsight: every segment's target, the interaction cell's content at its end (N, C).
    seg_target = (
        hindsight_targets(segments, target, skill_config.relabel_mode)
        if target is not None
        else None
    )
    key_tensor = torch.from_numpy(np.asarray(keys, np.float32))
    # Call history: per segment, what its episode called before it (N_seg, H); steps share it.
    # A retry history (its own skill already called) trains a share of the inner steps.
    num_history = total if controller_config.reads_history() else 0
    history_targets = bool(num_history) and controller_config.history_targets and target is not None
    held_cell = (
        inventory_of(segments, target)
        if num_history and controller_config.history_held and target is not None
        else None
    )
    seg_history: torch.Tensor | None = None
    seg_retry = torch.zeros(0)
    if num_history:
        if histories is None:
            histories = episode_call_prefixes(segments.spans, labels_np.tolist())
        seg_history, seg_retry = step_histories(
            histories, labels_np.tolist(), num_history, controller_config.history_cap
        )
        if history_targets:
            assert seg_target is not None
            done, done_retry = step_target_histories(
                segments.spans, labels_np.tolist(), seg_target, num_history
            )
            seg_history = torch.cat([seg_history, done], dim=1)
            seg_retry = torch.cat([seg_retry, done_retry], dim=1)
        if held_cell is not None:
            assert target is not None
            held = held_so_far(segments, target, held_cell)  # (N_seg, C)
            seg_history = torch.cat([seg_history, held], dim=1)
            seg_retry = torch.cat([seg_retry, held], dim=1)
    step_first = torch.from_numpy(first)  # (S,)
    # Carry augmentation: skills (not the controller) see other contents of the inventory cell.
    swap = None
    if target is not None and skill_config.carry_augment > 0:
        carry_cell = inventory_of(segments, target)
        swap = carry_swap(segments, target.grid, carry_cell) if carry_cell is not None else None
    num_steps, num_segs = len(x), len(end_x)
    pos_weight = torch.tensor(max(1.0, num_steps / max(num_segs, 1)))
    copy_tokens = (
        segments.tokens[0]
        if target is not None and controller_config.target_copy and segments.tokens
        else None
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(skill_config.seed)
        generator = torch.Generator().manual_seed(skill_config.seed)
        controller = Controller(
            ControllerConfig(
                obs_dim=segments.obs_dim,
                latent_dim=key_tensor.shape[1],
                hidden_dims=controller_config.hidden_dims,
                arg_dim=arg_dim,
                grid=controller_config.grid_spec(
                    segments.grids, target is not None, segments.tokens
                ),
                target=target,
                target_tokens=copy_tokens,
                history_skills=num_history,
                history_cap=controller_config.history_cap if num_history else HISTORY_COUNT_CAP,
                copy_window=controller_config.copy_window if copy_tokens is not None else 0,
                copy_context=controller_config.copy_context if copy_tokens is not None else 0,
                history_targets=history_targets,
                held_cell=held_cell,
                copy_done=controller_config.copy_done
                and copy_tokens is not None
                and (history_targets or held_cell is not None),
            )
        )
        new = [
            SkillPolicy(
                SkillPolicyConfig(
                    obs_dim=segments.obs_dim,
                    action=action,
                    hidden_dims=skill_config.hidden_dims,
                    arg_dim=arg_dim,
                    grid=skill_config.grid_spec(
                        segments.grids,
                        "pointer" if target is not None else None,
                        history=segments.history,
                        tokens=segments.tokens,
                    ),
                    argument="hindsight" if target is not None else "learned",
                    duration_bins=skill_config.duration_bins,
                )
            )
            for _ in range(num_new)
        ]
        skills: list[SkillPolicy] = [*frozen, *new]
        for policy in frozen:
            policy.requires_grad_(False)
        params = [*controller.parameters(), *(p for s in new for p in s.parameters())]
        optimizer = adam(
            params,
            lr=skill_config.learning_rate,
            weight_decay=skill_config.weight_decay,
            decoupled=True,
        )
        noise = skill_config.input_noise

        def batch_loss(idx: torch.Tensor, end_idx: torch.Tensor, train: bool) -> torch.Tensor:
            seg = step_seg[idx]
            step_in, end_in = x[idx].float(), end_x[end_idx].float()
            if train and noise > 0:
                step_in = step_in + noise * torch.randn(step_in.shape, generator=generator)
                end_in = end_in + noise * torch.randn(end_in.shape, generator=generator)
            # Query on the step's own context (the controller is asked again after a stop).
            step_hist = None  # (b, H)
            if seg_history is not None:
                retry = controller_config.history_retry if train else 0.0
                step_hist = mix_retry(
                    seg_history[seg], seg_retry[seg], step_first[idx], retry, generator
                )
            query, _ = controller.query_and_argument(step_in, step_hist)
            ce = nn.functional.cross_entropy(
                attention_logits(query, key_tensor), seg_skill[seg], reduction="none"
            )
            query_loss = (ce * step_w[idx]).sum() / step_w[idx].sum()
            # Arguments from each segment's decision point, shared by its steps and its end.
            both = torch.cat([seg, end_idx])
            both_hist = seg_history[both] if seg_history is not None else None  # (b + e, H)
            if seg_target is None:
                decision = start_x[both].float()  # (b + e, O)
                _, argument = controller.query_and_argument(decision, both_hist)  # (b+e, D)
            else:
                # Teacher forcing: skills read the true target; the head learns to predict it.
                assert target is not None
                argument = seg_target[both]  # (b + e, C)
                query_loss = query_loss + controller_config.target_weight * (
                    controller.target_loss(start_x[both].float(), argument, both_hist).mean()
                )
            inputs = torch.cat([step_in, end_in])  # (b + e, O)
            taken = torch.cat([step_taken[idx], seg_length[end_idx]])  # (b + e,)
            if train and swap is not None:
                inputs = swap_carried(inputs, both, swap, skill_config.carry_augment, generator)
            skill_of = seg_skill[both]
            act_loss = inputs.new_zeros(())
            term_loss = inputs.new_zeros(())
            for k in torch.unique(skill_of).tolist():
                rows = torch.nonzero(skill_of == k).squeeze(1)
                out, stop_logit = skills[k](inputs[rows], argument[rows], taken[rows])
                is_step = rows < len(idx)
                if is_step.any():
                    logp = action_log_prob(
                        out[is_step], y[idx][rows[is_step]], action, skills[k].log_std
                    )
                    act_loss = act_loss - logp.sum()
                term_loss = term_loss + nn.functional.binary_cross_entropy_with_logits(
                    stop_logit, (~is_step).float(), pos_weight=pos_weight, reduction="sum"
                )
            return (
                query_loss
                + act_loss / max(len(idx), 1)
                + skill_config.termination_weight * term_loss / len(both)
            )

        # Early stopping: whole episodes held out (every m-th), the best epoch's weights kept.
        train_steps, val_steps = torch.arange(num_steps), torch.zeros(0, dtype=torch.long)
        train_segs, val_segs = torch.arange(num_segs), torch.zeros(0, dtype=torch.long)
        if skill_config.validation_fraction > 0 and len(segments.features) >= 10:
            every = max(2, round(1 / skill_config.validation_fraction))
            held = torch.tensor([e % every == every - 1 for e, _, _ in segments.spans])
            val_segs, train_segs = torch.nonzero(held).squeeze(1), torch.nonzero(~held).squeeze(1)
            step_held = held[step_seg]
            val_steps = torch.nonzero(step_held).squeeze(1)
            train_steps = torch.nonzero(~step_held).squeeze(1)
        modules = [controller, *new]
        best: tuple[float, list[dict[str, torch.Tensor]]] | None = None
        # One pass = every step once, plus every segment end once (ends spread over the batches).
        batches = max(1, math.ceil(len(train_steps) / skill_config.batch_size))
        end_batch = max(1, math.ceil(len(train_segs) / batches))
        for epoch in range(max(skill_config.num_epochs, controller_config.num_epochs)):
            order = train_steps[torch.randperm(len(train_steps), generator=generator)]
            end_order = train_segs[torch.randperm(len(train_segs), generator=generator)]
            for b in range(batches):
                idx = order[b * skill_config.batch_size : (b + 1) * skill_config.batch_size]
                end_idx = end_order[b * end_batch : (b + 1) * end_batch]
                loss = batch_loss(idx, end_idx, train=True)
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"hierarchy training loss diverged at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            if len(val_steps) and len(val_segs):
                with torch.no_grad():
                    held_loss = batch_loss(val_steps, val_segs, train=False).item()
                if best is None or held_loss < best[0]:
                    best = (held_loss, [copy.deepcopy(m.state_dict()) for m in modules])
        if best is not None:
            for module, state in zip(modules, best[1], strict=True):
                module.load_state_dict(state)
        for policy in skills:
            policy.requires_grad_(True)
    controller.eval()
    for policy in new:
        policy.eval()
    return controller, new


@torch.no_grad()
def segment_arguments(
    controller: Controller | None,
    segments: SegmentSet,
    histories: Sequence[Sequence[int]] | None = None,
    relabel: str = "none",
) -> torch.Tensor:
    """The argument (N, D) each segment's skill reads (D may be 0): the one the controller gives
    at its decision point, or with a target head the segment's hindsight target (the argument
    its skill was trained with: what the segment ends facing, or with ``relabel`` see
    :func:`hindsight_targets`).

    A controller that reads the call history is given ``histories`` (per segment, the skill
    rows called before it); ``None``: none called yet (before segments are assigned to skills,
    their history is not known)."""
    starts = segments.start_features()
    if controller is None:
        return torch.zeros(len(starts), 0)
    target = controller.config.target
    if target is not None:
        return hindsight_targets(segments, target, relabel)  # (N, C)
    history = None
    if controller.config.history_skills:
        prefixes = histories if histories is not None else [()] * len(starts)
        config = controller.config
        history = call_history(prefixes, config.history_skills, config.history_cap)  # (N, H)
    _, argument = controller.query_and_argument(torch.from_numpy(starts), history)
    return argument
