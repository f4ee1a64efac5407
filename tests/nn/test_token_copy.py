"""The copy head: target values read off the task's tokens by attention over positions."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from skillbank.architectures import expected_tensors
from skillbank.nn.controller import Controller, ControllerConfig, TargetSpec, group_cross_entropy
from skillbank.nn.grid_trunk import GridSlice, TokenSlice
from skillbank.nn.token_copy import TokenCopyHead

FILLERS, COLOURS, POSITIONS = 4, 3, 6
VOCAB = 1 + FILLERS + COLOURS  # id 0 is padding
TOKENS = TokenSlice(offset=0, vocab=VOCAB, positions=POSITIONS)


def _sentences(colour: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Token one-hot features (B, V * (1 + P)): fillers everywhere, colour word at ``where``."""
    batch = len(colour)
    ids = torch.randint(1, 1 + FILLERS, (batch, POSITIONS))
    ids[torch.arange(batch), where] = 1 + FILLERS + colour
    one_hot = nn.functional.one_hot(ids, VOCAB).float()  # (B, P, V)
    return torch.cat([one_hot.sum(1).clamp(max=1), one_hot.flatten(1)], dim=1)


def test_copy_generalises_to_positions_never_seen_with_a_word() -> None:
    """Trained with each colour word only at two positions, it names the colour at the other
    four: the token -> value table is shared by all positions (a per-position linear map of the
    one-hot features cannot do this)."""
    torch.manual_seed(0)
    head = TokenCopyHead(TOKENS, (COLOURS,), hidden_dim=4)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        colour = torch.randint(0, COLOURS, (64,))
        where = 2 * colour + torch.randint(0, 2, (64,))  # colour c only at 2c, 2c + 1
        logits = head(_sentences(colour, where), torch.zeros(64, 4))
        loss = nn.functional.cross_entropy(logits, colour)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    colour = torch.randint(0, COLOURS, (300,))
    where = (2 * colour + 2 + torch.randint(0, 4, (300,))) % POSITIONS  # never seen there
    with torch.no_grad():
        guess = head(_sentences(colour, where), torch.zeros(300, 4)).argmax(-1)
    assert (guess == colour).float().mean() > 0.95


def test_no_tokens_copy_nothing_and_padding_is_never_attended() -> None:
    head = TokenCopyHead(TOKENS, (2, 3), hidden_dim=4)
    nn.init.normal_(head.values.weight)
    empty = torch.zeros(3, TOKENS.size)
    assert torch.equal(head(empty, torch.randn(3, 4)), torch.zeros(3, 5))
    # one token at position 2: every group copies that token's values
    features = torch.zeros(1, TOKENS.size)
    features[0, TOKENS.start + 2 * VOCAB + 5] = 1.0
    want = head.values.weight[:, 5]
    assert torch.allclose(head(features, torch.randn(1, 4))[0], want)


@pytest.mark.parametrize("history", [0, 3])
def test_target_v2_round_trip_and_registry(history: int) -> None:
    grid = GridSlice(offset=TOKENS.end, height=3, width=3, channels=7, groups=(4, 3))
    config = ControllerConfig(
        obs_dim=TOKENS.end + grid.size,
        latent_dim=5,
        hidden_dims=(16,),
        arg_dim=7,
        target=TargetSpec(grid, cell=4, groups=(4, 3)),
        target_tokens=TOKENS,
        history_skills=history,
    )
    stored = json.loads(json.dumps(config.to_json()))
    assert ControllerConfig.from_json(stored) == config
    assert config.arch_id == (
        "skill-controller-history-v1" if history else "skill-controller-target-v2"
    )
    controller = Controller(config)
    spec = expected_tensors(config.arch_id, stored)
    assert {k: tuple(v.shape) for k, v in controller.state_dict().items()} == {
        k: v.shape for k, v in spec.items()
    }
    x = torch.rand(4, config.obs_dim)
    hist = torch.zeros(4, config.history_dim) if history else None
    _, logits = controller.query_and_target_logits(x, hist)
    _, argument = controller.query_and_argument(x, hist)
    assert logits.shape == (4, 7) and argument.sum(-1).tolist() == [2.0] * 4
    assert group_cross_entropy(logits, argument, (4, 3)).shape == (4,)


def test_copy_needs_a_target_head() -> None:
    with pytest.raises(ValueError, match="target_tokens needs a target"):
        ControllerConfig(obs_dim=TOKENS.end, latent_dim=2, target_tokens=TOKENS)
