"""Skill policy, skill VAE and controller: shapes, registry agreement, batched execution."""

from __future__ import annotations

import pytest
import torch

from skillbank.architectures import expected_tensors
from skillbank.nn.controller import Controller, ControllerConfig, attention_logits, top_k_attention
from skillbank.nn.skill_policy import (
    ActionSpec,
    SkillPolicy,
    SkillPolicyConfig,
    StackedSkillPolicies,
)
from skillbank.nn.skill_vae import SkillVAE, SkillVAEConfig, skill_vae_loss


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("action", [ActionSpec("discrete", 6), ActionSpec("continuous", 4)])
def test_state_dicts_match_the_registry(action: ActionSpec) -> None:
    policy = SkillPolicy(SkillPolicyConfig(obs_dim=10, action=action, hidden_dims=(16, 8)))
    vae = SkillVAE(SkillVAEConfig(obs_dim=10, action=action, hidden_dim=16, latent_dim=4))
    controller = Controller(ControllerConfig(obs_dim=10, latent_dim=4, hidden_dims=(16,)))
    param_policy = SkillPolicy(
        SkillPolicyConfig(obs_dim=10, action=action, hidden_dims=(16, 8), arg_dim=3)
    )
    param_controller = Controller(
        ControllerConfig(obs_dim=10, latent_dim=4, hidden_dims=(16,), arg_dim=3)
    )
    for arch, module, config in [
        ("skill-policy-v1", policy, policy.config.to_json()),
        ("skill-vae-v1", vae, vae.config.to_json()),
        ("skill-controller-v1", controller, controller.config.to_json()),
        ("skill-policy-v2", param_policy, param_policy.config.to_json()),
        ("skill-controller-v2", param_controller, param_controller.config.to_json()),
    ]:
        assert getattr(module.config, "arch_id", arch) == arch
        spec = {k: v.shape for k, v in expected_tensors(arch, config).items()}
        assert spec == _shapes(module), arch


def test_parameterised_policies_read_their_argument_and_stack() -> None:
    torch.manual_seed(0)
    config = SkillPolicyConfig(
        obs_dim=5, action=ActionSpec("discrete", 3), hidden_dims=(8, 8), arg_dim=2
    )
    policies = [SkillPolicy(config) for _ in range(3)]
    for policy in policies:  # FiLM starts at identity; give it weight so the test sees it
        assert policy.film is not None
        torch.nn.init.normal_(policy.film.weight)
    x, arg = torch.randn(7, 5), torch.randn(7, 2)
    params, stops = StackedSkillPolicies(policies)(x, arg)
    for i, policy in enumerate(policies):
        p, s = policy(x, arg)
        torch.testing.assert_close(params[i], p.detach())
        torch.testing.assert_close(stops[i], s.detach())
    other, _ = policies[0](x, -arg)
    assert not torch.allclose(other, policies[0](x, arg)[0])
    controller = Controller(ControllerConfig(obs_dim=5, latent_dim=4, hidden_dims=(8,), arg_dim=2))
    query, argument = controller.query_and_argument(x)
    assert query.shape == (7, 4) and argument.shape == (7, 2)
    assert float(argument.detach().abs().max()) <= 1.0


def test_stacked_policies_equal_one_by_one() -> None:
    torch.manual_seed(0)
    config = SkillPolicyConfig(obs_dim=5, action=ActionSpec("discrete", 3), hidden_dims=(8, 8))
    policies = [SkillPolicy(config) for _ in range(3)]
    x = torch.randn(7, 5)
    params, stops = StackedSkillPolicies(policies)(x)
    assert params.shape == (3, 7, 3) and stops.shape == (3, 7)
    for i, policy in enumerate(policies):
        p, s = policy(x)
        torch.testing.assert_close(params[i], p.detach())
        torch.testing.assert_close(stops[i], s.detach())


def test_vae_loss_and_attention() -> None:
    vae = SkillVAE(SkillVAEConfig(obs_dim=3, action=ActionSpec("discrete", 4), latent_dim=2))
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    loss, recon, kl = skill_vae_loss(
        vae,
        torch.randn(2, 5, 3),
        torch.randint(0, 4, (2, 5)),
        mask,
        beta=0.1,
        generator=torch.Generator().manual_seed(0),
    )
    assert loss.isfinite() and recon > 0 and kl >= 0
    keys = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    logits = attention_logits(torch.tensor([[0.0, 3.0]]), keys)
    indices, weights = top_k_attention(logits, 2)
    assert indices[0, 0].item() == 1
    assert torch.isclose(weights.sum(), torch.tensor(1.0))
