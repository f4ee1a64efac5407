"""Run stored skills in many environments at once: the controller picks, skills act and stop.

Implements the :class:`skillbank.envs.rollout.BatchPolicy` Protocol. Per step, for B environments:
featurise the observations (B, O); run every skill on every environment (with the argument its
environment's controller decision gave, (B, D)) in one gathered pass per architecture group ->
action params (N, B, A) and termination logits (N, B); environments whose skill just stopped (its
termination head fires after at least one action, or it ran ``max_skill_steps``) or that have none
ask the controller: query (B', Z) and argument (B', D) -> attention over the keys (N, Z) -> top-k
skills and weights; then each environment acts with its skill mixture, run with the new arguments.

Composite skills (learned sequences of skills, :mod:`skillbank.learning.composite_skill`) have
keys beside the primitives' (N = N_p primitives + N_c composites). Each environment keeps a call
stack of depth two: when the controller picks a composite, its sub-controller picks the child
(and its argument) at once and again whenever that child stops, until it picks "done" (or has
made ``2 L`` calls), and the controller decides again. Children are primitives and run in the same
batched pass as every other skill. Usage counts a composite when the controller picks it and a
child each time a composite calls it.

A controller that reads the call history (``history_skills`` > 0) is fed, per environment, the
primitives called so far in its episode (:func:`~skillbank.nn.controller.history_features`): a
call enters the history when the next decision replaces it (so a running skill is not yet in
it, as a segment's own skill is not in its training history), a composite's children count as
the primitives they are, and :meth:`reset` and :meth:`on_done` clear it. With
``history_targets`` it also holds, per primitive, the targets (arguments) its finished calls
were given; with ``held_cell``, what each environment has held so far in its episode.

Example:
    >>> executor = SkillExecutor(  # doctest: +SKIP
    ...     featurizer, controller, ids, keys, policies, action)
    >>> executor.reset(64); actions = executor.act(obs_batch)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from skillbank.agent.config import SkillCall
from skillbank.learning.composite_skill import CompositeSkill
from skillbank.learning.features import ObservationFeaturizer
from skillbank.nn.controller import (
    Controller,
    attention_logits,
    history_features,
    top_k_attention,
)
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy, StackedSkillPolicies

__all__ = ["SkillExecutor"]


class SkillExecutor:
    """A batched hierarchical policy over stored skills.

    Args:
        featurizer: Observation mapping -> features (B, O).
        controller: Features -> queries (B, Z).
        skill_ids: (N,) ids of the skills, in key order.
        keys: (N, Z) the skills' keys.
        policies: (N,) the skills' modules, in key order.
        action: The action space every skill acts in.
        top_k: Skills mixed per decision (1: the best one acts alone).
        max_skill_steps: A skill that has not stopped after this many steps is stopped.
        sample: Sample discrete actions from the mixture (breaks the loops greedy cloned
            policies fall into in deterministic worlds) instead of taking the argmax.
        seed: Seed of the action sampling; re-applied at every :meth:`reset`.
        allowed_actions: Discrete ids some demonstration used; the others (headroom in the
            action space) are never taken. ``None``: all.
        sample_skills: Draw the skill from the controller's attention (seeded) instead of
            taking the best one (k = 1 only), so a wrong choice in some state is not repeated
            forever (pick up, drop, pick up, ... in a deterministic world).
        interrupt_margin: A running skill is interrupted when the controller's attention on its
            favourite skill exceeds that on the running one by more than this (1.0: never).
        sample_targets: Draw a target argument from the controller's distribution over each
            of its groups (seeded) instead of taking the most likely value.
        stall_steps: K > 0: a call whose last K actions each left the features exactly as they
            were (a toggle at a locked door, a step into a wall, a drop where nothing can lie)
            ends, and the controller's next choice there passes over the skill that stalled; 0:
            calls run until their termination head fires (or ``max_skill_steps``). Exact
            equality: continuous worlds never stall.
        composite_ids: (N_c,) ids of composite skills, after the primitives in key order.
        composite_keys: (N_c, Z) their keys.
        composites: (N_c,) their sub-controllers (children named by primitive id).
    """

    def __init__(
        self,
        featurizer: ObservationFeaturizer,
        controller: Controller,
        skill_ids: Sequence[str],
        keys: npt.NDArray[np.float32],
        policies: Sequence[SkillPolicy],
        action: ActionSpec,
        *,
        top_k: int = 1,
        max_skill_steps: int = 64,
        sample: bool = True,
        sample_skills: bool = False,
        seed: int = 0,
        interrupt_margin: float = 1.0,
        stall_steps: int = 0,
        sample_targets: bool = False,
        allowed_actions: Sequence[int] | None = None,
        composite_ids: Sequence[str] = (),
        composite_keys: npt.NDArray[np.float32] | None = None,
        composites: Sequence[CompositeSkill] = (),
    ) -> None:
        if not skill_ids or len(skill_ids) != len(keys) or len(keys) != len(policies):
            raise ValueError("SkillExecutor needs one key and one policy per skill (at least one)")
        num_c = len(composite_ids)
        if len(composites) != num_c or (
            num_c and (composite_keys is None or len(composite_keys) != num_c)
        ):
            raise ValueError("SkillExecutor needs one key and one module per composite skill")
        position = {s: i for i, s in enumerate(skill_ids)}
        self._children: list[torch.Tensor] = []  # per composite: (C,) primitive indices
        for cid, composite in zip(composite_ids, composites, strict=True):
            missing = [c for c in composite.config.children if c not in position]
            if missing:
                raise ValueError(f"SkillExecutor: composite {cid!r} calls unknown skills {missing}")
            self._children.append(torch.tensor([position[c] for c in composite.config.children]))
        self.featurizer = featurizer
        self.controller = controller
        self.num_primitives = len(skill_ids)
        self.skill_ids = (*skill_ids, *composite_ids)
        all_keys = [np.asarray(keys, np.float32)]
        if num_c and composite_keys is not None:
            all_keys.append(np.asarray(composite_keys, np.float32))
        self.keys = torch.from_numpy(np.concatenate(all_keys))  # (N_p + N_c, Z)
        self.composites = tuple(composites)
        self.action = action
        self.top_k = max(1, min(top_k, len(skill_ids)))
        self._solo_weights = torch.eye(self.top_k)[0]  # (K,): a skill that runs alone
        self.max_skill_steps = max_skill_steps
        self.sample = sample
        self.sample_skills = sample_skills
        self.interrupt_margin = interrupt_margin
        if stall_steps < 0:
            raise ValueError(f"SkillExecutor stall_steps must be >= 0, got {stall_steps}")
        self.stall_steps = stall_steps
        self.sample_targets = sample_targets
        self._action_mask = torch.zeros(action.size)  # (A,) 0 allowed, -inf never seen
        if allowed_actions is not None and action.kind == "discrete":
            self._action_mask.fill_(float("-inf"))
            self._action_mask[list(allowed_actions)] = 0.0
        self.seed = seed
        self.trace = False
        """Keep every call per episode (:meth:`calls_of`); off: only usage counts."""
        self._generator = torch.Generator()
        # Skills sharing a config run stacked; groups keep the key order through an index map.
        groups: dict[Any, list[int]] = {}
        for index, policy in enumerate(policies):
            groups.setdefault(policy.config, []).append(index)
        self._groups = [
            (StackedSkillPolicies([policies[i] for i in members]), torch.tensor(members))
            for members in groups.values()
        ]
        self._log_std = [p.log_std for p in policies]
        self.reset(1)

    # --- BatchPolicy ----------------------------------------------------------------------------

    def reset(self, num_envs: int) -> None:
        """Forget all state; the next :meth:`act` gets batches of ``num_envs`` observations."""
        self.num_envs = num_envs
        self._generator.manual_seed(self.seed)
        self._active = torch.full((num_envs, self.top_k), -1, dtype=torch.long)  # (B, K)
        self._weights = torch.zeros(num_envs, self.top_k)  # (B, K)
        self._steps_in_skill = torch.zeros(num_envs, dtype=torch.long)  # (B,)
        self._argument = torch.zeros(num_envs, self.controller.config.arg_dim)  # (B, D)
        self._episode_of = np.arange(num_envs, dtype=np.int64)
        self._next_episode = num_envs
        # per episode (index since reset): calls retrieved / executed, by skill index
        self._episode_retrieved: dict[int, Counter[int]] = {}
        self._episode_executed: dict[int, Counter[int]] = {}
        self._composite = torch.full((num_envs,), -1, dtype=torch.long)  # (B,) running composite
        self._calls = torch.zeros(num_envs, dtype=torch.long)  # (B,) its children called so far
        self._last = torch.full((num_envs,), -1, dtype=torch.long)  # (B,) last primitive called
        self._counts = torch.zeros(num_envs, self.num_primitives, dtype=torch.long)  # (B, N_p)
        # per primitive, the targets its finished calls were given, OR-ed (history-v2 only)
        self._targets = torch.zeros(num_envs, self.num_primitives, self._argument.shape[1])
        self._held = torch.zeros(num_envs, self._argument.shape[1])  # (B, D) held so far
        self._episode_steps = np.zeros(num_envs, dtype=np.int64)  # (B,) steps in its episode
        self._previous: torch.Tensor | None = None  # (B, O) last step's features (stall_steps)
        self._stalled = torch.zeros(num_envs, dtype=torch.long)  # (B,) unchanged steps in call
        self._avoid = torch.full((num_envs,), -1, dtype=torch.long)  # (B,) skill that stalled
        # per episode: [first step, skill index, argument (D,), actions] per call (trace only)
        self._traced: dict[int, list[tuple[int, int, npt.NDArray[np.float32], list[Any]]]] = {}

    @torch.no_grad()
    def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """One action per environment: (B,) ids or (B, A) values."""
        x = torch.from_numpy(self.featurizer.transform(obs))  # (B, O)
        rows = torch.arange(x.shape[0])
        held_cell, target = self.controller.config.held_cell, self.controller.config.target
        if held_cell is not None and target is not None:
            self._held = torch.maximum(self._held, target.content(x, held_cell))
        if self.stall_steps:
            self._count_stalls(x)
        # --- who decides: no skill yet, or its termination head fired after >= 1 action ---------
        need = self._active[:, 0] < 0
        # (N_p, B, A), (N_p, B): the running skills judge this observation after the actions
        # they have taken in their calls (duration-aware termination heads read that count)
        params, stop_logits = self._run_skills(x, self._argument, self._steps_in_skill)
        if (~need).any():
            active = self._active.clamp(min=0)  # (B, K)
            stop_p = (torch.sigmoid(stop_logits[active.T, rows]).T * self._weights).sum(1)  # (B,)
            fired = (self._steps_in_skill >= 1) & (stop_p > 0.5)
            need |= fired | (self._steps_in_skill >= self.max_skill_steps)
            if self.stall_steps:
                stuck = ~need & (self._stalled >= self.stall_steps)  # (B,)
                self._avoid = torch.where(stuck, active[:, 0], -1)
                need |= stuck
            if self.interrupt_margin < 1.0:
                # Interruption (Sutton, Precup & Singh, 1999): leave a running skill when the
                # controller now prefers another by more than the margin of attention.
                attention = torch.softmax(
                    attention_logits(self.controller(x, self._history(rows)), self.keys), dim=-1
                )  # (B, N)
                running = torch.where(
                    self._composite >= 0, self._composite + self.num_primitives, active[:, 0]
                )  # (B,)
                best, current = attention.max(1).values, attention[rows, running]
                left = (self._steps_in_skill >= 1) & (best - current > self.interrupt_margin)
                self._composite[left] = -1
                need |= left
        if need.any():
            self._record_calls(need)
            # a running composite picks its next child (or ends), then the controller decides
            self._ask_composites(x, need & (self._composite >= 0))
            top = need & (self._composite < 0)
            if top.any():
                self._ask_controller(x, torch.nonzero(top).squeeze(1))
                self._ask_composites(x, top & (self._composite >= 0))
            chosen = torch.nonzero(need).squeeze(1)  # (B',)
            self._steps_in_skill[chosen] = 0
            self._stalled[chosen] = 0
            self._avoid[chosen] = -1
            # the skills just chosen act on the arguments just given
            params[:, chosen] = self._run_skills(
                x[chosen], self._argument[chosen], self._steps_in_skill[chosen]
            )[0]
        self._steps_in_skill += 1
        # --- act with the attention-weighted mixture of the chosen skills ------------------------
        chosen_params = params[self._active.T, rows]  # (K, B, A)
        w = self._weights.T.unsqueeze(-1)  # (K, B, 1)
        if self.action.kind == "discrete":
            probs = (torch.softmax(chosen_params + self._action_mask, dim=-1) * w).sum(0)  # (B, A)
            if self.sample:
                picked = torch.multinomial(probs, 1, generator=self._generator).squeeze(1)
                return self._count_steps(picked.numpy())
            return self._count_steps(probs.argmax(-1).numpy())
        return self._count_steps((chosen_params * w).sum(0).numpy())  # (B, A)

    def _count_stalls(self, x: torch.Tensor) -> None:
        """Per environment, one more unchanged step in its running call when its features x
        (B, O) equal the last step's (a slot whose episode just ended compares with nothing)."""
        previous = self._previous
        if previous is not None and previous.shape == x.shape:
            same = (x == previous).all(1) & (self._steps_in_skill >= 1)  # (B,)
            self._stalled = torch.where(same, self._stalled + 1, 0)
        self._previous = x.clone()

    def _count_steps(self, actions: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Advance each slot's episode step count; when tracing, file each discrete action
        under its environment's running call."""
        if self.trace and self.action.kind == "discrete":
            for b, action in enumerate(actions.tolist()):
                calls = self._traced.get(int(self._episode_of[b]))
                if calls:
                    calls[-1][3].append(action)
        self._episode_steps += 1
        return actions

    def _ask_controller(self, x: torch.Tensor, chosen: torch.Tensor) -> None:
        """The top controller decides for environments ``chosen`` (B',) on features x (B, O):
        primitives start at once; a composite is pushed (its sub-controller then picks)."""
        query, argument = self.controller.query_and_argument(
            x[chosen], self._history(chosen), self._generator if self.sample_targets else None
        )  # (B', Z), (B', D)
        logits = attention_logits(query, self.keys)  # (B', N)
        avoid = self._avoid[chosen]  # (B',): a primitive that just stalled, -1: none
        if self.num_primitives > 1 and (avoid >= 0).any():
            rows = torch.nonzero(avoid >= 0).squeeze(1)
            logits[rows, avoid[rows]] = float("-inf")
        if self.sample_skills and self.top_k == 1:
            probs = torch.softmax(logits, dim=-1)
            indices = torch.multinomial(probs, 1, generator=self._generator)  # (B', 1)
            weights = torch.ones_like(indices, dtype=torch.float32)
        else:
            # a composite runs alone; mixtures (k > 1) are of primitives only
            indices, weights = top_k_attention(logits[:, : self.num_primitives], self.top_k)
            best = logits.argmax(1)
            pushed = best >= self.num_primitives
            indices[pushed] = best[pushed, None]
            weights[pushed] = self._solo_weights
        is_composite = indices[:, 0] >= self.num_primitives
        self._argument[chosen] = argument
        self._active[chosen] = indices.clamp(max=self.num_primitives - 1)
        self._weights[chosen] = weights
        self._composite[chosen] = torch.where(is_composite, indices[:, 0] - self.num_primitives, -1)
        self._calls[chosen] = 0
        for b, row in zip(chosen.tolist(), indices.tolist(), strict=True):
            self._note(b, row[0], row)

    def _ask_composites(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        """Environments in ``mask`` (B,) run a composite: its sub-controller picks the next child
        and its argument, or ends the composite (never before its first call; always after 2 L)."""
        for c in torch.unique(self._composite[mask]).tolist():
            envs = torch.nonzero(mask & (self._composite == c)).squeeze(1)  # (B',)
            composite = self.composites[c]
            logits, argument = composite(x[envs], self._calls[envs])  # (B', C+1), (B', D)
            done = logits.shape[1] - 1
            logits[self._calls[envs] == 0, done] = float("-inf")
            logits[self._calls[envs] >= 2 * composite.config.length, :done] = float("-inf")
            if self.sample_skills:
                pick = torch.multinomial(torch.softmax(logits, -1), 1, generator=self._generator)
                pick = pick.squeeze(1)  # (B',)
            else:
                pick = logits.argmax(1)
            ended = pick == done
            self._composite[envs[ended]] = -1
            go = envs[~ended]
            child = self._children[c][pick[~ended]]  # (B'',)
            self._active[go] = child[:, None]
            self._weights[go] = self._solo_weights
            self._argument[go] = argument[~ended]
            self._calls[go] += 1
            for b, k in zip(go.tolist(), child.tolist(), strict=True):
                self._note(b, k, [k])

    def _record_calls(self, mask: torch.Tensor) -> None:
        """Environments in ``mask`` (B,) leave their primitive: it enters their call history
        (kept only for a controller that reads one: nothing to do per step otherwise)."""
        if not self.controller.config.history_skills:
            return
        ended = mask & (self._active[:, 0] >= 0)  # (B,)
        envs = torch.nonzero(ended).squeeze(1)  # (B',)
        skills = self._active[envs, 0]  # (B',)
        self._last[envs] = skills
        self._counts[envs, skills] += 1
        if self.controller.config.history_targets:
            done = torch.maximum(self._targets[envs, skills], self._argument[envs])  # (B', D)
            self._targets[envs, skills] = done

    def _history(self, envs: torch.Tensor) -> torch.Tensor | None:
        """The call history (B', H) of environments ``envs`` (B',) for the controller, ``None``
        when it reads none; primitives beyond the N it was trained over are left out."""
        config = self.controller.config
        num = config.history_skills
        if not num:
            return None
        counts = self._counts[envs, :num]  # (B', min(N, N_p))
        targets = self._targets[envs, :num] if config.history_targets else None  # (B', ., D)
        if counts.shape[1] < num:
            counts = torch.nn.functional.pad(counts, (0, num - counts.shape[1]))  # (B', N)
            if targets is not None:
                targets = torch.nn.functional.pad(targets, (0, 0, 0, num - targets.shape[1]))
        held = self._held[envs] if config.held_cell is not None else None  # (B', D)
        return history_features(self._last[envs], counts, config.history_cap, targets, held)

    def _note(self, env: int, executed: int, retrieved: Sequence[int]) -> None:
        episode = int(self._episode_of[env])
        self._episode_retrieved.setdefault(episode, Counter()).update(retrieved)
        self._episode_executed.setdefault(episode, Counter())[executed] += 1
        if self.trace:
            argument = self._argument[env].numpy().copy()
            self._traced.setdefault(episode, []).append(
                (int(self._episode_steps[env]), executed, argument, [])
            )

    def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
        """The episodes in these slots ended: clear their skills, follow the next episode.

        Slots get new episodes in the order :func:`skillbank.envs.rollout.evaluate_policy`
        hands them out (ascending slot order, next unused episode index).
        """
        for i in np.asarray(env_indices).tolist():
            self._active[i] = -1
            self._weights[i] = 0.0
            self._steps_in_skill[i] = 0
            self._argument[i] = 0.0
            self._composite[i] = -1
            self._calls[i] = 0
            self._last[i] = -1
            self._counts[i] = 0
            self._targets[i] = 0.0
            self._held[i] = 0.0
            self._stalled[i] = 0
            self._avoid[i] = -1
            if self._previous is not None:
                self._previous[i] = float("nan")  # the next episode's first step is no stall
            self._episode_steps[i] = 0
            self._episode_of[i] = self._next_episode
            self._next_episode += 1

    # --- results --------------------------------------------------------------------------------

    @property
    def retrieved(self) -> Counter[int]:
        """Times each skill (index) was retrieved since :meth:`reset`, idle slots included."""
        return sum(self._episode_retrieved.values(), Counter())

    @property
    def executed(self) -> Counter[int]:
        """Times each skill (index) was executed since :meth:`reset`, idle slots included."""
        return sum(self._episode_executed.values(), Counter())

    def calls_of(self, episode: int) -> tuple[SkillCall, ...]:
        """The calls episode ``episode`` (index since :meth:`reset`) made, in order, with
        :attr:`trace` on (empty otherwise): each skill a decision started (a composite is a call
        of its own, without actions, followed by its children's), the step it started at, its
        argument and, for discrete actions, the actions it took."""
        return tuple(
            SkillCall(
                step=step,
                skill=self.skill_ids[index],
                argument=tuple(round(float(v), 4) for v in argument),
                actions=tuple(actions),
            )
            for step, index, argument, actions in self._traced.get(episode, [])
        )

    def usage(self, successes: Sequence[bool]) -> dict[str, tuple[int, int, int]]:
        """Usage per skill id over the episodes ``successes`` covers (index < its length):
        (retrieved, executed, episodes it ran in that succeeded). Calls made in slots left idle
        once every episode was handed out (the batch steps on until the last one ends) are
        not counted: they belong to no episode."""
        retrieved: Counter[int] = Counter()
        executed: Counter[int] = Counter()
        succeeded: Counter[int] = Counter()
        for episode, counts in self._episode_executed.items():
            if episode >= len(successes):
                continue
            executed.update(counts)
            retrieved.update(self._episode_retrieved.get(episode, Counter()))
            if successes[episode]:
                succeeded.update(set(counts))
        used = set(retrieved) | set(executed)
        return {self.skill_ids[i]: (retrieved[i], executed[i], succeeded[i]) for i in used}

    def _run_skills(
        self, x: torch.Tensor, argument: torch.Tensor, taken: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every primitive on features (B, O), arguments (B, D), actions taken in the running
        call (B,): (N_p, B, A), stops (N_p, B)."""
        n = self.num_primitives
        params = torch.empty(n, x.shape[0], self.action.size)
        stops = torch.empty(n, x.shape[0])
        for stacked, members in self._groups:
            group_params, group_stops = stacked(x, argument, taken)
            params[members] = group_params
            stops[members] = group_stops
        return params, stops
