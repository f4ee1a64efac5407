"""The procedural-memory agent: the one place where the skill memory and the networks meet.

``learn`` turns demonstrations into skills: segment (unsupervised) -> encode each segment to a code
z with the skill VAE -> explain each segment by an existing skill (retrieval by key, then the
skill's action likelihood, given the argument the controller would hand it) -> cluster the
unexplained segments into new skills (how many: by silhouette) -> train the new skills and the
controller together (``skill.arg_dim > 0``, the default: parameterised skills, see
:mod:`skillbank.learning.hierarchy_training`; the controller's argument head and the skills are
cloned end to end on each segment's actions) on this call's segments plus a bounded replay of
earlier calls' segments (so the controller does not forget earlier tasks) -> store each new skill
with its key (the cluster centre) and provenance. Stored skills are never overwritten: reused or
added to. The featurizer spec, the skill VAE, the controller and the replay live in the same
memory as ``component`` records (new versions, never overwrites), so a memory is
self-contained; they carry the ``component`` tag, skills the ``skill`` tag, and
:meth:`ProceduralMemoryAgent.retrieve` (like every lookup of skills here) filters by the
``skill`` tag, so a component is never retrieved as a skill.

``act`` / ``evaluate`` run the hierarchy through :class:`~skillbank.agent.executor.SkillExecutor`
and write usage (retrieved, executed, succeeded) to the memory once per evaluation.

Hierarchy (``AgentConfig.composites``, off by default): a skill may itself be a learned sequence
of skills. After assignment, recurring sequences of skills in the demonstrations (the rule:
:mod:`skillbank.learning.composite_mining`) become composite skills (``skill-sequence-v1``: a
sub-controller that picks the next child, its argument, and "done"), trained on the spans they
cover with their children frozen and stored beside the primitives (tags ``skill`` and
``composite``, key in the same space); the controller is then relabelled so that a composite's
whole span is one decision (see :mod:`skillbank.agent.composites`). The controller record lists
the composites it was trained to choose; only those are run.

Example:
    >>> agent = ProceduralMemoryAgent(SkillMemory("mem"), AgentConfig(seed=0))  # doctest: +SKIP
    >>> report = agent.learn([episodes])  # doctest: +SKIP
    >>> agent.evaluate("toy/fetch", episodes=64, seed=10_000).success_rate  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from skillbank.agent.components import (
    SKILL_TAG,
    features_tag,
    latest_component,
    store_component,
    stored_primitives,
)
from skillbank.agent.composites import learn_composites, stored_composites
from skillbank.agent.config import AgentConfig, EpisodeOutcome, EvalResult, LearnReport
from skillbank.agent.discovery import explain_segments, merge_alike_clusters
from skillbank.agent.executor import SkillExecutor
from skillbank.agent.learn_steps import (
    cluster_or_single,
    dataset_hash,
    infer_action_space,
    load_weights_into,
    module_weights,
    score_against_annotations,
    score_each_dataset,
    train_skills_and_controller,
)
from skillbank.agent.replay import REPLAY_ARCH, SegmentReplay
from skillbank.envs.eval_envs import default_success, eval_env_factory
from skillbank.envs.registry import boundary_proposer
from skillbank.envs.rollout import evaluate_policy
from skillbank.errors import TrainingError
from skillbank.events import Event, NullObserver, Observer
from skillbank.learning.cluster import Clustering
from skillbank.learning.composite_skill import CompositeSkill
from skillbank.learning.composite_training import relabel_controller
from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.segment import OptionHMMSegmenter
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.skill_vae import encode_segments, train_skill_vae
from skillbank.memory.store import SkillMemory
from skillbank.nn.controller import Controller, ControllerConfig
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy
from skillbank.nn.skill_vae import SkillVAE, SkillVAEConfig
from skillbank.types import (
    COARSE_MAP_KEY,
    HISTORY_ENTRIES,
    MAP_KEY,
    Episode,
    Provenance,
    Retrieval,
    RetrievalFilter,
)

__all__ = [
    "CONTROLLER_ARCH",
    "SKILL_ARCH",
    "VAE_ARCH",
    "AgentConfig",
    "EpisodeOutcome",
    "EvalResult",
    "LearnReport",
    "ProceduralMemoryAgent",
]

logger = logging.getLogger(__name__)

SKILL_ARCH = "skill-policy-v2"  # parameterised skills; "skill-policy-v1" with skill.arg_dim = 0
VAE_ARCH = "skill-vae-v1"
# the default controller (learned arguments); "skill-controller-history-v1" with the call
# history ("-history-v2" holding targets too), "-v1" with skill.arg_dim = 0, "-target-v1" with
# hindsight targets ("-target-v2" copied off the mission's tokens, "-target-v3" off a phrase)
CONTROLLER_ARCH = "skill-controller-v2"


def _check_entries(episodes: Sequence[Episode], needed: set[str]) -> None:
    """Refuse, before any training, demonstrations that lack an observation entry the memory's
    features read (or, for a new memory, that the first demonstration has): e.g. datasets
    recorded with and without an explored map, mixed."""
    for episode in episodes:
        missing = needed - set(episode.observations)
        if missing:
            raise TrainingError(
                f"episode seed {episode.seed} of {episode.task.env_id} has no observation "
                f"{sorted(missing)}, which this memory's features read ({sorted(needed)})",
                hint="learn datasets recorded alike (all with an explored map or none: `skillbank "
                "demos collect --map`), or learn these into another memory (--memory DIR)",
            )


class ProceduralMemoryAgent:
    """Learns skills into a :class:`SkillMemory`, retrieves and composes them to act.

    Args:
        memory: The skill memory (its components, if any, are loaded).
        config: Settings; the same config, data and seed give the same skills.
    """

    def __init__(self, memory: SkillMemory, config: AgentConfig | None = None) -> None:
        self.memory = memory
        self.config = (config or AgentConfig()).seeded()
        self.featurizer: ObservationFeaturizer | None = None
        self.action: ActionSpec | None = None
        self.vae: SkillVAE | None = None
        self.controller: Controller | None = None
        self.allowed_actions: tuple[int, ...] | None = None  # discrete ids any demo used
        self._executor: SkillExecutor | None = None
        self._composite_ids: tuple[str, ...] = ()  # the composites the controller chooses from
        self._replay = SegmentReplay.empty()
        self._load_components()

    # --- persistence ----------------------------------------------------------------------------

    def _load_components(self) -> None:
        vae_record = latest_component(self.memory, "skill-encoder")
        controller_record = latest_component(self.memory, "controller")
        if vae_record is None:
            return
        config = vae_record.arch_config
        self.featurizer = ObservationFeaturizer.from_json(config["features"])
        self.vae = SkillVAE(SkillVAEConfig.from_json(config))
        load_weights_into(self.vae, self.memory.load_weights(vae_record))
        self.action = self.vae.config.action
        if controller_record is not None:
            self.controller = Controller(ControllerConfig.from_json(controller_record.arch_config))
            load_weights_into(self.controller, self.memory.load_weights(controller_record))
            allowed = controller_record.arch_config.get("allowed_actions")
            self.allowed_actions = tuple(int(a) for a in allowed) if allowed else None
            composites = controller_record.arch_config.get("composites", [])
            self._composite_ids = tuple(str(c) for c in composites)
        replay_record = latest_component(self.memory, "replay")
        if replay_record is not None:
            self._replay = SegmentReplay.from_record(
                replay_record.arch_config, self.memory.load_weights(replay_record)
            )

    @property
    def map_radius(self) -> int | None:
        """R of the explored map this memory's features read (``"map"``, (2R+1, 2R+1, P)), so
        :meth:`evaluate` builds environments that add it; ``None``: it reads none."""
        return self._square_radius(MAP_KEY)

    @property
    def coarse_map_radius(self) -> int | None:
        """Rc of the explored map's coarse view this memory's features read (``"map_coarse"``,
        (2Rc+1, 2Rc+1, 1 + P)); ``None``: it reads none."""
        return self._square_radius(COARSE_MAP_KEY)

    def _square_radius(self, name: str) -> int | None:
        """R of the (2R+1, 2R+1, ...) entry ``name`` of the features; ``None``: no such entry."""
        specs = self.featurizer.specs if self.featurizer is not None else ()
        side = next((s.shape[0] for s in specs if s.name == name and s.shape), None)
        return None if side is None else (side - 1) // 2

    @property
    def encoder_featurizer(self) -> ObservationFeaturizer:
        """What the skill encoder reads: the features without the history entries
        (:data:`~skillbank.types.HISTORY_ENTRIES`; the featurizer itself when there are none)."""
        assert self.featurizer is not None
        return self.featurizer.without(HISTORY_ENTRIES)

    def _features_tag(self) -> str:
        assert self.featurizer is not None
        return features_tag(self.featurizer)

    def _skill_filter(self) -> RetrievalFilter:
        return RetrievalFilter(tags=(SKILL_TAG, self._features_tag()))

    def retrieve(
        self, query: npt.ArrayLike, k: int, *, filters: RetrievalFilter | None = None
    ) -> Retrieval:
        """The top-k stored skills for a query (Z,), by the memory's attention.

        Only skills: by default the filter is this agent's skill filter (the ``skill`` tag and
        the featurizer's tag), so the agent's ``component`` records (featurizer/VAE, controller,
        replay), which live in the same memory, are never returned. A given ``filters`` gets the
        ``skill`` tag added.
        """
        if filters is None:
            filters = (
                self._skill_filter()
                if self.featurizer is not None
                else RetrievalFilter(tags=(SKILL_TAG,))
            )
        elif SKILL_TAG not in filters.tags:
            filters = dataclasses.replace(filters, tags=(*filters.tags, SKILL_TAG))
        return self.memory.retrieve(query, k, filters=filters)

    def skills(self) -> tuple[list[str], npt.NDArray[np.float32], list[SkillPolicy]]:
        """The stored primitive skills this agent can run: ids (N,), keys (N, Z), modules (N,)."""
        if self.featurizer is None:
            return [], np.zeros((0, self.config.vae.latent_dim), np.float32), []
        return stored_primitives(self.memory, self._skill_filter())

    def composites(
        self,
    ) -> tuple[list[str], npt.NDArray[np.float32], list[CompositeSkill]]:
        """The composite skills the controller chooses from: ids (N_c,), keys (N_c, Z), modules."""
        return stored_composites(self.memory, self._composite_ids, self.config.vae.latent_dim)

    def _store_component(
        self,
        role: str,
        arch_id: str,
        module: nn.Module | Mapping[str, npt.NDArray[Any]],
        config: dict[str, Any],
        prov: Provenance,
    ) -> None:
        assert self.featurizer is not None
        weights = module_weights(module) if isinstance(module, nn.Module) else module
        store_component(
            self.memory,
            role,
            arch_id,
            weights,
            config,
            prov,
            featurizer=self.featurizer,
            latent_dim=self.config.vae.latent_dim,
        )

    # --- learning -------------------------------------------------------------------------------

    def learn(
        self, datasets: Sequence[Sequence[Episode]], *, observer: Observer | None = None
    ) -> LearnReport:
        """Learn skills from demonstrations and store them; see the module docstring.

        Args:
            datasets: Sequences of episodes (e.g. from ``load_dataset``); annotations, where
                present, only score the segmentation.
            observer: Receives ``learn.*`` events.

        Raises:
            TrainingError: No episode with actions, or training diverged.
        """
        start = time.perf_counter()
        observe = observer or NullObserver()
        cfg = self.config
        usable = [
            (e, d)
            for d, dataset in enumerate(datasets)
            for e in dataset
            if e.actions is not None and e.num_steps > 0
        ]
        episodes = [e for e, _ in usable]
        if not episodes:
            raise TrainingError(
                "no demonstrations with actions to learn from",
                hint="collect some with `skillbank demos collect`",
            )
        # --- features and action space: fitted once, then fixed for the memory's life ---------
        _check_entries(
            episodes,
            {spec.name for spec in self.featurizer.specs}
            if self.featurizer is not None
            else set(episodes[0].observations),
        )
        if self.featurizer is None:
            self.featurizer = ObservationFeaturizer.fit(
                episodes, sequence_positions=self.config.sequence_positions
            )
            self.action = infer_action_space(episodes)
        assert self.action is not None
        seen = infer_action_space(episodes)
        if seen.kind != self.action.kind or (
            seen.size > self.action.size
            if seen.kind == "discrete"
            else seen.size != self.action.size
        ):
            raise TrainingError(
                f"these demonstrations act in {seen}, this memory's skills in {self.action}",
                hint="learn them into another memory (--memory DIR)",
            )
        if seen.kind == "discrete":
            used = {int(a) for e in episodes for a in np.unique(np.asarray(e.actions))}
            self.allowed_actions = tuple(sorted(used | set(self.allowed_actions or ())))
        # --- segment and encode ----------------------------------------------------------------
        boundaries = OptionHMMSegmenter(cfg.segmenter, boundary_proposer).segment(episodes)
        segments = SegmentSet.build(episodes, boundaries, self.featurizer)
        observe(Event("learn.segmented", {"segments": segments.num_segments}))
        # the skill encoder reads what a segment does, not the agent's history (its map)
        encoder_featurizer = self.encoder_featurizer
        encoded = segments
        if encoder_featurizer is not self.featurizer:
            encoded = SegmentSet.build(episodes, boundaries, encoder_featurizer)
        if self.vae is None:
            self.vae = train_skill_vae(encoded, self.action, cfg.vae, observer=observe)
        codes = encode_segments(self.vae, encoded, max_segment_length=cfg.vae.max_segment_length)
        # --- explain by existing skills, cluster the rest into new ones -------------------------
        old_ids, old_keys, old_policies = self.skills()
        assignment = explain_segments(
            segments,
            codes,
            old_keys,
            old_policies,
            self.controller,
            candidates=cfg.explain_candidates,
            threshold=cfg.explain_threshold,
            relabel=cfg.skill.relabel_mode,
        )
        num_reused = int((assignment >= 0).sum())
        provenance = Provenance(
            source=",".join(sorted({e.demonstrator for e in episodes})),
            task=",".join(sorted({e.task.env_id for e in episodes})),
            dataset_hash=dataset_hash(episodes),
            extra={"seed": str(cfg.seed)},
        )
        new_ids: list[str] = []
        clustering: Clustering | None = None
        unexplained = np.flatnonzero(assignment < 0)
        if len(unexplained):
            clustering = cluster_or_single(codes[unexplained], cfg.cluster)
            clustering = merge_alike_clusters(  # no-op unless merge_tolerance > 0
                self.vae,
                encoded,
                codes,
                unexplained,
                clustering,
                tolerance=cfg.merge_tolerance,
                max_segment_length=cfg.vae.max_segment_length,
            )
            for j in range(clustering.num_clusters):
                assignment[unexplained[clustering.labels == j]] = len(old_ids) + j
        num_new = clustering.num_clusters if clustering is not None else 0
        key_parts = [old_keys.astype(np.float32)] if old_ids else []
        if clustering is not None:
            key_parts.append(clustering.centres.astype(np.float32))
        keys = np.concatenate(key_parts)  # (N, Z)
        # --- skills and the controller over every key (with replayed earlier decisions) ----------
        replayed, replayed_assignment = self._replay.merged_with(
            segments, assignment.tolist(), old_ids
        )
        histories = self._replay.merged_histories(segments, assignment.tolist(), old_ids)
        self.controller, new_policies = train_skills_and_controller(
            segments,
            assignment,
            replayed,
            replayed_assignment,
            keys,
            old_policies,
            num_new,
            self.action,
            cfg,
            histories,
        )
        for j, policy in enumerate(new_policies):
            assert clustering is not None
            config = {**policy.config.to_json(), "features": self.featurizer.to_json()}
            record = self.memory.add(
                f"skill-{len(old_ids) + j:03d}",
                clustering.centres[j].astype(np.float32),
                policy.config.arch_id,
                config,
                module_weights(policy),
                provenance,
                tags=(SKILL_TAG, self._features_tag()),
            )
            new_ids.append(record.skill_id)
            members = int((assignment == len(old_ids) + j).sum())
            observe(Event("learn.skill", {"segments": members}, {"id": record.skill_id}))
        skill_ids = [*old_ids, *new_ids]
        # --- composites: recurring sequences of skills; the controller relabelled to choose them -
        composite_ids: tuple[str, ...] = ()
        new_composite_ids: tuple[str, ...] = ()
        if cfg.composites:
            outcome = learn_composites(
                self.memory,
                segments,
                assignment.tolist(),
                codes,
                skill_ids,
                keys,
                [*old_policies, *new_policies],
                self.controller,
                self.action,
                cfg,
                provenance,
                (SKILL_TAG, self._features_tag()),
                observe,
            )
            if outcome.ids:
                calls, labels = self._replay.merged_with(
                    outcome.calls, outcome.labels.tolist(), [*skill_ids, *outcome.ids]
                )
                self.controller = relabel_controller(
                    self.controller,
                    calls,
                    labels.tolist(),
                    np.concatenate([keys, outcome.keys]),
                    cfg.composite_training,
                )
            composite_ids, new_composite_ids = outcome.ids, outcome.new_ids
        self._composite_ids = composite_ids
        self._remember(segments, assignment, skill_ids, provenance)
        self._store_component(
            "skill-encoder", VAE_ARCH, self.vae, self.vae.config.to_json(), provenance
        )
        self._store_component(
            "controller",
            self.controller.config.arch_id,
            self.controller,
            {
                **self.controller.config.to_json(),
                "allowed_actions": list(self.allowed_actions or ()),
                "composites": list(composite_ids),
            },
            provenance,
        )
        self._executor = None
        # --- score against annotations (evaluation only) ----------------------------------------
        f1, purity = score_against_annotations(episodes, boundaries, assignment)
        owners = [d for _, d in usable]
        per_dataset = score_each_dataset(episodes, boundaries, assignment, owners, len(datasets))
        report = LearnReport(
            num_episodes=len(episodes),
            num_segments=segments.num_segments,
            num_reused=num_reused,
            new_skill_ids=tuple(new_ids),
            skill_ids=tuple(skill_ids),
            segmentation_f1=f1,
            cluster_purity=purity,
            silhouettes=dict(clustering.silhouettes) if clustering is not None else {},
            train_s=time.perf_counter() - start,
            composite_ids=composite_ids,
            new_composite_ids=new_composite_ids,
            dataset_scores=per_dataset,
        )
        observe(Event("learn.done", {"skills": len(skill_ids), "train_s": report.train_s}))
        return report

    def _remember(
        self,
        segments: SegmentSet,
        assignment: npt.NDArray[np.int64],
        skill_ids: Sequence[str],
        provenance: Provenance,
    ) -> None:
        """Add this call's segments to the bounded replay and store it in the memory."""
        fresh = SegmentReplay.from_segments(segments, assignment.tolist(), skill_ids)
        self._replay = self._replay.union(fresh).bounded(self.config.replay_steps, self.config.seed)
        if self._replay.num_segments:
            config, weights = self._replay.to_record(segments.obs_dim)
            self._store_component("replay", REPLAY_ARCH, weights, config, provenance)

    # --- acting ---------------------------------------------------------------------------------

    def executor(self) -> SkillExecutor:
        """The batched hierarchical policy over the stored skills (a ``BatchPolicy``).

        Raises:
            TrainingError: If nothing has been learned yet.
        """
        if self._executor is None:
            ids, keys, policies = self.skills()
            if not ids or self.controller is None or self.featurizer is None:
                raise TrainingError(
                    "this memory holds no learned skills and controller to act with",
                    hint="run `skillbank learn DATASET --memory DIR` first",
                )
            assert self.action is not None
            composite_ids, composite_keys, composites = self.composites()
            self._executor = SkillExecutor(
                self.featurizer,
                self.controller,
                ids,
                keys,
                policies,
                self.action,
                top_k=self.config.top_k,
                max_skill_steps=self.config.max_skill_steps,
                sample=self.config.sample_actions,
                sample_skills=self.config.sample_skills,
                seed=self.config.seed,
                interrupt_margin=self.config.interrupt_margin,
                stall_steps=self.config.stall_steps,
                sample_targets=self.config.sample_targets,
                allowed_actions=self.allowed_actions,
                composite_ids=composite_ids,
                composite_keys=composite_keys,
                composites=composites,
            )
            self._executor.reset(1)
        return self._executor

    def reset(self) -> None:
        """Start a new episode for :meth:`act`."""
        self.executor().reset(1)

    def act(self, observation: Mapping[str, Any]) -> npt.NDArray[Any]:
        """One action for one observation (name -> per-step array, no batch axis).

        The skill in charge persists between calls; call :meth:`reset` between episodes.
        """
        batch = {k: np.asarray(v)[None] for k, v in observation.items()}
        executor = self.executor()
        if executor.num_envs != 1:
            executor.reset(1)
        out: npt.NDArray[Any] = executor.act(batch)[0]
        return out

    def evaluate(
        self,
        env: str | Callable[[int], Any],
        episodes: int,
        seed: int,
        *,
        success_fn: Callable[[float, bool, bool, Mapping[str, Any]], bool] | None = None,
        trace: bool = False,
    ) -> EvalResult:
        """Run ``episodes`` episodes on seeds ``seed, seed+1, ...``, ``num_envs`` at a time.

        Args:
            env: An environment id (``"babyai/GoTo"``, ``"toy/fetch"``, ...) or ``make_env(index)``.
            episodes: Episodes to run.
            seed: Seed of the first episode.
            success_fn: Success at an episode's end; by default ``info["success"]`` where the
                environment reports it (Meta-World, toy), else a positive terminal reward (BabyAI).
            trace: Keep every skill call of every episode in its outcome (``outcomes[k].calls``:
                step, skill, argument, actions), to see where episodes fail.
        """
        if isinstance(env, str):
            env_id, make = eval_env_factory(
                env, map_radius=self.map_radius, coarse_radius=self.coarse_map_radius
            )
        else:
            env_id, make = getattr(env, "__name__", "custom"), env
        executor = self.executor()
        executor.seed = seed
        executor.trace = trace
        result = evaluate_policy(
            make,
            executor,
            episodes=episodes,
            seed=seed,
            num_envs=self.config.num_envs,
            success_fn=success_fn or default_success,
        )
        usage = executor.usage(result.successes)
        if usage:
            self.memory.record_usage_many(usage)
        calls = [executor.calls_of(k) for k in range(result.episodes)]
        executor.reset(1)
        return EvalResult(
            env=env_id,
            episodes=result.episodes,
            seed=seed,
            success_rate=result.success_rate,
            mean_steps=result.mean_steps,
            steps_per_s=result.steps_per_s,
            skills_used={k: v[1] for k, v in sorted(usage.items()) if v[1]},
            outcomes=tuple(
                EpisodeOutcome(seed_k, success, steps, task, episode_calls)
                for seed_k, success, steps, task, episode_calls in zip(
                    result.seeds,
                    result.successes,
                    result.steps,
                    result.tasks or [""] * result.episodes,
                    calls,
                    strict=True,
                )
            ),
        )
