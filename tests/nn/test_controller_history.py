"""The controller's call-history input: encoding, config, registry, and old configs unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from skillbank.architectures import expected_tensors
from skillbank.nn.controller import (
    HISTORY_COUNT_CAP,
    Controller,
    ControllerConfig,
    TargetSpec,
    call_history,
    history_features,
)
from skillbank.nn.grid_trunk import GridSlice, GridTrunkSpec


def test_history_features_one_hot_last_and_capped_counts() -> None:
    last = torch.tensor([-1, 2, 7])  # none, skill 2, a skill the controller never saw
    counts = torch.tensor([[0, 0, 0], [1, 0, 5], [0, 2, 0]])
    h = history_features(last, counts, cap=3)  # (3, 2 * 3 + 1)
    assert h.shape == (3, 7)
    np.testing.assert_array_equal(h[:, :4].numpy(), [[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert h[1, 6].item() == 1.0  # 5 calls read as the cap
    assert h[2, 5].item() == pytest.approx(2 / 3)


def test_call_history_of_prefixes_leaves_unknown_rows_out() -> None:
    h = call_history([(), (1,), (0, 1, 1), (1, 9)], 2)  # (4, 5)
    expected = history_features(
        torch.tensor([-1, 1, 1, 1]), torch.tensor([[0, 0], [0, 1], [1, 2], [0, 1]])
    )
    torch.testing.assert_close(h, expected)


def _grid() -> GridSlice:
    return GridSlice(offset=2, height=2, width=2, channels=3, groups=(2, 1))


@pytest.mark.parametrize(
    "config",
    [
        ControllerConfig(obs_dim=14, latent_dim=4, history_skills=3),
        ControllerConfig(obs_dim=14, latent_dim=4, arg_dim=5, history_skills=2),
        ControllerConfig(
            obs_dim=14,
            latent_dim=4,
            arg_dim=3,
            grid=GridTrunkSpec((_grid(),), (4,), 3),
            history_skills=4,
        ),
        ControllerConfig(
            obs_dim=14,
            latent_dim=4,
            arg_dim=3,
            grid=GridTrunkSpec((_grid(),), (4,), 3),
            target=TargetSpec(_grid(), 1, (2, 1)),
            history_skills=1,
        ),
    ],
)
def test_history_config_round_trips_and_the_registry_knows_its_tensors(
    config: ControllerConfig,
) -> None:
    assert config.arch_id == "skill-controller-history-v1"
    assert ControllerConfig.from_json(config.to_json()) == config
    controller = Controller(config)
    expected = {k: v.shape for k, v in expected_tensors(config.arch_id, config.to_json()).items()}
    actual = {k: tuple(v.shape) for k, v in controller.state_dict().items()}
    assert actual == expected
    x = torch.randn(5, config.obs_dim)
    h = call_history([(), (0,), (0, 0), (), (0,)], config.history_skills)  # (5, H)
    query, argument = controller.query_and_argument(x, h)
    assert query.shape == (5, 4) and argument.shape == (5, config.arg_dim)
    assert controller(x, h).shape == (5, 4)
    with pytest.raises(ValueError, match="call history"):
        controller(x)


def test_the_history_changes_the_query() -> None:
    torch.manual_seed(0)
    controller = Controller(ControllerConfig(obs_dim=6, latent_dim=4, history_skills=2))
    x = torch.randn(1, 6).expand(2, -1)
    query = controller(x, call_history([(), (1,)], 2))
    assert not torch.allclose(query[0], query[1])


def test_a_controller_without_history_is_unchanged() -> None:
    config = ControllerConfig(obs_dim=6, latent_dim=4, arg_dim=2)
    assert "history_skills" not in config.to_json()
    assert ControllerConfig.from_json(config.to_json()).history_skills == 0
    assert config.arch_id == "skill-controller-v2"
    with pytest.raises(ValueError, match="call history"):
        Controller(config)(torch.zeros(1, 6), call_history([()], 2))
    with pytest.raises(ValueError, match="history_skills"):
        ControllerConfig(obs_dim=6, latent_dim=4, history_skills=-1)


def test_the_cap_is_stored_and_applied() -> None:
    config = ControllerConfig(obs_dim=6, latent_dim=4, history_skills=2, history_cap=1)
    assert config.to_json()["history_cap"] == 1
    assert ControllerConfig.from_json(config.to_json()) == config
    h = call_history([(0, 0, 1)], 2, cap=1)  # counts read as presence
    torch.testing.assert_close(h, torch.tensor([[0.0, 1.0, 0.0, 1.0, 1.0]]))
    old = {"obs_dim": 6, "latent_dim": 4, "hidden_dims": [8], "history_skills": 2}
    assert ControllerConfig.from_json(old).history_cap == HISTORY_COUNT_CAP
    with pytest.raises(ValueError, match="history_cap"):
        ControllerConfig(obs_dim=6, latent_dim=4, history_skills=2, history_cap=0)


def _history_v2(**extra: Any) -> ControllerConfig:
    """A history-v2 target controller over 2 skills (``extra``: history_targets, held_cell),
    checked: it round-trips and the registry knows its tensors."""
    grid = _grid()
    config = ControllerConfig(
        obs_dim=14,
        latent_dim=4,
        arg_dim=3,
        grid=GridTrunkSpec((grid,), (4,), 3),
        target=TargetSpec(grid, 1, (2, 1)),
        history_skills=2,
        **extra,
    )
    assert config.arch_id == "skill-controller-history-v2"
    assert ControllerConfig.from_json(config.to_json()) == config
    controller = Controller(config)
    expected = {k: v.shape for k, v in expected_tensors(config.arch_id, config.to_json()).items()}
    assert {k: tuple(v.shape) for k, v in controller.state_dict().items()} == expected
    return config


def test_a_history_with_targets_reads_each_skills_targets() -> None:
    """history-v2: N x C more inputs (per skill, the targets of its finished calls); needs a
    history and a target head; stored, registered, and the targets change the query."""
    config = _history_v2(history_targets=True)
    assert config.history_dim == 2 * 2 + 1 + 2 * 3
    last, counts = torch.tensor([0, 0]), torch.tensor([[1, 0], [1, 0]])
    targets = torch.zeros(2, 2, 3)
    targets[1, 0] = torch.tensor([1.0, 0.0, 1.0])  # skill 0 was given target (1, 0 | 1)
    h = history_features(last, counts, targets=targets)  # (2, 11)
    assert h.shape == (2, 11) and h[1, 5:].tolist() == [1, 0, 1, 0, 0, 0]
    torch.manual_seed(0)
    x = torch.randn(1, 14).expand(2, -1)
    query = Controller(config)(x, h)
    assert not torch.allclose(query[0], query[1])
    with pytest.raises(ValueError, match="need a call history"):
        ControllerConfig(obs_dim=14, latent_dim=4, history_skills=2, history_targets=True)


def test_a_history_with_what_was_held_reads_c_more_inputs() -> None:
    grid = _grid()  # 2 x 2 cells of 3 channels
    config = _history_v2(held_cell=3)
    assert config.history_dim == 2 * 2 + 1 + 3
    features = torch.zeros(1, 14)
    features[0, grid.offset + 3 * 3 + 2] = 1.0  # cell 3, channel 2
    assert config.target is not None
    assert config.target.content(features, 3).tolist() == [[0.0, 0.0, 1.0]]
    held = torch.tensor([[0.0, 1.0, 1.0]])
    h = history_features(torch.tensor([-1]), torch.zeros(1, 2, dtype=torch.long), held=held)
    assert h[0, -3:].tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="off the grid"):
        dataclasses.replace(config, held_cell=4)
