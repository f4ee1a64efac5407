"""Run stored skills in many environments at once: the controller picks, skills act and stop.

Implements the :class:`skillbank.envs.rollout.BatchPolicy` Protocol. Per step, for B environments:
featurise the observations (B, O); run every skill on every environment (with the argument its
environment's controller decision gave, (B, D)) in one gathered pass per architecture group ->
action params (N, B, A) and termination logits (N, B); environments whose skill just stopped (its
termination head fires after at least one action, or it ran ``max_skill_steps``) or that have none
ask the controller: query (B', Z) and argument (B', D) -> attention over the keys (N, Z) -> top-k
skills and weights; then each environment acts with its skill mixture, run with the new arguments.

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

from skillbank.learning.features import ObservationFeaturizer
from skillbank.nn.controller import Controller, attention_logits, top_k_attention
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
        allowed_actions: Sequence[int] | None = None,
    ) -> None:
        if not skill_ids or len(skill_ids) != len(keys) or len(keys) != len(policies):
            raise ValueError("SkillExecutor needs one key and one policy per skill (at least one)")
        self.featurizer = featurizer
        self.controller = controller
        self.skill_ids = tuple(skill_ids)
        self.keys = torch.from_numpy(np.asarray(keys, np.float32))
        self.action = action
        self.top_k = max(1, min(top_k, len(skill_ids)))
        self.max_skill_steps = max_skill_steps
        self.sample = sample
        self.sample_skills = sample_skills
        self.interrupt_margin = interrupt_margin
        self._action_mask = torch.zeros(action.size)  # (A,) 0 allowed, -inf never seen
        if allowed_actions is not None and action.kind == "discrete":
            self._action_mask.fill_(float("-inf"))
            self._action_mask[list(allowed_actions)] = 0.0
        self.seed = seed
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
        self._episode_skills: dict[int, set[int]] = {}
        self.retrieved: Counter[int] = Counter()
        self.executed: Counter[int] = Counter()

    @torch.no_grad()
    def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """One action per environment: (B,) ids or (B, A) values."""
        x = torch.from_numpy(self.featurizer.transform(obs))  # (B, O)
        rows = torch.arange(x.shape[0])
        # --- who decides: no skill yet, or its termination head fired after >= 1 action ---------
        need = self._active[:, 0] < 0
        params, stop_logits = self._run_skills(x, self._argument)  # (N, B, A), (N, B)
        if (~need).any():
            active = self._active.clamp(min=0)  # (B, K)
            stop_p = (torch.sigmoid(stop_logits[active.T, rows]).T * self._weights).sum(1)  # (B,)
            fired = (self._steps_in_skill >= 1) & (stop_p > 0.5)
            need |= fired | (self._steps_in_skill >= self.max_skill_steps)
            if self.interrupt_margin < 1.0:
                # Interruption (Sutton, Precup & Singh, 1999): leave a running skill when the
                # controller now prefers another by more than the margin of attention.
                attention = torch.softmax(
                    attention_logits(self.controller(x), self.keys), dim=-1
                )  # (B, N)
                best, current = attention.max(1).values, attention[rows, active[:, 0]]
                need |= (self._steps_in_skill >= 1) & (best - current > self.interrupt_margin)
        if need.any():
            chosen = torch.nonzero(need).squeeze(1)  # (B',)
            query, argument = self.controller.query_and_argument(x[chosen])  # (B', Z), (B', D)
            logits = attention_logits(query, self.keys)  # (B', N)
            if self.sample_skills and self.top_k == 1:
                probs = torch.softmax(logits, dim=-1)
                indices = torch.multinomial(probs, 1, generator=self._generator)  # (B', 1)
                weights = torch.ones_like(indices, dtype=torch.float32)
            else:
                indices, weights = top_k_attention(logits, self.top_k)  # (B', K)
            self._argument[chosen] = argument
            self._active[chosen] = indices
            self._weights[chosen] = weights
            self._steps_in_skill[chosen] = 0
            for b, row in zip(chosen.tolist(), indices.tolist(), strict=True):
                self.retrieved.update(row)
                self.executed[row[0]] += 1
                self._episode_skills.setdefault(int(self._episode_of[b]), set()).add(row[0])
            # the skills just chosen act on the arguments just given
            params[:, chosen] = self._run_skills(x[chosen], self._argument[chosen])[0]
        self._steps_in_skill += 1
        # --- act with the attention-weighted mixture of the chosen skills ------------------------
        chosen_params = params[self._active.T, rows]  # (K, B, A)
        w = self._weights.T.unsqueeze(-1)  # (K, B, 1)
        if self.action.kind == "discrete":
            probs = (torch.softmax(chosen_params + self._action_mask, dim=-1) * w).sum(0)  # (B, A)
            if self.sample:
                return torch.multinomial(probs, 1, generator=self._generator).squeeze(1).numpy()
            return probs.argmax(-1).numpy()
        return (chosen_params * w).sum(0).numpy()  # (B, A)

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
            self._episode_of[i] = self._next_episode
            self._next_episode += 1

    # --- results --------------------------------------------------------------------------------

    def usage(self, successes: Sequence[bool]) -> dict[str, tuple[int, int, int]]:
        """Usage per skill id: (retrieved, executed, episodes it ran in that succeeded)."""
        succeeded: Counter[int] = Counter()
        for episode, skills in self._episode_skills.items():
            if episode < len(successes) and successes[episode]:
                succeeded.update(skills)
        used = set(self.retrieved) | set(self.executed)
        return {
            self.skill_ids[i]: (self.retrieved[i], self.executed[i], succeeded[i]) for i in used
        }

    def _run_skills(
        self, x: torch.Tensor, argument: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every skill on features (B, O) with arguments (B, D): params (N, B, A), stops (N, B)."""
        n = len(self.skill_ids)
        params = torch.empty(n, x.shape[0], self.action.size)
        stops = torch.empty(n, x.shape[0])
        for stacked, members in self._groups:
            group_params, group_stops = stacked(x, argument)
            params[members] = group_params
            stops[members] = group_stops
        return params, stops
