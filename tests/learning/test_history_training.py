"""Training the controller with the episode's call history (train_controller, train_hierarchy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skillbank.errors import TrainingError
from skillbank.learning.controller_training import (
    ControllerTrainConfig,
    episode_call_prefixes,
    mix_retry,
    step_histories,
    step_target_histories,
    train_controller,
)
from skillbank.learning.hierarchy_training import segment_arguments, train_hierarchy
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.nn.controller import Controller, attention_logits, call_history
from skillbank.nn.skill_policy import ActionSpec

KEYS = np.eye(2, 4, dtype=np.float32)


def _two_call_episodes(episodes: int, seed: int, length: int = 4) -> SegmentSet:
    """Every episode calls skill 0 then skill 1 on observations that look alike throughout
    (noise plus the step's place in its segment): only the history tells the calls apart."""
    rng = np.random.default_rng(seed)
    features, actions, spans = [], [], []
    for e in range(episodes):
        ramp = np.r_[np.arange(length), np.arange(length + 1)] / length  # both calls from 0
        f = rng.normal(0, 0.1, (2 * length + 1, 3)).astype(np.float32)
        f[:, 0] += ramp
        features.append(f)
        actions.append(np.r_[np.zeros(length), np.ones(length)].astype(np.int64))
        spans += [(e, 0, length), (e, length, 2 * length)]
    return SegmentSet(tuple(features), tuple(actions), tuple(spans))


def _decision_accuracy(controller: Controller, segments: SegmentSet) -> float:
    """Share of the decision points (first steps) where attention picks the segment's skill."""
    starts = torch.from_numpy(np.stack([segments.features[e][a] for e, a, _ in segments.spans]))
    want = torch.tensor([i % 2 for i in range(segments.num_segments)])
    history = None
    if controller.config.history_skills:
        prefixes = episode_call_prefixes(segments.spans, want.tolist())
        history = call_history(prefixes, controller.config.history_skills)
    with torch.no_grad():
        logits = attention_logits(controller(starts, history), torch.from_numpy(KEYS))
    return float((logits.argmax(1) == want).float().mean())


@pytest.mark.parametrize("history", [False, True])
def test_train_controller_tells_alike_calls_apart_only_with_history(history: bool) -> None:
    segments = _two_call_episodes(30, seed=0)
    config = ControllerTrainConfig(
        hidden_dims=(32,), num_epochs=30, history=history, history_retry=0.0
    )
    controller = train_controller(segments, [0, 1] * 30, KEYS, config)
    assert controller.config.history_skills == (2 if history else 0)
    accuracy = _decision_accuracy(controller, _two_call_episodes(20, seed=1))
    # with the history every decision is right; without it the second call is a guess
    assert accuracy >= 0.95 if history else accuracy <= 0.8, accuracy


@pytest.mark.parametrize("history", [False, True])
def test_train_hierarchy_tells_alike_calls_apart_only_with_history(history: bool) -> None:
    torch.manual_seed(0)
    segments = _two_call_episodes(30, seed=0)
    controller, new = train_hierarchy(
        segments,
        [0, 1] * 30,
        KEYS,
        [],
        2,
        ActionSpec("discrete", 2),
        SkillTrainConfig(hidden_dims=(32,), num_epochs=30, batch_size=32, arg_dim=2),
        ControllerTrainConfig(hidden_dims=(32,), history=history, history_retry=0.0),
    )
    assert len(new) == 2 and controller.config.history_skills == (2 if history else 0)
    held_out = _two_call_episodes(20, seed=1)
    accuracy = _decision_accuracy(controller, held_out)
    assert accuracy >= 0.95 if history else accuracy <= 0.8, accuracy
    arguments = segment_arguments(controller, held_out)  # "none called yet" when not given
    assert arguments.shape == (40, 2) and torch.isfinite(arguments).all()


def test_explicit_histories_override_the_spans() -> None:
    """A replayed segment is its own episode: its history must come from the record."""
    segments = _two_call_episodes(30, seed=0)
    alone = SegmentSet(  # every segment cut out as its own episode, as the replay keeps it
        tuple(segments.features[e][a : b + 1] for e, a, b in segments.spans),
        tuple(segments.actions[e][a:b] for e, a, b in segments.spans),
        tuple((i, 0, b - a) for i, (_, a, b) in enumerate(segments.spans)),
    )
    # from the spans alone every segment looks first; the histories say otherwise
    config = ControllerTrainConfig(
        hidden_dims=(32,), num_epochs=30, history=True, history_retry=0.0
    )
    prefixes = episode_call_prefixes(segments.spans, [0, 1] * 30)
    controller = train_controller(alone, [0, 1] * 30, KEYS, config, prefixes)
    assert _decision_accuracy(controller, _two_call_episodes(20, seed=1)) >= 0.95


def test_prefixes_retry_histories_and_their_mix() -> None:
    spans = [(0, 3, 5), (0, 0, 3), (1, 0, 2), (0, 5, 9)]
    assert episode_call_prefixes(spans, [1, 0, 1, -1]) == [(0,), (), (), (0, 1)]
    plain, retry = step_histories([(), (0,)], [0, 1], 2)  # (2, 5) each
    torch.testing.assert_close(retry, call_history([(0,), (0, 1)], 2))
    torch.testing.assert_close(plain, call_history([(), (0,)], 2))
    first = torch.tensor([True] + [False] * 999)
    mixed = mix_retry(plain[[0] * 1000], retry[[0] * 1000], first, 0.5, torch.Generator())
    took_retry = (mixed == retry[0]).all(1)
    assert not took_retry[0]  # a decision point never reads its own call
    assert 0.4 < took_retry.float().mean() < 0.6
    assert mix_retry(plain, retry, first[:2], 0.0, torch.Generator()) is plain
    with pytest.raises(ValueError, match="history_retry"):
        ControllerTrainConfig(history_retry=1.5)
    with pytest.raises(ValueError, match="copy_done reads what is done"):
        ControllerTrainConfig(target_copy=True, history=True, copy_done=True)
    ControllerTrainConfig(target_copy=True, history=True, history_held=True, copy_done=True)


def test_target_histories_or_each_skills_earlier_targets_in_episode_order() -> None:
    # episode 0 in start order: segment 1 (skill 0, target a), 0 (skill 1, b), 3 (skill 0, c)
    spans = [(0, 3, 5), (0, 0, 3), (1, 0, 2), (0, 5, 9)]
    targets = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]], dtype=torch.float32)
    plain, retry = step_target_histories(spans, [1, 0, 0, 0], targets, 2)  # (4, 2 * 3) each
    view = plain.view(4, 2, 3)
    torch.testing.assert_close(view[1], torch.zeros(2, 3))  # first of its episode
    torch.testing.assert_close(view[0], torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    torch.testing.assert_close(view[3], torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    torch.testing.assert_close(view[2], torch.zeros(2, 3))  # another episode
    # the retry history adds the segment's own (skill, target)
    torch.testing.assert_close(retry.view(4, 2, 3)[3], torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    torch.testing.assert_close(retry.view(4, 2, 3)[2], torch.tensor([[0.0, 0, 1], [0, 0, 0]]))
    with pytest.raises(TrainingError, match="one skill and one target"):
        step_target_histories(spans, [0, 1], targets, 2)
