"""The rule for when a recurring sequence of skills becomes a composite, on synthetic sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skillbank.architectures import expected_tensors
from skillbank.learning.composite_mining import (
    CompositeMiningConfig,
    SkillPattern,
    cover_sequence,
    mine_patterns,
)
from skillbank.learning.composite_skill import CompositeSkill, CompositeSkillConfig
from skillbank.nn.controller import ControllerConfig

RULE = CompositeMiningConfig(min_support=0.2, min_episodes=3)


def _sequences(counts: dict[tuple[int, ...], int]) -> list[list[int]]:
    return [list(seq) for seq, n in counts.items() for _ in range(n)]


def test_frequent_pair_becomes_a_composite_rare_one_does_not() -> None:
    seqs = _sequences({(0, 1): 6, (0, 1, 2): 2, (3,): 12})  # (0, 1) in 8/20, (1, 2) in 2/20
    patterns = mine_patterns(seqs, RULE)
    assert [p.sequence for p in patterns] == [(0, 1)]
    assert patterns[0].support == pytest.approx(0.4)
    assert patterns[0].num_episodes == 8 and patterns[0].num_occurrences == 8


def test_support_and_episode_thresholds_both_apply() -> None:
    seqs = _sequences({(0, 1): 3, (2,): 17})  # 15% of episodes
    assert mine_patterns(seqs, RULE) == ()
    assert [p.sequence for p in mine_patterns(seqs, CompositeMiningConfig(0 + 2, 3, 0.1, 3))] == [
        (0, 1)
    ]
    few = _sequences({(0, 1): 2, (2,): 2})  # 50% but only 2 episodes
    assert mine_patterns(few, RULE) == ()


def test_longer_pattern_wins_and_its_parts_need_support_of_their_own() -> None:
    # (0, 1, 2) everywhere: its parts add nothing; (0, 1) alone in many more episodes is kept.
    seqs = _sequences({(0, 1, 2): 10})
    assert [p.sequence for p in mine_patterns(seqs, RULE)] == [(0, 1, 2)]
    seqs = _sequences({(0, 1, 2): 5, (0, 1): 10, (4,): 5})  # (0,1,2) 0.25, (0,1) 0.75
    assert [p.sequence for p in mine_patterns(seqs, RULE)] == [(0, 1, 2), (0, 1)]


def test_one_skill_repeated_is_never_a_composite_and_negatives_break_sequences() -> None:
    assert mine_patterns(_sequences({(5, 5, 5): 10}), RULE) == ()
    assert mine_patterns(_sequences({(0, -1, 1): 10}), RULE) == ()


def test_at_most_max_composites_longest_then_most_supported() -> None:
    seqs = _sequences({(0, 1): 10, (2, 3): 6, (4, 5): 8})
    capped = CompositeMiningConfig(min_support=0.2, min_episodes=3, max_composites=2)
    assert [p.sequence for p in mine_patterns(seqs, capped)] == [(0, 1), (4, 5)]
    assert mine_patterns(seqs, CompositeMiningConfig(max_composites=0)) == ()
    assert mine_patterns([], RULE) == ()


def test_cover_is_greedy_left_to_right_in_priority_order() -> None:
    assert cover_sequence([0, 1, 2, 0, 1], [(0, 1, 2), (0, 1)]) == [(0, 3, 0), (3, 5, 1)]
    assert cover_sequence([0, 1, 2], [(0, 1), (0, 1, 2)]) == [(0, 2, 0)]
    assert cover_sequence([1, 1, 1, 1], [(1, 1)]) == [(0, 2, 0), (2, 4, 0)]
    assert cover_sequence([], [(0, 1)]) == []


def test_configs_and_patterns_are_validated() -> None:
    with pytest.raises(ValueError, match="min_length"):
        CompositeMiningConfig(min_length=1)
    with pytest.raises(ValueError, match="min_support"):
        CompositeMiningConfig(min_support=0.0)
    with pytest.raises(ValueError, match="sequence"):
        SkillPattern((3,), 0.5, 1, 1)


def test_composite_module_matches_the_registry_and_picks_per_position() -> None:
    config = CompositeSkillConfig.for_sequence(
        ControllerConfig(obs_dim=6, latent_dim=4, hidden_dims=(8,), arg_dim=3),
        children=("a", "b"),
        sequence=(0, 1, 0),
        latent_dim=4,
        arg_dim=3,
    )
    assert config.controller.latent_dim == 16 and config.controller.arg_dim == 9
    module = CompositeSkill(config, torch.eye(2, 4))
    expected = expected_tensors("skill-sequence-v1", config.to_json())
    state = module.state_dict()
    assert set(state) == set(expected)
    assert all(tuple(state[k].shape) == spec.shape for k, spec in expected.items())
    assert CompositeSkillConfig.from_json(config.to_json()) == config
    logits, argument = module(torch.zeros(5, 6), torch.arange(5))  # positions past L clamp
    assert logits.shape == (5, 3) and argument.shape == (5, 3)
    np.testing.assert_allclose(argument[2].detach().numpy(), argument[4].detach().numpy())
    with pytest.raises(ValueError, match="sequence"):
        CompositeSkillConfig.for_sequence(config.controller, ("a",), (0,), 4, 3)
