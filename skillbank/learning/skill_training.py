"""Train one skill module (policy plus termination head) on the segments of one skill.

The policy is behavioural cloning on the segment steps; the termination head is a binary
classifier: "stop" on the observation right after a segment ends, "go on" on the observations
inside it. Each skill is trained alone, so adding a skill never touches another one.

Example:
    >>> policy = train_skill_policy(segments, members, config)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from skillbank.errors import TrainingError
from skillbank.learning.segment_set import SegmentSet
from skillbank.nn.grid_trunk import GridSlice, GridTrunkSpec, TokenSlice
from skillbank.nn.optim import adam
from skillbank.nn.skill_policy import (
    MAX_DURATION_BINS,
    ActionSpec,
    SkillPolicy,
    SkillPolicyConfig,
    action_log_prob,
)

__all__ = ["SkillTrainConfig", "segment_log_likelihood", "train_skill_policy"]


@dataclass(frozen=True, slots=True)
class SkillTrainConfig:
    """Settings of :func:`train_skill_policy`.

    Attributes:
        hidden_dims: Widths of the skill's MLP trunk.
        num_epochs: Passes over the skill's steps.
        batch_size: Steps per gradient step.
        learning_rate: Adam step size.
        termination_weight: Weight of the termination loss against the action loss.
        min_steps_per_epoch: Small skills repeat their data to at least this many steps an epoch.
        arg_dim: D, width of the argument the controller gives a skill (0: unparameterised
            skills, each trained alone by :func:`train_skill_policy`; > 0: trained jointly with
            the controller by :func:`skillbank.learning.hierarchy_training.train_hierarchy`).
        weight_decay: Decoupled weight decay (AdamW) of joint training.
        input_noise: Std of Gaussian noise added to the (standardised) features in joint
            training, a regulariser for small demonstration sets.
        validation_fraction: Joint training holds out this fraction of the episodes and keeps
            the weights of the epoch with the best held-out loss (early stopping).
        grid_trunk: Give skills a CNN over the grid slices of the features
            (``skill-policy-v3``, :mod:`skillbank.nn.grid_trunk`) where there are any; vector
            worlds keep the MLP either way. On by default: `skillbank demo` data, 3 seeds x 128
            unseen episodes per level, mean success with vs without (controller an MLP in
            both): GoToLocal 0.760 vs 0.766, PickupLoc 0.260 vs 0.237, Open 0.883 vs 0.833
            (better on every seed), PutNextLocal 0.047 vs 0.057, GoTo 0.516 vs 0.508; skills
            17% fewer parameters.
        conv_channels: Channels of the grid trunk's convolutions.
        kernel_size: Side of the grid trunk's kernels.
        arg_film: Where the argument modulates a grid-trunk skill: ``"mlp"`` (first MLP layer),
            ``"grid"`` (the first convolution's channels) or ``"pointer"`` (a query scored
            against every cell, see :class:`skillbank.nn.grid_trunk.GridTrunkSpec`). Given an
            oracle target (colour/type one-hot) as its argument, a go-to skill trained on the
            demo's go-to segments reads it with ``"pointer"`` (held-out action accuracy with
            the right vs another episode's argument 0.84 vs 0.58) and hardly with ``"grid"``
            (0.74 vs 0.69); end to end the controller's argument carries no target yet, so
            ``"pointer"`` did not raise success (demo data, 128 unseen episodes, PutNextLocal
            0.023 vs 0.055, PickupLoc 0.19 vs 0.17) and ``"grid"`` stays the default.
        argument: What a parameterised skill's argument is: ``"learned"`` (a code the
            controller's argument head learns end to end) or ``"hindsight"`` (in grid worlds:
            the content of the interaction cell where the segment ends, one-hot per group,
            e.g. the object a go-to skill ends facing; the controller learns to predict it,
            the skills read it with ``arg_film="pointer"``; see
            :func:`skillbank.learning.hierarchy_training.hindsight_target`; the controller
            gets a grid trunk unless ``ControllerTrainConfig.grid_trunk`` says otherwise).
            Vector worlds keep ``"learned"``; stored skills fix the kind for later calls. Off
            by default: on the demo data (150/150/100/100 demos, 4 seeds x 128 unseen episodes
            per level, seeds >= 1e9) hindsight vs learned mean success: GoToLocal 0.750 vs
            0.770, PickupLoc 0.379 vs 0.260 (0.52, 0.52, 0.29, 0.19 vs 0.26, 0.23, 0.29, 0.26:
            two seeds double it, two do not), Open 0.850 vs 0.893, PutNextLocal 0.068 vs
            0.051, GoTo (unseen) 0.449 vs 0.543 (worse on 3 of 4 seeds); PutNextLocal's first
            pick-up right in 26.5 vs 18 of 128 episodes (mean); held-out target accuracy of the
            controller on segments ending at an object: type 0.77-1.0, colour 0.40-0.90 (lowest
            on Open and PickupLoc).
        relabel_targets: With hindsight arguments, a segment whose target no word of its task
            names takes the target of the next segment of its episode that one names (an
            explorer's door -> the box it is looking for; see
            :mod:`skillbank.learning.target_relabel`). Off by default. BossLevel learned
            alone (250 bot demos, 128 unseen episodes, with ``ControllerTrainConfig.
            target_copy``), seeds 0-3: 0.422, 0.508, 0.445, 0.375 (mean 0.438) vs 0.359,
            0.344, 0.297, 0.383 (0.346) with learned arguments and 0.27, 0.22 (seeds 0/1)
            without relabelling; but the six-level benchmark learned level by level
            (``bench babyai --budget small``, 512 unseen episodes, seed 0) gave BossLevel 0.334
            vs 0.367 with learned arguments (GoToLocal 0.754, PickupLoc 0.170, Open 0.930,
            PutNextLocal 0.074, GoTo 0.584), and the demo data (150/150/100/100 demos + GoTo
            unseen, seeds 0/1) summed 2.27/2.26 vs 2.41/2.39 (GoTo 0.26/0.52 vs 0.49/0.50).
            Learned in one call instead (the benchmark's 2,500 demos of the six levels
            together, 256 unseen episodes, seeds 0/1) it is far better: BossLevel 0.465/0.418 vs
            0.391/0.340, GoTo 0.906/0.848 vs 0.758/0.645, PutNextLocal 0.449/0.375 vs
            0.148/0.098 (learning CPU 1.3x); ``bench babyai --protocol joint`` on those six
            levels (512 unseen episodes, seed 0): 0.969/0.695/0.906/0.656/0.883/0.441 vs
            0.789/0.326/0.939/0.125/0.705/0.363 with learned arguments (GoToLocal, PickupLoc,
            Open, PutNextLocal, GoTo, BossLevel); ``packs/babyai`` is learned so. Level by
            level, the skills are learned on the early levels and frozen, and replayed segments
            of earlier learn calls keep their own targets (their episodes are not stored).
        relabel_nearby: With ``relabel_targets``, an unnamed target beside a named content
            takes that content first (``"put the ball next to the key"``: the walk carrying the
            ball ends facing the empty cell beside the key; :func:`~skillbank.learning.
            target_relabel.relabel_nearby`). Off by default: the walks carrying the ball
            take the key in 187 of 201 of them (200 PutNextLocal bot demos; 0 without), but
            PutNextLocal learned alone (500 demos, 256 unseen episodes, seed 0) succeeded in
            11.3% vs 18.4% with ``relabel_targets`` alone; the six benchmark levels (2,500 demos)
            learned in one call, 256 unseen episodes, seeds 0/1: PutNextLocal 0.684/0.383 vs
            0.449/0.375, BossLevel 0.492/0.445 vs 0.465/0.418, GoTo 0.914/0.863 vs
            0.906/0.848 — better on both seeds; but ``bench babyai --protocol joint`` on those
            levels (512 unseen episodes, seed 0): BossLevel 0.441 vs 0.441, PutNextLocal 0.613
            vs 0.656, PickupLoc 0.752 vs 0.695, GoTo 0.893 vs 0.883: no clear gain.
        relabel_held: With ``relabel_nearby``, a segment's target that the agent held at its
            start counts as unnamed, so it is relabelled too: a drop ends facing what it
            dropped, and the walks, door openings and searches made carrying it took that as
            their next named target (the twelve levels' demos, learned segmentation: in
            BossLevel 152 of the 275 go-next-to segments made carrying something were trained
            to go to what they carried, 103 of 114 door openings too; in PutNextLocal 0 of 492,
            the drop spot being beside a named thing; with this switch 7 of 275 and 5 of 114).
            Off by default: the six benchmark levels learned in one call with the five
            switches, 256 unseen episodes, means of seeds 0-3: PutNextLocal 91.1% vs 79.6,
            GoTo 90.7 vs 89.6, GoToSeq 78.1 vs 78.5, BossLevel 52.2 vs 50.5 (three seeds of
            four up); BossLevel's put missions (seed 0, 128 episodes) still fail 36 times in
            42 (35 without). The twelve levels (seed 0): PutNextLocal 0.945 vs 0.852, PutNext
            0.973 vs 0.953, GoToSeq 0.742 vs 0.762, BossLevel 0.473 vs 0.508: the walks made
            carrying something now head for the destination, but drop far from it. Seed 1
            (fresh learns, with vs without): PutNextLocal 0.809 vs 0.441, PutNext 0.895 vs
            0.547, SynthSeq 0.457 vs 0.402, GoToSeq 0.660 vs 0.660, BossLevel 0.383 vs 0.398.
            Seed 2 (eight skills either way): PutNextLocal 0.383 vs 0.309, PutNext 0.535 vs
            0.406, GoToSeq 0.680 vs 0.605, SynthSeq 0.387 vs 0.395, BossLevel 0.359 vs 0.363.
            With ``duration_bins`` 8 (the interaction skill no longer drops what it has just
            picked up), seeds 0-3, means with vs without: PutNextLocal 0.928 vs 0.763, Pickup
            0.893 vs 0.910, PutNext 0.978 vs 0.885, GoToSeq 0.734 vs 0.729, SynthSeq 0.485 vs
            0.492, BossLevel 0.475 vs 0.469 (put levels up on every seed): part of the
            agent's ``@hindsight`` settings preset.
        read_history: Skills read the history entries of the features too (an explored map,
            :data:`~skillbank.types.HISTORY_ENTRIES`); off: they skip them (the controller,
            which decides where to go next, reads them). Six benchmark levels learned in one
            call with maps, 256 unseen episodes, seeds 0/1: PutNextLocal 0.340/0.160 reading
            them vs 0.336/0.176 skipping them, BossLevel 0.406/0.348 vs 0.402/0.371
            (:mod:`skillbank.envs.grid_map`).
        read_mission: Skills read the token sequences of the features (a BabyAI mission) as
            the controller does; off: they skip them, so a skill acts on its observation and
            its argument alone and only the controller reads the task (as in the options of
            HAL or SPiRL's low-level policies). Needs the grid trunk (features without a grid
            have no trunk to skip it in: their skills read everything). On by default: the twelve
            benchmark levels learned in one call with the five switches (seed 0, 256 unseen
            episodes), skipping vs reading it: PutNextLocal 74.2% vs 85.2, Pickup 92.2 vs 89.8,
            PutNext 91.0 vs 95.3, GoToSeq 70.7 vs 76.2, SynthSeq 46.9 vs 48.4, BossLevel 46.9
            vs 50.8 (with ``relabel_held`` too: 90.2 / 88.7 / 96.9 / 68.0 / 48.8 / 47.3 vs
            94.5 / 91.0 / 97.3 / 74.2 / 48.4 / 47.3). The arguments are not worse (failed
            BossLevel episodes' calls name something the mission names 82.6% vs 84.4%); failed
            GoToSeq episodes walk to doors the mission does not name more (21.5% of calls vs
            10.1%). The skills are a third the size (129k vs 399k parameters: the mission's
            one-hots feed the first layer).
        carry_augment: With hindsight arguments, the share of steps of segments whose inventory
            cell never changes that show the skill another content of that cell (drawn from
            what the data shows there, nothing held included), so walks learned empty-handed
            serve walks made carrying something (:mod:`~skillbank.learning.carry_augment`);
            the controller reads the true cell. 0: off. Not a gain with the default targets:
            the twelve benchmark levels learned in one call with the five switches (seed 0, 256
            unseen episodes, the same four skills either way), 0.5 vs 0: PutNextLocal 39.5% vs
            74.2, Pickup 83.2 vs 86.7, PutNext 68.8 vs 85.9, GoToSeq 72.3 vs 68.8, SynthSeq
            43.8 vs 47.3, BossLevel 41.0 vs 49.2; in PutNextLocal (128 episodes) 56 of its 71
            failures never put the object down (15 of 23 without): a walk made carrying X is
            trained to go to X (the targets name what was carried unless ``relabel_held``), so
            a skill blind to what it carries cannot tell fetching X from taking it to Y.
        duration_bins: The skills' termination heads also read how many actions the skill has
            taken in its call, one-hot in this many doubling bins
            (:func:`skillbank.nn.skill_policy.duration_one_hot`); 0: they read the observation
            alone. A skill whose segments are all one action long then learns to stop after
            one, even where the state after its action is the state its other segments start
            from (a skill holding pick-ups and drops: after the pick-up the agent holds the
            object, as at the start of a drop, and an observation-only head drops it at once).
            Default 8 (``skill.duration_bins=0`` turns it off); side by side, the twelve
            benchmark levels learned in one call with the five switches, 256 unseen episodes
            from seed 10^9, PutNextLocal / Pickup / PutNext / GoToSeq / SynthSeq / BossLevel,
            8 vs 0: seed 0 (two skills, pick-ups and drops in one) 77.7 / 91.8 / 91.4 / 74.6
            / 50.8 / 49.2% vs 47.3 / 88.3 / 56.2 / 73.4 / 45.7 / 42.2 (PutNextLocal's
            ``pick-up, drop`` calls 0 vs 629 of 1,083); seed 2 (three skills, pick-up apart)
            71.5 / 87.5 / 85.9 / 69.1 / 47.3 / 44.1 vs 72.7 / 84.8 / 74.6 / 70.3 / 48.0 /
            45.7; seed 1 (four skills) 73.8 / 92.6 / 83.6 / 70.3 / 51.2 / 47.7 vs 71.9 / 89.5
            / 81.6 / 70.7 / 47.3 / 42.6; three-seed means 74.3 / 90.6 / 87.0 / 71.3 / 49.8 /
            47.0 vs 64.0 / 87.5 / 70.8 / 71.5 / 47.0 / 43.5. ``make demo`` (seed 0, 128
            episodes) GoToLocal / PickupLoc / Open / PutNextLocal / unseen GoTo 81.2 / 24.2 /
            93.0 / 5.5 / 53.9 vs 72.7 / 29.7 / 85.9 / 7.8 / 50.8; eval speed on GoTo 1,322 vs
            1,392 steps/s.
        seed: Seed of initialisation and batching.
    """

    hidden_dims: tuple[int, ...] = (128, 128)
    num_epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 1e-3
    termination_weight: float = 1.0
    min_steps_per_epoch: int = 512
    arg_dim: int = 16
    weight_decay: float = 0.0
    input_noise: float = 0.0
    validation_fraction: float = 0.0
    grid_trunk: bool = True
    conv_channels: tuple[int, ...] = (16, 16)
    kernel_size: int = 3
    arg_film: str = "grid"
    argument: str = "learned"
    relabel_targets: bool = False
    relabel_nearby: bool = False
    relabel_held: bool = False
    read_history: bool = False
    read_mission: bool = True
    carry_augment: float = 0.0
    duration_bins: int = 8
    seed: int = 0

    @property
    def relabel_mode(self) -> str:
        """``"none"``, ``"next"``, ``"nearby"`` or ``"nearby-held"``: how hindsight targets are
        relabelled."""
        if not self.relabel_targets:
            return "none"
        if self.relabel_nearby:
            return "nearby-held" if self.relabel_held else "nearby"
        return "next"

    def __post_init__(self) -> None:
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError("SkillTrainConfig.hidden_dims must be positive widths")
        if not self.conv_channels or min(self.conv_channels) < 1 or self.kernel_size < 1:
            raise ValueError("SkillTrainConfig.conv_channels and .kernel_size must be positive")
        if self.arg_film not in ("mlp", "grid", "pointer"):
            raise ValueError(
                f"SkillTrainConfig.arg_film must be mlp|grid|pointer, got {self.arg_film!r}"
            )
        if self.argument not in ("learned", "hindsight"):
            raise ValueError(
                f"SkillTrainConfig.argument must be learned|hindsight, got {self.argument!r}"
            )
        if self.relabel_targets and self.argument != "hindsight":
            raise ValueError(
                "SkillTrainConfig.relabel_targets relabels hindsight targets: set "
                "argument='hindsight' too (or leave relabel_targets off)"
            )
        if self.relabel_nearby and not self.relabel_targets:
            raise ValueError(
                "SkillTrainConfig.relabel_nearby changes how targets are relabelled: set "
                "relabel_targets=True too (or leave relabel_nearby off)"
            )
        if self.relabel_held and not self.relabel_nearby:
            raise ValueError(
                "SkillTrainConfig.relabel_held refines relabel_nearby: set relabel_targets=True "
                "and relabel_nearby=True too (or leave relabel_held off)"
            )
        if not (self.read_mission or self.grid_trunk):
            raise ValueError(
                "SkillTrainConfig.read_mission=False skips the mission in the skills' grid "
                "trunk: set grid_trunk=True too (or leave read_mission on)"
            )
        if not 0.0 <= self.carry_augment <= 1.0:
            raise ValueError(
                f"SkillTrainConfig.carry_augment is a share of steps in [0, 1], got "
                f"{self.carry_augment}"
            )
        if self.carry_augment and self.argument != "hindsight":
            raise ValueError(
                "SkillTrainConfig.carry_augment finds the inventory in the hindsight target's "
                "grid: set argument='hindsight' too (or leave carry_augment at 0)"
            )
        if self.duration_bins and not 2 <= self.duration_bins <= MAX_DURATION_BINS:
            raise ValueError(
                f"SkillTrainConfig.duration_bins must be 0 (off) or 2..{MAX_DURATION_BINS}, "
                f"got {self.duration_bins}"
            )
        if min(self.num_epochs, self.batch_size, self.min_steps_per_epoch) < 1:
            raise ValueError("SkillTrainConfig counts must be >= 1")
        if self.arg_dim < 0:
            raise ValueError("SkillTrainConfig.arg_dim must be >= 0")
        if self.learning_rate <= 0 or self.termination_weight < 0:
            raise ValueError("SkillTrainConfig: learning_rate > 0 and termination_weight >= 0")

    def grid_spec(
        self,
        grids: tuple[GridSlice, ...],
        arg_film: str | None = None,
        history: tuple[tuple[int, int], ...] = (),
        tokens: tuple[TokenSlice, ...] = (),
    ) -> GridTrunkSpec | None:
        """The skills' grid trunk over ``grids`` (``None``: off, or no grids: an MLP);
        ``arg_film`` overrides the configured one; the ``history`` ranges (an explored map) are
        skipped unless ``read_history``, the ``tokens`` (a mission) unless ``read_mission``."""
        if not self.grid_trunk or not grids:
            return None
        film = self.arg_film if arg_film is None else arg_film
        skip: tuple[tuple[int, int], ...] = ()
        if not self.read_history:
            grids = tuple(g for g in grids if (g.offset, g.offset + g.size) not in history)
            skip = history
        if not self.read_mission:
            skip = (*skip, *((t.offset, t.end) for t in tokens))
        return GridTrunkSpec(grids, self.conv_channels, self.kernel_size, film, skip=skip)


def train_skill_policy(
    segments: SegmentSet, members: Sequence[int], action: ActionSpec, config: SkillTrainConfig
) -> SkillPolicy:
    """Fit a :class:`SkillPolicy` to the segments at ``members``.

    Raises:
        TrainingError: If there are no members or the loss stops being finite.
    """
    if not members:
        raise TrainingError("a skill needs at least one segment to train on")
    feats, acts, _ = segments.steps(members, compact=True)  # (S, O) as stored, (S,) | (S, A)
    ends = segments.end_features(members, compact=True)  # (M, O)
    # Inputs: every step ("go on", with its action) then every end ("stop", no action).
    x = torch.from_numpy(np.concatenate([feats, ends]))  # (S + M, O)
    taken = torch.from_numpy(np.concatenate(segments.durations(members)))  # (S + M,)
    stop = torch.cat([torch.zeros(len(feats)), torch.ones(len(ends))])  # (S + M,)
    has_action = torch.cat([torch.ones(len(feats)), torch.zeros(len(ends))])
    pad = np.zeros((len(ends), *acts.shape[1:]), acts.dtype)
    y = torch.from_numpy(np.concatenate([acts, pad]))
    # Ends are rare (one per segment); weight them to balance the two classes.
    pos_weight = torch.tensor(max(1.0, len(feats) / max(len(ends), 1)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        policy = SkillPolicy(
            SkillPolicyConfig(
                obs_dim=segments.obs_dim,
                action=action,
                hidden_dims=config.hidden_dims,
                grid=config.grid_spec(
                    segments.grids, history=segments.history, tokens=segments.tokens
                ),
                duration_bins=config.duration_bins,
            )
        )
        optimizer = adam(policy.parameters(), lr=config.learning_rate)
        repeats = max(1, math.ceil(config.min_steps_per_epoch / len(x)))
        for epoch in range(config.num_epochs):
            order = torch.cat([torch.randperm(len(x), generator=generator) for _ in range(repeats)])
            for i in range(0, len(order), config.batch_size):
                idx = order[i : i + config.batch_size]
                params, stop_logit = policy(x[idx].float(), None, taken[idx])
                logp = action_log_prob(params, y[idx], action, policy.log_std)
                act_loss = -(logp * has_action[idx]).sum() / has_action[idx].sum().clamp(min=1.0)
                term_loss = nn.functional.binary_cross_entropy_with_logits(
                    stop_logit, stop[idx], pos_weight=pos_weight
                )
                loss = act_loss + config.termination_weight * term_loss
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"skill policy loss diverged at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    policy.eval()
    return policy


@torch.no_grad()
def segment_log_likelihood(
    policy: SkillPolicy,
    segments: SegmentSet,
    indices: Sequence[int],
    arguments: torch.Tensor | None = None,
) -> np.ndarray:
    """Mean per-step action log-likelihood (N,) of each segment at ``indices`` under ``policy``.

    ``arguments`` (N, D): the argument each segment's skill would get (parameterised skills).
    """
    feats, acts, owner = segments.steps(indices)
    arg = arguments[torch.from_numpy(owner)] if arguments is not None else None
    logp = policy.log_prob(torch.from_numpy(feats), torch.from_numpy(acts), arg).numpy()  # (S,)
    sums = np.bincount(owner, weights=logp, minlength=len(indices))
    counts = np.bincount(owner, minlength=len(indices))
    return sums / np.maximum(counts, 1)
