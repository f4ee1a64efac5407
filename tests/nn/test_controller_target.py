"""The controller's target head: per one-hot group of a grid cell, a categorical over values."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from skillbank.architectures import expected_tensors
from skillbank.nn.controller import (
    Controller,
    ControllerConfig,
    TargetSpec,
    group_cross_entropy,
    group_one_hot,
)
from skillbank.nn.grid_trunk import GridSlice, GridTrunkSpec

GRID = GridSlice(offset=2, height=3, width=3, channels=7, groups=(4, 3))
TARGET = TargetSpec(GRID, cell=4, groups=(4, 3))


def _config(grid_trunk: bool = False) -> ControllerConfig:
    return ControllerConfig(
        obs_dim=2 + GRID.size + 3,
        latent_dim=5,
        hidden_dims=(16,),
        arg_dim=7,
        grid=GridTrunkSpec((GRID,), conv_channels=(4,)) if grid_trunk else None,
        target=TARGET,
    )


@pytest.mark.parametrize("grid_trunk", [False, True])
def test_target_head_shapes_round_trip_and_registry(grid_trunk: bool) -> None:
    torch.manual_seed(0)
    config = _config(grid_trunk)
    controller = Controller(config)
    x = torch.randn(6, config.obs_dim)
    query, argument = controller.query_and_argument(x)
    assert query.shape == (6, 5) and argument.shape == (6, 7)
    # one value per group, the argmax of the head's logits
    _, logits = controller.query_and_target_logits(x)
    assert logits.shape == (6, 7)
    assert argument[:, :4].sum(-1).tolist() == [1.0] * 6
    assert argument[:, 4:].sum(-1).tolist() == [1.0] * 6
    assert torch.equal(argument[:, :4].argmax(-1), logits[:, :4].argmax(-1))
    stored = json.loads(json.dumps(config.to_json()))
    assert ControllerConfig.from_json(stored) == config
    assert config.arch_id == "skill-controller-target-v1"
    spec = expected_tensors(config.arch_id, stored)
    assert {k: tuple(v.shape) for k, v in controller.state_dict().items()} == {
        k: v.shape for k, v in spec.items()
    }


def test_group_cross_entropy_is_the_sum_of_per_group_cross_entropies() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    labels_a, labels_b = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([2, 1, 0, 0, 1])
    target = torch.cat([nn.functional.one_hot(labels_a, 4), nn.functional.one_hot(labels_b, 3)], 1)
    loss = group_cross_entropy(logits, target.float(), (4, 3))
    expected = nn.functional.cross_entropy(
        logits[:, :4], labels_a, reduction="none"
    ) + nn.functional.cross_entropy(logits[:, 4:], labels_b, reduction="none")
    torch.testing.assert_close(loss, expected)
    assert torch.equal(group_one_hot(target.float() * 5, (4, 3)), target.float())


def test_sampled_targets_are_one_value_per_group_drawn_by_its_softmax() -> None:
    generator = torch.Generator().manual_seed(0)
    sure = torch.tensor([[0.0, 0.0, 30.0, 0.0, 30.0, 0.0, 0.0]]).expand(50, 7)
    assert torch.equal(group_one_hot(sure, (4, 3), generator), group_one_hot(sure, (4, 3)))
    even = group_one_hot(torch.zeros(4000, 7), (4, 3), generator)  # (N, 7)
    assert torch.equal(even[:, :4].sum(1), torch.ones(4000))
    assert torch.equal(even[:, 4:].sum(1), torch.ones(4000))
    share = even.mean(0)  # every value about equally often
    torch.testing.assert_close(share, torch.tensor([1 / 4] * 4 + [1 / 3] * 3), atol=0.03, rtol=0)


def test_target_content_reads_the_cell() -> None:
    features = torch.zeros(2, 2 + GRID.size + 3)
    start = GRID.offset + 4 * GRID.channels
    features[0, start + 1] = features[0, start + 4 + 2] = 1.0
    assert TARGET.content(features)[0].tolist() == [0, 1, 0, 0, 0, 0, 1]
    assert TARGET.content(features)[1].sum() == 0


def test_configs_reject_mismatched_targets() -> None:
    with pytest.raises(ValueError, match="arg_dim"):
        ControllerConfig(obs_dim=70, latent_dim=5, arg_dim=3, target=TARGET)
    with pytest.raises(ValueError, match="cell"):
        TargetSpec(GRID, cell=9, groups=(4, 3))
    with pytest.raises(ValueError, match="groups"):
        TargetSpec(GRID, cell=0, groups=(4, 2))
    with pytest.raises(ValueError, match="groups"):
        GridSlice(0, 2, 2, 7, groups=(3, 3))
    # groups are layout metadata: not stored, not compared
    assert GridSlice(2, 3, 3, 7) == GRID and "groups" not in GRID.to_json()
    controller = Controller(ControllerConfig(obs_dim=8, latent_dim=4, arg_dim=2))
    with pytest.raises(ValueError, match="no target"):
        controller.query_and_target_logits(torch.zeros(1, 8))


def test_cells_beside_the_target_cell_and_their_contents() -> None:
    assert TARGET.beside() == (1, 3, 5, 7)  # the centre of 3x3: up, left, right, down
    corner = TargetSpec(GRID, cell=0, groups=(4, 3))
    assert corner.beside() == (1, 3)  # no cells off the grid
    features = torch.zeros(2, 2 + GRID.size + 3)
    features[1, 2 + 5 * 7 + 1] = 1.0  # cell 5, first group's value 1
    beside = TARGET.contents_beside(features)  # (B, M, C)
    assert beside.shape == (2, 4, 7)
    assert beside[1, 2].tolist() == [0, 1, 0, 0, 0, 0, 0] and beside[0].sum() == 0
