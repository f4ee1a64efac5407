"""Joint training of the controller's argument head and parameterised skills."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.hierarchy_training import segment_arguments, train_hierarchy
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.nn.skill_policy import ActionSpec


def _cue_segments(episodes: int, length: int = 6) -> SegmentSet:
    """One segment per episode; the cue (which action to repeat) is visible at its first step
    only, so only an argument chosen at the decision point can carry it to the later steps."""
    rng = np.random.default_rng(0)
    features, actions = [], []
    for e in range(episodes):
        cue = e % 2
        f = rng.normal(0, 0.1, (length + 1, 3)).astype(np.float32)
        f[0, cue] += 1.0
        features.append(f)
        actions.append(np.full(length, cue, np.int64))
    spans = tuple((e, 0, length) for e in range(episodes))
    return SegmentSet(tuple(features), tuple(actions), spans)


def _later_step_accuracy(arg_dim: int) -> float:
    torch.manual_seed(0)
    segments = _cue_segments(40)
    config = SkillTrainConfig(hidden_dims=(32,), num_epochs=60, batch_size=32, arg_dim=arg_dim)
    controller, (skill,) = train_hierarchy(
        segments,
        [0] * segments.num_segments,
        np.eye(1, 4, dtype=np.float32),
        [],
        1,
        ActionSpec("discrete", 2),
        config,
        dataclasses.replace(ControllerTrainConfig(), hidden_dims=(32,)),
    )
    held_out = _cue_segments(20)
    arguments = segment_arguments(controller, held_out)  # (N, D)
    assert arguments.shape == (20, arg_dim)
    correct = []
    with torch.no_grad():
        for i, (e, a, b) in enumerate(held_out.spans):
            f = torch.from_numpy(held_out.features[e][a + 1 : b])
            params, _ = skill(f, arguments[i].expand(len(f), -1))
            correct.append((params.argmax(-1).numpy() == held_out.actions[e][a + 1 : b]).mean())
    return float(np.mean(correct))


def test_the_argument_carries_what_the_decision_point_saw() -> None:
    assert _later_step_accuracy(arg_dim=4) >= 0.95
    # without an argument the later steps are a coin flip
    assert _later_step_accuracy(arg_dim=0) <= 0.7
