"""Unsupervised segmentation: a sticky option HMM fitted by hard EM, decoded by Viterbi.

Each of K latent options emits actions from its own distribution (categorical for discrete
actions, a diagonal Gaussian for continuous ones); staying in an option is free, switching costs
``switch_cost`` nats. Hard EM alternates a Viterbi pass (the best option sequence of every
demonstration under that cost) with refitting each option's distribution on the steps assigned to
it. Segment boundaries are the steps where the option changes. This is the option-discovery view
of segmentation (Fox et al., 2017, "Multi-Level Discovery of Deep Options"; DDO) reduced to
action emissions, which keeps it fast, deterministic and free of any environment knowledge.

With discrete actions the default is the support-restricted special case: one broad option that
may emit only the moves and one option per interaction (pick up, drop, open). That is the fixed
point hard EM should reach when interactions are behaviour changes, but an unrestricted EM
reaches it only when they are rare enough. Which actions are interactions is read from the data:
rare ones (below ``rare_action_share`` of all steps), and ones whose effect on the observation is
unlike the moves' (``effect_similarity``; see :meth:`OptionHMMSegmenter._event_actions`) — share
alone failed whenever an interaction was common (PickupLoc alone: F1 0.67 -> 0.80; toy pickup:
0.25 -> 1.0). ``refine_iterations`` adds observation-conditioned option policies on top
(experimental; they can only merge the options they start from, never find a new boundary).

The segmenter reads actions and observations; it never reads ``Episode.annotations``. State-only
episodes (no actions) come back as one segment each.

On grid observations, ``first_sighting`` (off by default) then cuts a segment that ends at an
entity where that entity first came into view, if the rest of the segment goes there directly
(see :mod:`skillbank.learning.sighting`): the BabyAI bot explores until an object matching its
mission is in its memory of seen cells and switches to it on that very step, with no change of
action statistics there. Measured with ``skillbank bench segmentation`` (200 demos, seed 0),
off -> on: boundary F1 GoTo 0.797 -> 0.825, PutNext 0.861 -> 0.952, BossLevel 0.848 -> 0.867;
but cluster purity 0.712 -> 0.692, 0.954 -> 0.849, 0.808 -> 0.782 (the agent clusters the new
explore pieces with the go-to pieces), and ``skillbank demo`` success did not change beyond seed
noise (see the field's docstring), so it stays off. Known limit: most of the bot's remaining
Explore -> GoNextTo switches (GoTo: 569 of 633) go to a door it saw long before, on the step its
map of the room has no unseen cell left; no rule here finds those.

Example:
    >>> segmenter = OptionHMMSegmenter(SegmenterConfig(num_options=4))  # doctest: +SKIP
    >>> segmenter.segment(episodes)[0]  # doctest: +SKIP
    (0, 6, 7, 12)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skillbank.interfaces import BoundaryProposer
from skillbank.learning.boundary_chunks import entropy_rise_cuts
from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.option_refine import refine_options
from skillbank.learning.segment_set import grid_slices
from skillbank.learning.sighting import first_sighting_cuts, grid_cells, interaction_cell
from skillbank.types import Episode

__all__ = ["OptionHMMSegmenter", "SegmenterConfig", "viterbi_switching"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """Settings of :class:`OptionHMMSegmenter`.

    Attributes:
        num_options: K, latent options: one broad option plus K-1 narrow candidates (unused ones
            are dropped).
        switch_cost: Nats paid per option change in the policy stage (or the action stage when
            ``refine_iterations`` is 0); higher gives longer segments.
        init_switch_cost: Nats per change in the action stage that seeds the policy stage (low:
            cut every candidate change, the policy stage merges the spurious ones).
        num_iterations: Hard-EM rounds of the action stage.
        rare_action_share: Discrete actions: actions making up less than this share of all steps
            are rare; the broad option may not emit them, so each run of one rare action is a
            segment of its own (0 here and in ``effect_similarity`` leave it to the EM).
        effect_similarity: Discrete actions: a frequent action whose effect on the observation
            has a cosine below this with the most frequent action's is an interaction, its own
            option like a rare action (0 turns the effect test off: share alone decides).
        move_similarity: Discrete actions: a rare action whose effect has a cosine of at least
            this with a move's is a move as well, not an interaction.
        refine_iterations: Hard-EM rounds with observation-conditioned option policies (0: off;
            experimental). From the default start (moves + one option per interaction) it
            changes nothing: each option's support is the actions it started with. From the
            action-only EM (``rare_action_share`` and ``effect_similarity`` both 0) it hurts: the
            cheap first stage gives every action its own option, each policy may then emit only
            that action, so every change of action stays a cut (toy world, 90 demos: F1 0.76 ->
            0.64, precision 0.93 -> 0.47, measured in the session of this change).
        chunk_min_rise: Discrete actions: after the option stage, cut a segment once more where
            the entropy of the next action (given the action before the segment and the
            segment's actions so far) rises by at least this many nats (0: off, the default;
            see :mod:`skillbank.learning.boundary_chunks`). 0.6 was chosen on BabyAI GoTo.
        chunk_min_count: Segments that must share a prefix before its entropy is trusted.
        chunk_min_offset: Actions of a segment kept before such a cut.
        first_sighting: Discrete actions and grid observations: cut a segment once more at the
            step where the entity it ends at (the content of the cell the interactions act on)
            was first seen in the episode (see :mod:`skillbank.learning.sighting`); vector
            worlds are unaffected. Off by default: ``skillbank demo`` success (128 unseen
            seeds per level; seeds 0 and 1), off -> on: GoToLocal 0.781/0.750 -> 0.711/0.789,
            PickupLoc 0.258/0.234 -> 0.211/0.219, Open 0.867/0.859 -> 0.844/0.922,
            PutNextLocal 0.016/0.047 -> 0.031/0.070, GoTo 0.492/0.500 -> 0.492/0.523: no
            better or worse beyond seed noise; its segmentation F1 0.806 -> 0.904 but purity
            0.911/0.921 -> 0.835/0.844, the explore pieces sharing the go-to skill.
        env_proposals: Ask the episode's environment family for more cuts (a
            :class:`~skillbank.interfaces.BoundaryProposer`, passed to the segmenter as
            ``proposer_for``; families without one are unaffected), after every other stage.
            Off by default: with ``first_sighting`` it lifts boundary F1 (200 demos, seed 0: GoTo
            0.797 -> 0.912, PutNext 0.861 -> 0.947, BossLevel 0.848 -> 0.930) but the agent
            does worse with its segments (GoToLocal, PickupLoc, Open, PutNextLocal 500 demos
            each, GoTo and BossLevel 250, one learn call at half the epochs, 256 unseen episodes,
            seeds 0/1, off -> on: GoTo 0.738/0.730 -> 0.652/0.695, BossLevel 0.391/0.406 ->
            0.375/0.375, PutNextLocal 0.121/0.102 -> 0.102/0.129).
        sighting_min_offset: Steps of a segment kept before a first-sighting cut.
        sighting_max_detour: A first-sighting cut needs the rest of the segment to reach the
            entity in at most this many steps more than the fewest seen from where it shows
            (negative: no check; see :func:`~skillbank.learning.sighting.first_sighting_cuts`).
        policy_hidden: Width of each option policy.
        policy_epochs: Epochs per option policy per round.
        smoothing: Dirichlet pseudo-count per action (discrete) / variance floor (continuous).
        seed: Seed of the initial assignment.
    """

    num_options: int = 8
    switch_cost: float = 3.0
    init_switch_cost: float = 1.5
    num_iterations: int = 16
    rare_action_share: float = 0.1
    effect_similarity: float = 0.35
    move_similarity: float = 0.9
    refine_iterations: int = 0
    chunk_min_rise: float = 0.0
    chunk_min_count: int = 10
    chunk_min_offset: int = 3
    first_sighting: bool = False
    env_proposals: bool = False
    sighting_min_offset: int = 1
    sighting_max_detour: int = 1
    policy_hidden: int = 64
    policy_epochs: int = 3
    smoothing: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_options < 1:
            raise ValueError(f"SegmenterConfig.num_options must be >= 1, got {self.num_options}")
        if self.switch_cost < 0:
            raise ValueError("SegmenterConfig.switch_cost must be >= 0")
        if self.num_iterations < 1:
            raise ValueError("SegmenterConfig.num_iterations must be >= 1")
        if not (0 <= self.effect_similarity <= 1 and 0 <= self.move_similarity <= 1):
            raise ValueError("SegmenterConfig.effect_similarity and .move_similarity: [0, 1]")
        if self.chunk_min_rise < 0 or self.chunk_min_count < 1 or self.chunk_min_offset < 1:
            raise ValueError(
                "SegmenterConfig.chunk_min_rise must be >= 0, .chunk_min_count and "
                ".chunk_min_offset >= 1"
            )
        if self.smoothing <= 0:
            raise ValueError("SegmenterConfig.smoothing must be > 0")
        if self.sighting_min_offset < 1:
            raise ValueError(
                f"SegmenterConfig.sighting_min_offset must be >= 1, got {self.sighting_min_offset}"
            )


def viterbi_switching(
    emissions: FloatArray, lengths: Sequence[int], switch_cost: float
) -> list[npt.NDArray[np.int64]]:
    """Best option sequence per episode under per-step emissions and a constant switching cost.

    Args:
        emissions: (E, T, K) log-likelihood of each step under each option (padded on T).
        lengths: Real length of each of the E sequences.
        switch_cost: Nats charged for every change of option.

    Returns:
        Per episode, (T_e,) option ids.
    """
    num_episodes, horizon, num_options = emissions.shape
    ends = np.asarray(lengths, np.int64) - 1  # (E,)
    score = emissions[:, 0].copy()  # (E, K)
    final = score.copy()  # (E, K) scores at each episode's last real step
    back = np.zeros((num_episodes, horizon, num_options), np.int64)
    arange = np.arange(num_options)
    for t in range(1, horizon):
        best = score.argmax(1)  # (E,)
        switch = score.max(1, keepdims=True) - switch_cost  # (E, 1)
        stay_better = score >= switch  # (E, K)
        back[:, t] = np.where(stay_better, arange[None, :], best[:, None])
        score = np.maximum(score, switch) + emissions[:, t]
        done = ends == t
        final[done] = score[done]
    paths = []
    for e, length in enumerate(lengths):
        path = np.zeros(length, np.int64)
        path[-1] = int(final[e].argmax())
        for t in range(length - 1, 0, -1):
            path[t - 1] = back[e, t, path[t]]
        paths.append(path)
    return paths


class OptionHMMSegmenter:
    """Implements :class:`skillbank.interfaces.Segmenter` with a sticky option HMM.

    Args:
        config: Settings; the same config and episodes give the same segments.
        proposer_for: The boundary proposer of an episode's environment family, or ``None``
            (e.g. :func:`skillbank.envs.registry.boundary_proposer`); read only with
            ``config.env_proposals``.
    """

    def __init__(
        self,
        config: SegmenterConfig | None = None,
        proposer_for: Callable[[Episode], BoundaryProposer | None] | None = None,
    ) -> None:
        self.config = config or SegmenterConfig()
        self.proposer_for = proposer_for

    def segment(self, episodes: Sequence[Episode]) -> list[tuple[int, ...]]:
        """Return, per episode, the strictly increasing start steps of its segments (first 0)."""
        return [boundaries for boundaries, _ in self.segment_with_options(episodes)]

    def segment_with_options(
        self, episodes: Sequence[Episode]
    ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Like :meth:`segment`, plus the option id of every segment (for diagnostics)."""
        with_actions = [e for e in episodes if e.actions is not None and e.num_steps > 0]
        paths = self._fit(with_actions) if with_actions else []
        if with_actions and self.config.refine_iterations > 0:
            paths = refine_options(
                with_actions,
                paths,
                switch_cost=self.config.switch_cost,
                iterations=self.config.refine_iterations,
                hidden_dim=self.config.policy_hidden,
                epochs=self.config.policy_epochs,
                seed=self.config.seed,
            )
        cuts = [(0, *(int(t) for t in np.nonzero(path[1:] != path[:-1])[0] + 1)) for path in paths]
        discrete = bool(with_actions) and np.asarray(with_actions[0].actions).dtype.kind in "biu"
        if discrete and self.config.chunk_min_rise > 0:
            cuts = entropy_rise_cuts(
                [np.asarray(e.actions) for e in with_actions],
                cuts,
                min_rise=self.config.chunk_min_rise,
                min_count=self.config.chunk_min_count,
                min_offset=self.config.chunk_min_offset,
            )
        if discrete and self.config.first_sighting:
            cuts = self._sighting_cuts(with_actions, cuts)
        if self.config.env_proposals and self.proposer_for is not None:
            cuts = [self._proposed(e, c) for e, c in zip(with_actions, cuts, strict=True)]
        by_id = {id(e): (p, c) for e, p, c in zip(with_actions, paths, cuts, strict=True)}
        out: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        for episode in episodes:
            found = by_id.get(id(episode))
            if found is None:
                out.append(((0,), (0,)))
                continue
            path, starts = found
            out.append((tuple(starts), tuple(int(path[s]) for s in starts)))
        return out

    def _proposed(self, episode: Episode, starts: tuple[int, ...]) -> tuple[int, ...]:
        """``starts`` plus the cuts the episode's environment family proposes."""
        assert self.proposer_for is not None
        proposer = self.proposer_for(episode)
        return starts if proposer is None else proposer.propose(episode, starts)

    def _sighting_cuts(
        self, episodes: Sequence[Episode], cuts: list[tuple[int, ...]]
    ) -> list[tuple[int, ...]]:
        """``cuts`` plus the first-sighting cuts of every grid in the observations (if any)."""
        featurizer = ObservationFeaturizer.fit(episodes)
        grids = grid_slices(featurizer)
        if not grids:
            return cuts
        actions = [np.asarray(e.actions, np.int64) for e in episodes]
        flat = np.concatenate(actions)  # (N,)
        events = self._event_actions(episodes, np.eye(int(flat.max()) + 1)[flat])  # (A,)
        event_steps = [events[a] for a in actions]  # per episode (T,)
        for grid in grids:
            if not grid.groups:
                continue  # binary planes (a map) hold no object contents to sight
            cells = [grid_cells(featurizer.episode_features(e), grid) for e in episodes]
            cell = interaction_cell(cells, event_steps)
            if cell is not None:
                detour = self.config.sighting_max_detour
                cuts = first_sighting_cuts(
                    cells,
                    cuts,
                    cell,
                    min_offset=self.config.sighting_min_offset,
                    max_detour=detour if detour >= 0 else None,
                )
        return cuts

    # --- hard EM ---------------------------------------------------------------------------------

    def _fit(self, episodes: Sequence[Episode]) -> list[npt.NDArray[np.int64]]:
        cfg = self.config
        actions = [np.asarray(e.actions) for e in episodes]
        discrete = actions[0].dtype.kind in "biu"
        lengths = [len(a) for a in actions]
        flat = np.concatenate(actions)
        if discrete:
            values = np.eye(int(flat.max()) + 1)[flat.astype(np.int64)]  # (N, A) one-hot
        else:
            values = flat.reshape(len(flat), -1).astype(np.float64)  # (N, A)
        # --- initial options: one broad option that explains everything a little, plus narrow
        # candidates (one per distinct action, or k-means centres for continuous actions) that
        # explain few steps very well; hard EM decides which candidates earn their switches ---
        params = [self._fit_option(values, discrete)]
        for centre in _candidate_centres(values, cfg.num_options - 1, cfg.seed):
            params.append(self._narrow_option(values, centre, discrete))
        offsets = np.cumsum([0, *lengths])
        horizon = max(lengths)
        if discrete and (cfg.rare_action_share > 0 or cfg.effect_similarity > 0):
            rare = self._event_actions(episodes, values)  # (A,)
            # No interaction at all (only moves): one segment per episode, not the EM's guesses.
            if rare.any() or cfg.effect_similarity > 0:
                # The broad option emits only the frequent actions; each rare action is its own
                # option. Under that support no switching cost can fold a rare action into the
                # broad option, which is what an unrestricted HMM does once rare actions are
                # common enough (every interaction then costs less than two switches).
                act = flat.astype(np.int64)
                events = np.where(rare[act], 1 + act, 0)
                return [events[lo:hi] for lo, hi in itertools.pairwise(offsets)]
        labels = np.full(len(values), -1, np.int64)
        for iteration in range(cfg.num_iterations):
            # Anneal the switching cost up from a quarter: cheap switches first carve out every
            # narrow option cleanly (the broad one stops explaining rare actions), dearer ones
            # then merge the runs that only looked narrow back into the broad option.
            ramp = min(1.0, (iteration + 1) / max(1, cfg.num_iterations // 2))
            final = cfg.init_switch_cost if cfg.refine_iterations > 0 else cfg.switch_cost
            cost = final * (0.25 + 0.75 * ramp)
            logp = np.stack([_log_likelihood(values, p, discrete) for p in params], axis=1)
            padded = np.zeros((len(episodes), horizon, len(params)))
            for e, (lo, hi) in enumerate(itertools.pairwise(offsets)):
                padded[e, : hi - lo] = logp[lo:hi]
            new_labels = np.concatenate(viterbi_switching(padded, lengths, cost))
            if ramp >= 1.0 and np.array_equal(new_labels, labels):
                break
            labels = new_labels
            keep = [k for k in range(len(params)) if (labels == k).any()]
            params = [self._fit_option(values[labels == k], discrete) for k in keep]
            labels = np.searchsorted(np.asarray(keep), labels)
        return [labels[lo:hi] for lo, hi in itertools.pairwise(offsets)]

    def _event_actions(
        self, episodes: Sequence[Episode], values: FloatArray
    ) -> npt.NDArray[np.bool_]:
        """Discrete actions (A,) that get an option of their own (interactions, not moves).

        The moves are the most frequent action and every other frequent action (share at least
        ``rare_action_share``) whose effect on the observation resembles it (cosine at least
        ``effect_similarity``); a rare action is a move too when its effect nearly matches a
        move's (cosine at least ``move_similarity``: a turn the demonstrator seldom takes). The
        rest are interactions. An action's effect is the mean absolute change of every
        observation feature over the steps that take it, (A, O). Measured cosines: BabyAI turns
        vs forward 0.83-0.90, pick up / drop vs forward 0.06-0.08, toggle vs turns 0.66-0.69;
        toy world turns vs forward 0.48-0.53, left vs right turn 0.98-0.99, pick up / drop vs
        forward 0.16-0.23. Share alone cannot tell a pick-up making 16% of PickupLoc's steps from
        a turn making 15%, nor the toy expert's seldom right turn (9%) from a drop.
        """
        cfg = self.config
        share = values.mean(0)  # (A,)
        mode = int(share.argmax())
        if cfg.effect_similarity <= 0:
            rare: npt.NDArray[np.bool_] = (share > 0) & (share < cfg.rare_action_share)
            rare[mode] = False
            return rare
        featurizer = ObservationFeaturizer.fit(episodes)
        total = np.zeros((values.shape[1], featurizer.dim))  # (A, O)
        for episode in episodes:  # one episode's features at a time: BossLevel's are ~100 MB
            change = np.abs(np.diff(featurizer.episode_features(episode), axis=0))  # (T, O)
            onehot = np.eye(len(total))[np.asarray(episode.actions, np.int64)]  # (T, A)
            total += onehot.T @ change
        effect = total / np.maximum(values.sum(0), 1)[:, None]  # (A, O)
        norm = np.linalg.norm(effect, axis=1)  # (A,)
        cosine = effect @ effect.T / np.maximum(np.outer(norm, norm), 1e-12)  # (A, A)
        moves = (share >= cfg.rare_action_share) & (cosine[mode] >= cfg.effect_similarity)
        moves[mode] = True
        moves |= (share > 0) & (cosine[:, moves].max(1) >= cfg.move_similarity)
        events: npt.NDArray[np.bool_] = (share > 0) & ~moves
        return events

    def _fit_option(self, values: FloatArray, discrete: bool) -> tuple[FloatArray, FloatArray]:
        """Emission parameters fitted on the steps ``values`` (M, A)."""
        if discrete:
            counts = values.sum(0) + self.config.smoothing  # (A,)
            return np.log(counts / counts.sum()), np.zeros(0)
        return values.mean(0), values.var(0) + self.config.smoothing * 1e-2

    def _narrow_option(
        self, values: FloatArray, centre: FloatArray, discrete: bool
    ) -> tuple[FloatArray, FloatArray]:
        """A candidate option concentrated on ``centre`` (a one-hot action or an action vector)."""
        if discrete:
            counts = centre * len(values) + self.config.smoothing
            return np.log(counts / counts.sum()), np.zeros(0)
        return centre, 0.1 * values.var(0) + self.config.smoothing * 1e-2


def _log_likelihood(
    values: FloatArray, params: tuple[FloatArray, FloatArray] | None, discrete: bool
) -> FloatArray:
    """Log-likelihood (N,) of steps (N, A) under one option's emission parameters."""
    assert params is not None
    if discrete:
        out: FloatArray = values @ params[0]
        return out
    mean, var = params
    gauss: FloatArray = -0.5 * (((values - mean) ** 2) / var + np.log(2 * np.pi * var)).sum(1)
    return gauss


def _candidate_centres(values: FloatArray, k: int, seed: int) -> list[FloatArray]:
    """Up to k distinct action values: all of them if few, else k-means centres."""
    unique = np.unique(values, axis=0)
    if len(unique) <= k:
        return list(unique)
    labels = _kmeans_init(values, k, np.random.default_rng(seed))
    return [values[labels == j].mean(0) for j in range(k) if (labels == j).any()]


def _kmeans_init(values: FloatArray, k: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """k-means++ seeding plus a few Lloyd rounds on per-step actions: the initial options."""
    unique = np.unique(values, axis=0)
    k = min(k, len(unique))
    centres = [unique[rng.integers(len(unique))]]
    for _ in range(1, k):
        dist = np.min([((unique - c) ** 2).sum(1) for c in centres], axis=0)
        if dist.sum() <= 0:
            break
        centres.append(unique[rng.choice(len(unique), p=dist / dist.sum())])
    centre_array = np.stack(centres)
    labels = np.zeros(len(values), np.int64)
    for _ in range(10):
        labels = ((values[:, None, :] - centre_array[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(centre_array)):
            if (labels == j).any():
                centre_array[j] = values[labels == j].mean(0)
    return labels
