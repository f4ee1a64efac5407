"""The skill encoding network: a segment (observations and actions) -> a latent code z.

A variational encoder pools per-step embeddings of (observation features, action) over the
segment into a Gaussian posterior q(z | segment); a decoder reconstructs every action of the
segment from its observation and z, p(a_t | o_t, z), and a bag decoder predicts the segment's
action composition from z alone. Trained with the ELBO (reconstruction plus beta-weighted KL to
N(0, I)), segments that do the same thing land near each other, as in CompILE (Kipf et al., ICML
2019) and SPiRL (Pertsch et al., CoRL 2020). The bag term is ours: a decoder that sees the
observation can often guess the action without z (holding something in front of a free cell:
drop), and z then forgets what the segment did; the bag term keeps it in the code.

Example:
    >>> config = SkillVAEConfig(obs_dim=8, action=ActionSpec("discrete", 3), latent_dim=4)
    >>> vae = SkillVAE(config)
    >>> mu, logvar = vae.encode(torch.zeros(2, 5, 8), torch.zeros(2, 5, 3), torch.ones(2, 5))
    >>> tuple(mu.shape)
    (2, 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skillbank.nn.skill_policy import ActionSpec, action_log_prob

__all__ = ["SkillVAE", "SkillVAEConfig", "skill_vae_loss"]


@dataclass(frozen=True, slots=True)
class SkillVAEConfig:
    """Shape of the skill encoder (``arch_id = "skill-vae-v1"``).

    Attributes:
        obs_dim: O, observation features per step.
        action: The action space.
        hidden_dim: D, width of the step embedding and the decoder.
        latent_dim: Z, size of the skill code (the memory's key dimension).
    """

    obs_dim: int
    action: ActionSpec
    hidden_dim: int = 128
    latent_dim: int = 16

    def __post_init__(self) -> None:
        for name in ("obs_dim", "hidden_dim", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"SkillVAEConfig.{name} must be >= 1")

    def to_json(self) -> dict[str, Any]:
        """The config as stored in the skill memory."""
        return {
            "obs_dim": self.obs_dim,
            "action_kind": self.action.kind,
            "action_size": self.action.size,
            "hidden_dim": self.hidden_dim,
            "latent_dim": self.latent_dim,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SkillVAEConfig:
        """Rebuild from :meth:`to_json` output (extra keys are ignored)."""
        return cls(
            obs_dim=int(data["obs_dim"]),
            action=ActionSpec(str(data["action_kind"]), int(data["action_size"])),
            hidden_dim=int(data["hidden_dim"]),
            latent_dim=int(data["latent_dim"]),
        )


class SkillVAE(nn.Module):
    """Segment encoder q(z | o_{1:T}, a_{1:T}) and action decoder p(a_t | o_t, z)."""

    def __init__(self, config: SkillVAEConfig) -> None:
        super().__init__()
        self.config = config
        d, z = config.hidden_dim, config.latent_dim
        self.step_encoder = nn.Sequential(
            nn.Linear(config.obs_dim + config.action.input_dim, d),
            nn.ReLU(),
            nn.Linear(d, d),
            nn.ReLU(),
        )
        self.posterior = nn.Linear(2 * d, 2 * z)
        self.decoder = nn.Sequential(
            nn.Linear(config.obs_dim + z, d),
            nn.ReLU(),
            nn.Linear(d, config.action.size),
        )
        self.bag_decoder = nn.Linear(z, config.action.size)
        self.log_std: nn.Parameter | None = None
        if config.action.kind == "continuous":
            self.log_std = nn.Parameter(torch.full((config.action.size,), -0.5))

    def encode(
        self, features: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of padded segments.

        Args:
            features: (B, T, O) observation features.
            actions: (B, T, A) encoded actions (see :meth:`ActionSpec.encode`).
            mask: (B, T) 1 on real steps, 0 on padding.

        Returns:
            mu (B, Z) and logvar (B, Z).
        """
        steps = self.step_encoder(torch.cat([features, actions], dim=-1))  # (B, T, D)
        weight = mask.unsqueeze(-1)  # (B, T, 1)
        mean = (steps * weight).sum(1) / weight.sum(1).clamp(min=1.0)  # (B, D)
        peak = steps.masked_fill(weight == 0, -1e4).amax(1)  # (B, D)
        stats = self.posterior(torch.cat([mean, peak], dim=-1))  # (B, 2Z)
        mu, logvar = stats.chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 4.0)

    def decode(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Action params (B, T, A) for features (B, T, O) under codes z (B, Z)."""
        tiled = z.unsqueeze(1).expand(-1, features.shape[1], -1)  # (B, T, Z)
        out: torch.Tensor = self.decoder(torch.cat([features, tiled], dim=-1))
        return out


def skill_vae_loss(
    vae: SkillVAE,
    features: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO of a batch of padded segments.

    Args:
        vae: The model.
        features: (B, T, O) observation features.
        actions: (B, T) action ids or (B, T, A) action values.
        mask: (B, T) 1 on real steps.
        beta: Weight of the KL term.
        generator: Source of the reparameterisation noise.

    Returns:
        (loss, reconstruction NLL per step, KL per segment), all scalars.
    """
    spec = vae.config.action
    mu, logvar = vae.encode(features, spec.encode(actions), mask)
    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
    z = mu + noise * torch.exp(0.5 * logvar)  # (B, Z)
    params = vae.decode(features, z)  # (B, T, A)
    logp = action_log_prob(params, actions, spec, vae.log_std)  # (B, T)
    recon = -(logp * mask).sum() / mask.sum().clamp(min=1.0)
    # --- bag of actions from z alone: (B, A) composition of each segment ---
    weight = mask.unsqueeze(-1) / mask.sum(1, keepdim=True).unsqueeze(-1).clamp(min=1.0)
    composition = (spec.encode(actions) * weight).sum(1)  # (B, A)
    bag = vae.bag_decoder(z)  # (B, A)
    if spec.kind == "discrete":
        bag_loss = -(composition * torch.log_softmax(bag, -1)).sum(-1).mean()
    else:
        bag_loss = (bag - composition).pow(2).sum(-1).mean()
    recon = recon + bag_loss
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
    mean_length = mask.sum(1).mean().clamp(min=1.0)
    return recon + beta * kl / mean_length, recon, kl
