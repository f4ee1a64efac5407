"""Flat behavioural cloning: the baseline skillbank is measured against.

One network, no skills: the same observation encoder the agent uses
(:mod:`skillbank.nn.encoders`), an LSTM memory over the episode (as BabyAI 1.1's imitation
learner has, which partially observable levels need: the target may leave the 7×7 view), and an
action head. It is trained on the same demonstrations with the same budget (epochs) as the agent,
by cross-entropy on the demonstrator's actions (discrete) or mean squared error (continuous).

Reference: Hui et al., 2020, "BabyAI 1.1" (flat IL: GoToRedBall 99.3% with 5k demos, GoTo 96.1%
with 10k).

Example:
    >>> result = train_flat_bc(episodes, FlatBCConfig(epochs=20, seed=0))  # doctest: +SKIP
    >>> policy = FlatBCPolicy(result.model)  # doctest: +SKIP
    >>> evaluate_policy(babyai_env_factory("GoToRedBall"), policy, episodes=512,
    ...                 seed=10**9).success_rate  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from skillbank.errors import TrainingError
from skillbank.events import Event, NullObserver, Observer
from skillbank.nn.encoders import (
    BabyAIEncoderConfig,
    EncoderConfig,
    VectorEncoderConfig,
    make_encoder,
    obs_to_tensors,
)
from skillbank.nn.optim import adam
from skillbank.types import COARSE_MAP_KEY, MAP_KEY, Episode

__all__ = [
    "FlatBCConfig",
    "FlatBCNet",
    "FlatBCPolicy",
    "FlatBCResult",
    "count_parameters",
    "encoder_for",
    "flat_bc_parameter_count",
    "match_parameter_count",
    "scale_width",
    "train_flat_bc",
]


@dataclass(frozen=True, slots=True)
class FlatBCConfig:
    """How flat behavioural cloning is trained.

    Attributes:
        encoder: Observation encoder config; ``None`` picks :class:`BabyAIEncoderConfig` for
            episodes with an ``"image"`` and a :class:`VectorEncoderConfig` for ``"obs"``.
        memory_dim: Hidden size of the LSTM memory over the episode (0: no memory, a reactive
            policy).
        num_actions: Discrete actions the head scores; ``None`` infers ``max(action) + 1`` (pass 7
            for BabyAI, whose demos never use some actions). Ignored for continuous actions.
        epochs: Passes over the demonstrations (the training budget).
        max_updates: Optional cap on gradient updates (``None``: no cap).
        episodes_per_batch: Whole episodes per gradient update (the LSTM sees each from step 0,
            as it will at evaluation).
        lr: Peak Adam learning rate (cosine decay to 5% over training, after a short warm-up).
        weight_decay: AdamW weight decay.
        max_grad_norm: Gradient clipping norm.
        entropy_coef: Entropy bonus on the discrete action distribution (BabyAI uses 0.01).
        seed: Seeds weight init and batch order; same seed, same machine, same numbers.
        device: Torch device to train on, e.g. ``"cpu"`` or ``"cuda"``.
        warmup_fraction: Fraction of the updates over which the learning rate warms up.
        max_seconds: Optional time budget of training (``None``: none), on ``budget_clock``.
            Training stops when it is spent, and the learning-rate schedule runs on whichever of
            updates or seconds is further along, so a time-bound run still ends at its low rate.
            Used to give flat BC the agent's training time; the updates it made depend on the
            machine (the result records them).
        budget_clock: What ``max_seconds`` counts: ``"wall"`` (elapsed time) or ``"process"``
            (CPU time of this process, :func:`time.process_time`: on a shared machine it does
            not shrink when other processes load the cores, so two methods timed one after the
            other get the same compute; with one torch thread it is that thread's time).
    """

    encoder: EncoderConfig | None = None
    memory_dim: int = 128
    num_actions: int | None = None
    epochs: int = 20
    max_updates: int | None = None
    episodes_per_batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    entropy_coef: float = 0.01
    seed: int = 0
    device: str = "cpu"
    warmup_fraction: float = 0.02
    max_seconds: float | None = None
    budget_clock: str = "wall"

    def __post_init__(self) -> None:
        checks = {
            "memory_dim": self.memory_dim >= 0,
            "epochs": self.epochs > 0,
            "episodes_per_batch": self.episodes_per_batch > 0,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "max_grad_norm": self.max_grad_norm > 0,
            "entropy_coef": self.entropy_coef >= 0,
            "num_actions": self.num_actions is None or self.num_actions > 0,
            "max_updates": self.max_updates is None or self.max_updates > 0,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "max_seconds": self.max_seconds is None or self.max_seconds > 0,
            "budget_clock": self.budget_clock in ("wall", "process"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"FlatBCConfig.{name} is out of range: {getattr(self, name)!r}")

    def to_json(self) -> dict[str, Any]:
        """Every field, the encoder as its own JSON (``None`` when not yet filled in)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["encoder"] = self.encoder.to_json() if self.encoder is not None else None
        return data


class FlatBCNet(nn.Module):
    """Encoder -> LSTM memory -> action head.

    Args:
        encoder: Observation encoder config.
        memory_dim: LSTM hidden size H (0: none; features go straight to the head).
        num_outputs: Action logits (discrete) or action dims A (continuous).
        discrete: Whether actions are discrete.
    """

    def __init__(
        self, encoder: EncoderConfig, memory_dim: int, num_outputs: int, discrete: bool
    ) -> None:
        super().__init__()
        self.encoder = make_encoder(encoder)
        self.memory_dim = memory_dim
        self.discrete = discrete
        self.memory = (
            nn.LSTM(self.encoder.out_dim, memory_dim, batch_first=True) if memory_dim else None
        )
        head_in = memory_dim or self.encoder.out_dim
        self.head = nn.Sequential(nn.Linear(head_in, 64), nn.Tanh(), nn.Linear(64, num_outputs))

    def forward_sequences(
        self, obs: Mapping[str, Tensor], batch_index: Tensor, time_index: Tensor, num_seqs: int
    ) -> Tensor:
        """Outputs for N steps of ``num_seqs`` episodes, each run from its first step.

        Args:
            obs: name -> (N, ...) observations, all steps of the episodes concatenated.
            batch_index: (N,) which episode each step belongs to.
            time_index: (N,) its step within the episode.
            num_seqs: B, the number of episodes.

        Returns:
            (N, outputs) logits or action means, one row per input step.
        """
        features = self.encoder(obs)  # (N, D)
        if self.memory is None:
            out: Tensor = self.head(features)
            return out
        max_len = int(time_index.max()) + 1
        flat = batch_index * max_len + time_index  # (N,)
        padded = features.new_zeros(num_seqs * max_len, features.shape[1])  # (B*T, D)
        padded = padded.index_copy(0, flat, features).view(num_seqs, max_len, -1)  # (B, T, D)
        hidden, _ = self.memory(padded)  # (B, T, H)
        out = self.head(hidden.reshape(num_seqs * max_len, -1)[flat])  # (N, outputs)
        return out

    def step(
        self, obs: Mapping[str, Tensor], state: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """One step for B parallel episodes: obs (B, ...), state (1, B, H) pair -> (B, outputs)."""
        features = self.encoder(obs)  # (B, D)
        if self.memory is None:
            return self.head(features), None
        hidden, state = self.memory(features[:, None, :], state)  # (B, 1, H)
        return self.head(hidden[:, 0]), state


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def flat_bc_parameter_count(config: FlatBCConfig, num_outputs: int, discrete: bool = True) -> int:
    """Trainable parameters of the network ``config`` builds (on the meta device: no memory,
    no training). ``config.encoder`` must be set."""
    if config.encoder is None:
        raise ValueError("FlatBCConfig.encoder must be set to count parameters")
    with torch.device("meta"):
        model = FlatBCNet(config.encoder, config.memory_dim, num_outputs, discrete)
    return count_parameters(model)


_MAX_WIDTH_STEPS = 160  # 2**(160/16): widths 1024 times smaller or larger at most


def _round_width(value: float, base: int) -> int:
    """Widths scale in multiples of 4 (at least 4), zero stays zero."""
    return 0 if base == 0 else max(4, 4 * round(value / 4))


def scale_width(config: FlatBCConfig, width: float, convolutions: bool = True) -> FlatBCConfig:
    """``config`` with its layer widths (encoder and memory) multiplied by ``width``.

    BabyAI encoders scale the word embedding, mission GRU, output and (with ``convolutions``)
    the cell embedding and CNN channels; vector encoders their hidden layers and output. Depths,
    the vocabulary and the view stay as they are. ``config.encoder`` must be set.
    """
    if width <= 0:
        raise ValueError(f"scale_width: width must be > 0, got {width}")
    encoder = config.encoder
    if encoder is None:
        raise ValueError("FlatBCConfig.encoder must be set to scale its widths")
    if isinstance(encoder, BabyAIEncoderConfig):
        e, conv = encoder, width if convolutions else 1.0
        encoder = dataclasses.replace(
            e,
            out_dim=_round_width(width * e.out_dim, e.out_dim),
            image_embed_dim=_round_width(conv * e.image_embed_dim, e.image_embed_dim),
            conv_channels=_round_width(conv * e.conv_channels, e.conv_channels),
            word_dim=_round_width(width * e.word_dim, e.word_dim),
            mission_dim=_round_width(width * e.mission_dim, e.mission_dim),
        )
    else:
        encoder = dataclasses.replace(
            encoder,
            out_dim=_round_width(width * encoder.out_dim, encoder.out_dim),
            hidden_dims=tuple(_round_width(width * d, d) for d in encoder.hidden_dims),
        )
    memory_dim = _round_width(width * config.memory_dim, config.memory_dim)
    return dataclasses.replace(config, encoder=encoder, memory_dim=memory_dim)


def match_parameter_count(
    config: FlatBCConfig, target: int, num_outputs: int, discrete: bool = True
) -> tuple[FlatBCConfig, int]:
    """The width-scaled ``config`` whose parameter count is nearest ``target`` (log ratio).

    A search over width multipliers 2**(k/16) (widths in multiples of 4), counting parameters
    without training (:func:`flat_bc_parameter_count`); the caller checks the tolerance it needs
    (the returned count over ``target``). The dense widths (encoder output, mission encoder,
    memory) are scaled first and the CNN kept as configured: a conv weight is used at every one
    of the 7x7 cells, a dense one once, so under a fixed training budget parameters placed in
    dense layers cost far less compute per update. Only when that cannot come within 20% of the
    target (e.g. a target below the CNN's own size) are the CNN's widths scaled too.
    ``config.encoder=None`` starts from :class:`BabyAIEncoderConfig`.

    Returns:
        The matched config and its parameter count.

    Example:
        >>> matched, count = match_parameter_count(FlatBCConfig(num_actions=7), 2_000_000, 7)
        >>> 0.8 < count / 2_000_000 < 1.2
        True
    """
    if target < 1:
        raise ValueError(f"match_parameter_count: target must be >= 1, got {target}")
    if config.encoder is None:
        config = dataclasses.replace(config, encoder=BabyAIEncoderConfig())
    # Walk the width multiplier 2**(k/16) from 1 towards the target until the count crosses it
    # (the count grows with the width), keeping the nearest seen.
    best: tuple[float, FlatBCConfig, int] | None = None
    for convolutions in (False, True):
        direction = 0
        for step in range(_MAX_WIDTH_STEPS):
            candidate = scale_width(config, 2 ** (direction * step / 16), convolutions)
            count = flat_bc_parameter_count(candidate, num_outputs, discrete)
            gap = abs(math.log(count / target))
            if best is None or gap < best[0]:
                best = (gap, candidate, count)
            if direction == 0:
                direction = 1 if count < target else -1
            elif (count - target) * direction >= 0:
                break
        if best is not None and abs(best[2] / target - 1) <= 0.2:
            break
    assert best is not None
    return best[1], best[2]


@dataclass(frozen=True, slots=True)
class FlatBCResult:
    """A trained flat BC policy and how training went.

    Attributes:
        model: The trained network (eval mode).
        config: The config it was trained with (encoder filled in).
        num_params: Trainable parameters.
        num_updates: Gradient updates made.
        num_transitions: Demonstrated steps trained on (per epoch).
        losses: Mean training loss per epoch.
        train_seconds: Wall time of training.
        train_cpu_seconds: CPU time of this process during training.
    """

    model: FlatBCNet
    config: FlatBCConfig
    num_params: int
    num_updates: int
    num_transitions: int
    losses: tuple[float, ...]
    train_seconds: float
    train_cpu_seconds: float = 0.0


def _compact(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Store integer arrays in the smallest dtype holding their values (BossLevel has millions
    of steps; int64 grids and missions would not fit in memory)."""
    if np.issubdtype(array.dtype, np.integer) and array.size:
        for dtype in (np.uint8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if array.min() >= info.min and array.max() <= info.max:
                return array.astype(dtype)
    return array


def encoder_for(encoder: EncoderConfig | None, episode: Episode) -> EncoderConfig:
    """The encoder flat BC reads ``episode``'s observations with: ``encoder`` (``None``:
    BabyAI's for grid observations, else a vector encoder), with its map CNN sized to the
    episode's explored map when it has one (:mod:`skillbank.envs.grid_map`), so flat BC reads
    every observation entry the agent reads."""
    observations = episode.observations
    if encoder is None:
        if "image" not in observations:
            obs_dim = int(np.prod(observations["obs"].shape[1:]))
            return VectorEncoderConfig(obs_dim=obs_dim)
        encoder = BabyAIEncoderConfig()
    explored = observations.get(MAP_KEY)
    if isinstance(encoder, BabyAIEncoderConfig) and explored is not None and not encoder.map_size:
        size, planes = int(explored.shape[1]), int(explored.shape[-1])  # (T+1, S, S, P)
        encoder = dataclasses.replace(encoder, map_size=size, map_planes=planes)
    coarse = observations.get(COARSE_MAP_KEY)
    if isinstance(encoder, BabyAIEncoderConfig) and coarse is not None and not encoder.coarse_size:
        size, planes = int(coarse.shape[1]), int(coarse.shape[-1])  # (T+1, Sc, Sc, Pc)
        encoder = dataclasses.replace(encoder, coarse_size=size, coarse_planes=planes)
    return encoder


def train_flat_bc(
    episodes: Sequence[Episode], config: FlatBCConfig, observer: Observer | None = None
) -> FlatBCResult:
    """Train flat behavioural cloning on ``episodes`` (CleanRL-style loop, top to bottom).

    Args:
        episodes: Demonstrations with actions (state-only ones are skipped).
        config: Training settings.
        observer: Receives a ``"flat_bc.epoch"`` event (loss, accuracy) per epoch.

    Raises:
        TrainingError: No episode with actions.
    """
    observer = observer or NullObserver()
    start, start_cpu = time.perf_counter(), time.process_time()

    # --- data: every step of every episode, flat, with episode offsets ---
    demos = [e for e in episodes if e.actions is not None and e.num_steps > 0]
    if not demos:
        raise TrainingError(
            "flat BC got no demonstrations with actions", hint="pass episodes with actions"
        )
    names = sorted(demos[0].observations)
    obs_np = {n: _compact(np.concatenate([e.observations[n][:-1] for e in demos])) for n in names}
    if "mission" in obs_np:  # drop padding columns no mission reaches (BabyAI pads to 72)
        used = int((obs_np["mission"] != 0).any(axis=0).nonzero()[0].max(initial=0)) + 1
        obs_np["mission"] = np.ascontiguousarray(obs_np["mission"][:, :used])
    actions_np = np.concatenate([np.asarray(e.actions) for e in demos])
    lengths = np.array([e.num_steps for e in demos], dtype=np.int64)  # (E,)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (E,)
    discrete = bool(np.issubdtype(actions_np.dtype, np.integer))
    if discrete:
        num_outputs = config.num_actions or int(actions_np.max()) + 1
        if actions_np.min() < 0 or actions_np.max() >= num_outputs:
            raise ValueError(
                f"FlatBCConfig.num_actions={num_outputs} but the demonstrations use actions "
                f"{int(actions_np.min())}..{int(actions_np.max())}"
            )
        actions = torch.from_numpy(actions_np.astype(np.int64))  # (N,)
    else:
        num_outputs = int(np.prod(actions_np.shape[1:]))
        actions = torch.from_numpy(actions_np.reshape(len(actions_np), -1).astype(np.float32))
    encoder_config = encoder_for(config.encoder, demos[0])
    config = dataclasses.replace(config, encoder=encoder_config)

    # --- model and optimiser ---
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    model = FlatBCNet(encoder_config, config.memory_dim, num_outputs, discrete).to(device)
    optimizer = adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, decoupled=True
    )
    batches_per_epoch = math.ceil(len(demos) / config.episodes_per_batch)
    total_updates = config.epochs * batches_per_epoch
    if config.max_updates is not None:
        total_updates = min(total_updates, config.max_updates)
    warmup = max(1, int(config.warmup_fraction * total_updates))

    def elapsed_fraction() -> float:
        """Share of the time budget spent (0 without one)."""
        if config.max_seconds is None:
            return 0.0
        clock = time.process_time() - start_cpu
        if config.budget_clock == "wall":
            clock = time.perf_counter() - start
        return clock / config.max_seconds

    def lr_at(update: int, spent: float) -> float:
        warmed = max(
            (update + 1) / warmup, spent / config.warmup_fraction if config.warmup_fraction else 0.0
        )
        if warmed < 1.0:
            return config.lr * warmed
        progress = max((update - warmup) / max(1, total_updates - warmup), spent)
        return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    # --- training loop ---
    losses: list[float] = []
    update = 0
    model.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(demos))
        epoch_loss, epoch_correct, epoch_steps = 0.0, 0, 0
        for b in range(batches_per_epoch):
            spent = elapsed_fraction()
            if update >= total_updates or spent >= 1.0:
                break
            chosen = order[b * config.episodes_per_batch : (b + 1) * config.episodes_per_batch]
            # Step indices of the chosen episodes, with their episode and time coordinates.
            seq_lengths = lengths[chosen]  # (B,)
            batch_index = np.repeat(np.arange(len(chosen)), seq_lengths)  # (N,)
            time_index = np.arange(len(batch_index)) - np.repeat(
                np.cumsum(seq_lengths) - seq_lengths, seq_lengths
            )  # (N,)
            steps = offsets[chosen][batch_index] + time_index  # (N,)
            obs = obs_to_tensors({n: a[steps] for n, a in obs_np.items()}, device)
            target = actions[steps].to(device)  # (N,) or (N, A)
            out = model.forward_sequences(
                obs,
                torch.from_numpy(batch_index).to(device),
                torch.from_numpy(time_index).to(device),
                len(chosen),
            )  # (N, outputs)
            if discrete:
                log_probs = torch.log_softmax(out, dim=-1)  # (N, A)
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
                loss = nn.functional.nll_loss(log_probs, target) - config.entropy_coef * entropy
                epoch_correct += int((out.argmax(-1) == target).sum())
            else:
                loss = nn.functional.mse_loss(out, target)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(update, spent)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            update += 1
            epoch_loss += loss.item() * len(steps)
            epoch_steps += len(steps)
        if epoch_steps == 0:
            break
        losses.append(epoch_loss / epoch_steps)
        if not math.isfinite(losses[-1]):
            raise TrainingError(f"flat BC loss diverged at epoch {epoch}", hint="lower the lr")
        values = {"epoch": float(epoch), "loss": losses[-1], "updates": float(update)}
        if discrete:
            values["accuracy"] = epoch_correct / epoch_steps
        observer(Event("flat_bc.epoch", values))

    # --- done ---
    model.eval()
    return FlatBCResult(
        model=model,
        config=config,
        num_params=count_parameters(model),
        num_updates=update,
        num_transitions=int(lengths.sum()),
        losses=tuple(losses),
        train_seconds=time.perf_counter() - start,
        train_cpu_seconds=time.process_time() - start_cpu,
    )


class FlatBCPolicy:
    """A trained :class:`FlatBCNet` as a :class:`~skillbank.envs.rollout.BatchPolicy`.

    Greedy (argmax) for discrete actions, the mean for continuous ones; keeps one LSTM state per
    environment slot and zeroes a slot's state when its episode ends.

    Args:
        model: The trained network.
        device: Where to run it (default: where its weights are).
    """

    def __init__(self, model: FlatBCNet, device: str | torch.device | None = None) -> None:
        self.model = model.eval()
        self.device = torch.device(device) if device else next(model.parameters()).device
        self._state: tuple[Tensor, Tensor] | None = None

    def reset(self, num_envs: int) -> None:
        """Zero the memory of all ``num_envs`` slots."""
        self._state = None
        if self.model.memory_dim:
            zeros = torch.zeros(1, num_envs, self.model.memory_dim, device=self.device)
            self._state = (zeros, zeros.clone())

    @torch.no_grad()
    def act(self, obs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """Actions (B,) or (B, A) for observations name -> (B, ...)."""
        out, self._state = self.model.step(obs_to_tensors(obs, self.device), self._state)
        if self.model.discrete:
            return out.argmax(-1).cpu().numpy()
        return out.cpu().numpy()

    def on_done(self, env_indices: npt.NDArray[np.int64]) -> None:
        """Zero the memory of the slots whose episode ended."""
        if self._state is not None:
            index = torch.from_numpy(env_indices).to(self.device)
            for tensor in self._state:
                tensor[:, index] = 0.0
