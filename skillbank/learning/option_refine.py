"""Second stage of segmentation: options as observation-conditioned policies (DDO-style hard EM).

Action statistics alone cannot tell "a long run of forward steps" from "a skill": both are
cheap to explain with a narrow option. Once each option is a small policy pi_k(a | o), a broad
option that navigates explains every navigation step well, so spurious splits stop paying for
their switches, while an option never trained on (say) a pick-up action keeps giving it a low
probability, so real changes of behaviour stay cut. Starting from the action-only segmentation,
each round fits one policy per option on its steps (label-smoothed, so log-probabilities stay
bounded) and re-decodes every demonstration with Viterbi under the switching cost (Fox et al.,
2017, "Multi-Level Discovery of Deep Options").

For discrete actions each option keeps the action support it had in the action stage (the
actions making up at least ``support_share`` of its steps): a policy can only re-weigh the actions
its option already used, so the broad option cannot learn to absorb a rare action in context (an
unrestricted conditional policy explains everything and the segmentation collapses).

Measured limit: the support restriction also freezes the starting options. Started from an
action-only EM that gave every action its own option, no option may take another's action and
each change of action stays a cut (toy world: precision 0.93 -> 0.47); started from moves plus one
option per interaction (the segmenter's default), nothing moves. Refinement can merge or shift
boundaries between the options it is given; it never creates an option, so it cannot find a
boundary between two stretches of the same option (e.g. BabyAI's Explore -> GoNextTo).

Example:
    >>> paths = refine_options(episodes, paths, switch_cost=2.5, iterations=3)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from skillbank.learning.features import ObservationFeaturizer
from skillbank.nn.optim import adam
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy, SkillPolicyConfig, action_log_prob
from skillbank.types import Episode

__all__ = ["refine_options"]

IntArray = npt.NDArray[np.int64]


def refine_options(
    episodes: Sequence[Episode],
    paths: Sequence[IntArray],
    *,
    switch_cost: float,
    iterations: int,
    hidden_dim: int = 64,
    epochs: int = 3,
    label_smoothing: float = 0.01,
    support_share: float = 0.05,
    seed: int = 0,
) -> list[IntArray]:
    """Refine per-step option ids ``paths`` (one (T,) array per episode) with option policies.

    Returns:
        The refined option ids per episode (options renumbered densely).
    """
    from skillbank.learning.segment import viterbi_switching

    featurizer = ObservationFeaturizer.fit(episodes)
    x = torch.from_numpy(
        np.concatenate([featurizer.episode_features(e)[:-1] for e in episodes])
    )  # (N, O)
    raw = np.concatenate([np.asarray(e.actions) for e in episodes])
    discrete = raw.dtype.kind in "biu"
    action = (
        ActionSpec("discrete", int(raw.max()) + 1)
        if discrete
        else ActionSpec("continuous", int(np.prod(raw.shape[1:])) or 1)
    )
    y = torch.from_numpy(raw.astype(np.int64) if discrete else raw.astype(np.float32))
    lengths = [e.num_steps for e in episodes]
    offsets = np.cumsum([0, *lengths])
    labels = np.concatenate(list(paths))
    supports: dict[int, torch.Tensor | None] = {}
    for k in np.unique(labels).tolist():
        if discrete:
            counts = np.bincount(raw[labels == k].astype(np.int64), minlength=action.size)
            supports[k] = torch.from_numpy(counts >= max(1.0, support_share * counts.sum()))
        else:
            supports[k] = None
    for round_ in range(iterations):
        options = np.unique(labels)
        logp = np.stack(
            [
                _fit_and_score(
                    x,
                    y,
                    labels == k,
                    action,
                    supports[int(k)],
                    hidden_dim,
                    epochs,
                    label_smoothing,
                    seed + 97 * round_ + int(k),
                )
                for k in options
            ],
            axis=1,
        )  # (N, K)
        padded = np.zeros((len(episodes), max(lengths), len(options)))
        for e, (lo, hi) in enumerate(itertools.pairwise(offsets)):
            padded[e, : hi - lo] = logp[lo:hi]
        new = np.concatenate(viterbi_switching(padded, lengths, switch_cost))
        new = options[new]
        if np.array_equal(new, labels):
            break
        labels = new
    _, dense = np.unique(labels, return_inverse=True)
    return [dense[lo:hi].astype(np.int64) for lo, hi in itertools.pairwise(offsets)]


def _fit_and_score(
    x: torch.Tensor,
    y: torch.Tensor,
    member: npt.NDArray[np.bool_],
    action: ActionSpec,
    support: torch.Tensor | None,
    hidden_dim: int,
    epochs: int,
    label_smoothing: float,
    seed: int,
) -> npt.NDArray[np.float64]:
    """Fit one option policy on the steps in ``member``; log-likelihood (N,) of every step.

    Actions outside ``support`` (A,) bool get probability 1e-3 / A.
    """
    outside = 0.0 if support is None else -1e4 * (~support).float()  # (A,)
    index = torch.from_numpy(np.flatnonzero(member))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        policy = SkillPolicy(
            SkillPolicyConfig(obs_dim=x.shape[1], action=action, hidden_dims=(hidden_dim,))
        )
        optimizer = adam(policy.parameters(), lr=3e-3)
        repeats = max(1, 512 // max(len(index), 1))
        for _ in range(epochs):
            order = index[torch.randperm(len(index), generator=generator)].repeat(repeats)
            for i in range(0, len(order), 256):
                batch = order[i : i + 256]
                params, _ = policy(x[batch])
                params = params + outside
                if action.kind == "discrete":
                    # smoothing is applied at scoring time, inside the support only
                    loss = torch.nn.functional.cross_entropy(params, y[batch])
                else:
                    loss = -action_log_prob(params, y[batch], action, policy.log_std).mean()
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
        with torch.no_grad():
            params, _ = policy(x)
            if action.kind == "discrete":
                inside = torch.ones(action.size) if support is None else support.float()  # (A,)
                probs = torch.softmax(params + outside, -1) * (1 - label_smoothing)
                probs = probs + label_smoothing * inside / inside.sum()
                probs = probs * inside + 1e-3 / action.size * (1 - inside)  # (N, A)
                out = torch.log(probs.gather(1, y.unsqueeze(1)).squeeze(1))
            else:
                out = action_log_prob(params, y, action, policy.log_std)
    return out.double().numpy()
