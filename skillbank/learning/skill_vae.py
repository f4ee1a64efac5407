"""Train the skill encoding network on segments, and encode segments to codes z.

Example:
    >>> action = ActionSpec("discrete", 7)
    >>> vae = train_skill_vae(segments, action, SkillVAETrainConfig())  # doctest: +SKIP
    >>> codes = encode_segments(vae, segments)  # (N, Z)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from skillbank.errors import TrainingError
from skillbank.events import Event, NullObserver, Observer
from skillbank.learning.segment_set import SegmentSet
from skillbank.nn.optim import adam
from skillbank.nn.skill_policy import ActionSpec, action_log_prob
from skillbank.nn.skill_vae import SkillVAE, SkillVAEConfig, skill_vae_loss

__all__ = [
    "SkillVAETrainConfig",
    "decoder_cross_likelihood",
    "encode_segments",
    "merge_equivalent",
    "train_skill_vae",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SkillVAETrainConfig:
    """Settings of :func:`train_skill_vae`.

    Attributes:
        latent_dim: Z, the skill code size (the memory's key dimension).
        hidden_dim: D, width of the encoder and decoder.
        beta: Weight of the KL term of the ELBO.
        num_epochs: Passes over the segments.
        batch_size: Segments per gradient step.
        learning_rate: Adam step size.
        max_segment_length: Longer segments are cropped to their first steps.
        seed: Seed of initialisation, batching and noise.
    """

    latent_dim: int = 16
    hidden_dim: int = 128
    beta: float = 0.05
    num_epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    max_segment_length: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.hidden_dim, self.num_epochs, self.batch_size) < 1:
            raise ValueError("SkillVAETrainConfig sizes and counts must be >= 1")
        if self.beta < 0 or self.learning_rate <= 0 or self.max_segment_length < 1:
            raise ValueError(
                "SkillVAETrainConfig: beta >= 0, learning_rate > 0, max_segment_length >= 1"
            )


def train_skill_vae(
    segments: SegmentSet,
    action: ActionSpec,
    config: SkillVAETrainConfig,
    *,
    observer: Observer | None = None,
) -> SkillVAE:
    """Fit a :class:`SkillVAE` to the segments by minimising the negative ELBO.

    Raises:
        TrainingError: If the loss stops being finite.
    """
    observe = observer or NullObserver()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        vae = SkillVAE(
            SkillVAEConfig(
                obs_dim=segments.obs_dim,
                action=action,
                hidden_dim=config.hidden_dim,
                latent_dim=config.latent_dim,
            )
        )
        optimizer = adam(vae.parameters(), lr=config.learning_rate)
        # --- sort by length so padded batches waste little -------------------------------------
        lengths = np.array([stop - start for _, start, stop in segments.spans])
        order = np.argsort(lengths, kind="stable")
        batches = [
            order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
        ]
        # --- train ------------------------------------------------------------------------------
        for epoch in range(config.num_epochs):
            perm = torch.randperm(len(batches), generator=generator).tolist()
            total = 0.0
            for b in perm:
                feats, acts, mask = segments.padded(batches[b].tolist(), config.max_segment_length)
                loss, _, _ = skill_vae_loss(
                    vae,
                    torch.from_numpy(feats),
                    torch.from_numpy(acts),
                    torch.from_numpy(mask),
                    beta=config.beta,
                    generator=generator,
                )
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"skill VAE loss diverged at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += loss.item() * len(batches[b])
            observe(Event("skill_vae.epoch", {"epoch": epoch, "loss": total / len(order)}))
            logger.debug("skill VAE epoch %d loss %.4f", epoch, total / len(order))
    vae.eval()
    return vae


@torch.no_grad()
def encode_segments(
    vae: SkillVAE, segments: SegmentSet, *, max_segment_length: int = 48, batch_size: int = 256
) -> npt.NDArray[np.float32]:
    """Posterior means (N, Z) of every segment, in order."""
    codes = []
    indices = list(range(segments.num_segments))
    for i in range(0, len(indices), batch_size):
        feats, acts, mask = segments.padded(indices[i : i + batch_size], max_segment_length)
        mu, _ = vae.encode(
            torch.from_numpy(feats),
            vae.config.action.encode(torch.from_numpy(acts)),
            torch.from_numpy(mask),
        )
        codes.append(mu.numpy())
    return np.concatenate(codes).astype(np.float32)


@torch.no_grad()
def decoder_cross_likelihood(
    vae: SkillVAE,
    segments: SegmentSet,
    groups: Sequence[Sequence[int]],
    centres: npt.NDArray[np.float32],
    *,
    max_segment_length: int = 48,
    max_segments: int = 256,
) -> npt.NDArray[np.float64]:
    """How well each group's segments are decoded under each centre's code.

    Args:
        vae: The trained model.
        segments: The segments.
        groups: (K,) lists of segment indices (a cluster each).
        centres: (K, Z) codes to decode with.
        max_segment_length: Segments are cropped to this many steps.
        max_segments: Segments of a group scored (the first ones).

    Returns:
        (K, K) mean per-step action log-likelihood of group j's segments under centre i, [j, i].
    """
    num = len(groups)
    out = np.zeros((num, num))
    z_all = torch.from_numpy(np.asarray(centres, np.float32))
    for j, members in enumerate(groups):
        feats, acts, mask = segments.padded(list(members)[:max_segments], max_segment_length)
        f, a, m = torch.from_numpy(feats), torch.from_numpy(acts), torch.from_numpy(mask)
        for i in range(num):
            z = z_all[i].expand(len(f), -1)  # (B, Z)
            logp = action_log_prob(vae.decode(f, z), a, vae.config.action, vae.log_std)  # (B, T)
            out[j, i] = float((logp * m).sum() / m.sum().clamp(min=1.0))
    return out


def merge_equivalent(cross: npt.NDArray[np.float64], tolerance: float) -> list[int]:
    """Merge clusters that act alike: j joins i when decoding j with i's code loses at most
    ``tolerance`` nats per step, and the other way round. Returns the new group of each cluster.
    """
    num = len(cross)
    parent = list(range(num))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(num):
        for j in range(i + 1, num):
            close_ji = cross[j, i] >= cross[j, j] - tolerance
            close_ij = cross[i, j] >= cross[i, i] - tolerance
            if close_ji and close_ij:
                parent[root(j)] = root(i)
    roots = sorted({root(i) for i in range(num)})
    return [roots.index(root(i)) for i in range(num)]
