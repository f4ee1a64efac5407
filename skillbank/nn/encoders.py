"""Observation encoders: one interface for grid worlds with language and for vector observations.

Every encoder maps a mapping of named observation tensors (a batch) to one feature vector per
example, ``forward(obs) -> (B, D)`` with ``D == encoder.out_dim``, and is rebuilt from a frozen
config dataclass whose ``to_json()`` is stored beside the weights (``arch_config`` of a skill).

- :class:`BabyAIEncoder` reads ``"image"`` (B, 7, 7, 3) integer grid cells (object, colour, state
  ids), ``"direction"`` (B,) and ``"mission"`` (B, L) token ids. It follows BabyAI 1.1 (Hui et al.,
  2020, "BabyAI 1.1"): a bag-of-words embedding of each cell's three categorical ids, a small
  batch-normalised CNN, FiLM layers (Perez et al., 2018) conditioning the grid features on a GRU
  encoding of the mission, then the grid flattened (default; keeps where things are, which
  imitation from few demos needs) or max-pooled (BabyAI 1.1's choice). Optionally it also reads
  an explored map ``"map"`` (B, S, S, P) bool through a second small CNN.
- :class:`VectorEncoder` reads ``"obs"`` (B, O) float features (and, optionally, ``"task"`` (B,)
  task ids) through an MLP.

The tensors each config produces are registered in :mod:`skillbank.architectures` under
``"babyai-encoder-v1"`` and ``"vector-encoder-v1"``; a test checks module and registry agree.

Example:
    >>> config = VectorEncoderConfig(obs_dim=39, hidden_dims=(64,), out_dim=32)
    >>> encoder = make_encoder(config)
    >>> encoder({"obs": torch.zeros(5, 39)}).shape
    torch.Size([5, 32])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from skillbank.errors import ArchitectureError
from skillbank.types import COARSE_MAP_KEY, MAP_KEY

__all__ = [
    "BABYAI_VOCAB_SIZE",
    "BabyAIEncoder",
    "BabyAIEncoderConfig",
    "EncoderConfig",
    "ObservationEncoder",
    "VectorEncoder",
    "VectorEncoderConfig",
    "encoder_config_from_json",
    "make_encoder",
    "obs_to_tensors",
]

BABYAI_VOCAB_SIZE = 35
"""Token ids of the BabyAI mission vocabulary (``skillbank.envs.babyai_vocab.VOCAB_SIZE``; nn may
not import envs, so a test checks the two agree)."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# --- configs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BabyAIEncoderConfig:
    """Configuration of :class:`BabyAIEncoder`.

    Attributes:
        out_dim: D, the size of the feature vector returned.
        cell_values: Ids per cell channel (object, colour, state); larger ids are clipped.
        image_embed_dim: Size of each cell's bag-of-words embedding.
        conv_channels: C, channels of the grid CNN and FiLM layers.
        num_film: FiLM layers conditioning the grid on the mission (0 for none).
        direction_dim: Size of the heading embedding (0 to ignore the heading).
        use_mission: Read ``"mission"`` tokens; a mission-agnostic encoder (e.g. for a skill that
            gets its argument elsewhere) sets this False and must have ``num_film == 0``.
        vocab_size: Number of mission token ids.
        word_dim: Size of each token embedding.
        mission_dim: Size of the mission encoding (the GRU's hidden state).
        pool: How the (C, V, V) grid features become a vector: ``"flatten"`` keeps where things
            are (much faster to learn from few demos: GoToRedBall reaches 90% action accuracy
            on 150 demos where a max-pool stays at the majority action), ``"max"`` is BabyAI
            1.1's max-pool over the grid.
        view_size: V, the side of the agent's square view (BabyAI: 7).
        batch_norm: Batch-normalise the grid CNN, as BabyAI does; without it, imitation on few
            demos sits at the majority action for many epochs.
        map_size: S, the side of an explored-map observation ``"map"`` (B, S, S, P) bool
            (:mod:`skillbank.envs.grid_map`) read by a second small CNN (two 3x3 convolutions,
            flattened); 0: no map.
        map_planes: P, the map's planes (with ``map_size``).
        map_channels: Channels of the map CNN.
        coarse_size: Sc, the side of the map's coarse view ``"map_coarse"`` (B, Sc, Sc, Pc) bool,
            read by a third CNN like the map's; 0: none.
        coarse_planes: Pc, the coarse view's planes (with ``coarse_size``).
    """

    kind: ClassVar[str] = "babyai"
    arch_id: ClassVar[str] = "babyai-encoder-v1"

    out_dim: int = 128
    cell_values: int = 16
    image_embed_dim: int = 64
    conv_channels: int = 64
    num_film: int = 2
    direction_dim: int = 8
    use_mission: bool = True
    vocab_size: int = BABYAI_VOCAB_SIZE
    word_dim: int = 32
    mission_dim: int = 64
    pool: str = "flatten"
    view_size: int = 7
    batch_norm: bool = True
    map_size: int = 0
    map_planes: int = 0
    map_channels: int = 16
    coarse_size: int = 0
    coarse_planes: int = 0

    def __post_init__(self) -> None:
        _check(self.pool in ("flatten", "max"), "BabyAIEncoderConfig.pool must be flatten or max")
        for name in (
            "view_size",
            "out_dim",
            "cell_values",
            "image_embed_dim",
            "conv_channels",
            "vocab_size",
        ):
            _check(getattr(self, name) > 0, f"BabyAIEncoderConfig.{name} must be positive")
        _check(
            (self.map_size > 0) == (self.map_planes > 0) and self.map_channels > 0,
            "BabyAIEncoderConfig.map_size and .map_planes must both be 0 or both positive",
        )
        _check(
            (self.coarse_size > 0) == (self.coarse_planes > 0),
            "BabyAIEncoderConfig.coarse_size and .coarse_planes must both be 0 or both positive",
        )
        for name in ("num_film", "direction_dim", "word_dim", "mission_dim"):
            _check(getattr(self, name) >= 0, f"BabyAIEncoderConfig.{name} must be >= 0")
        if self.use_mission:
            _check(
                self.word_dim > 0 and self.mission_dim > 0,
                "BabyAIEncoderConfig.word_dim and .mission_dim must be positive with use_mission",
            )
        else:
            _check(self.num_film == 0, "BabyAIEncoderConfig.num_film must be 0 without use_mission")

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (with ``"kind"``) that :func:`encoder_config_from_json` reads back."""
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BabyAIEncoderConfig:
        """Rebuild from :meth:`to_json` output."""
        return cls(**_fields(cls, data))


@dataclass(frozen=True, slots=True)
class VectorEncoderConfig:
    """Configuration of :class:`VectorEncoder`.

    Attributes:
        obs_dim: O, the size of ``"obs"``.
        hidden_dims: Hidden layer sizes of the MLP (ReLU).
        out_dim: D, the size of the feature vector returned.
        num_tasks: Task ids read from ``"task"`` (B,) and embedded; 0 to ignore tasks.
        task_dim: Size of the task embedding (used only when ``num_tasks > 0``).
    """

    kind: ClassVar[str] = "vector"
    arch_id: ClassVar[str] = "vector-encoder-v1"

    obs_dim: int
    hidden_dims: tuple[int, ...] = (256, 256)
    out_dim: int = 128
    num_tasks: int = 0
    task_dim: int = 16

    def __post_init__(self) -> None:
        _check(self.obs_dim > 0, "VectorEncoderConfig.obs_dim must be positive")
        _check(self.out_dim > 0, "VectorEncoderConfig.out_dim must be positive")
        _check(all(d > 0 for d in self.hidden_dims), "VectorEncoderConfig.hidden_dims must be > 0")
        _check(self.num_tasks >= 0, "VectorEncoderConfig.num_tasks must be >= 0")
        _check(self.task_dim > 0, "VectorEncoderConfig.task_dim must be positive")
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (with ``"kind"``) that :func:`encoder_config_from_json` reads back."""
        data = asdict(self)
        data["hidden_dims"] = list(self.hidden_dims)
        return {"kind": self.kind, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VectorEncoderConfig:
        """Rebuild from :meth:`to_json` output."""
        fields = _fields(cls, data)
        if "hidden_dims" in fields:
            fields["hidden_dims"] = tuple(fields["hidden_dims"])
        return cls(**fields)


EncoderConfig = BabyAIEncoderConfig | VectorEncoderConfig
"""Any encoder config."""


def _fields(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known - {"kind"}
    if unknown:
        raise ArchitectureError(
            f"{cls.__name__}: unknown config fields {sorted(unknown)}",
            hint=f"known fields: {sorted(known)}",
        )
    return {k: v for k, v in data.items() if k != "kind"}


def encoder_config_from_json(data: Mapping[str, Any]) -> EncoderConfig:
    """Rebuild an encoder config from its ``to_json()`` dict, dispatching on ``"kind"``.

    Raises:
        ArchitectureError: Unknown kind or fields.
    """
    kind = data.get("kind")
    for cls in (BabyAIEncoderConfig, VectorEncoderConfig):
        if kind == cls.kind:
            return cls.from_json(data)
    raise ArchitectureError(
        f"encoder config kind {kind!r} is unknown", hint="kinds: 'babyai', 'vector'"
    )


# --- modules --------------------------------------------------------------------------------------


class ObservationEncoder(nn.Module):
    """Base of every encoder: ``forward(obs) -> (B, D)`` features, ``D == out_dim``."""

    config: EncoderConfig

    @property
    def out_dim(self) -> int:
        """D, the feature size."""
        return self.config.out_dim

    @property
    def arch_id(self) -> str:
        """The architecture id its weights are registered under."""
        return self.config.arch_id

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        """Encode a batch of observations into (B, D) features."""
        raise NotImplementedError


class _FiLMBlock(nn.Module):
    """Residual FiLM: ``x + relu(gamma(m) * conv(x) + beta(m))``."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.gamma = nn.Linear(cond_dim, channels)
        self.beta = nn.Linear(cond_dim, channels)
        # Start close to the identity modulation so early training sees the plain CNN.
        nn.init.zeros_(self.gamma.weight)
        nn.init.ones_(self.gamma.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x: (B, C, H, W), cond: (B, M) -> (B, C, H, W)."""
        gamma = self.gamma(cond)[:, :, None, None]  # (B, C, 1, 1)
        beta = self.beta(cond)[:, :, None, None]  # (B, C, 1, 1)
        return x + torch.relu(gamma * self.conv(x) + beta)


def _map_cnn(planes: int, channels: int) -> nn.Sequential:
    """Two 3x3 convolutions (same padding) over a (B, planes, S, S) map."""
    return nn.Sequential(
        nn.Conv2d(planes, channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(),
    )


class BabyAIEncoder(ObservationEncoder):
    """BabyAI grid + heading + mission encoder (BabyAI 1.1's bag-of-words CNN with FiLM).

    Reads ``"image"`` (B, 7, 7, 3) integer ids, ``"direction"`` (B,) int and, with
    ``use_mission``, ``"mission"`` (B, L) token ids (0 is padding). Returns (B, D).
    """

    config: BabyAIEncoderConfig
    _cell_offsets: Tensor

    def __init__(self, config: BabyAIEncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.image_embedding = nn.Embedding(3 * c.cell_values, c.image_embed_dim)
        conv: list[nn.Module] = []
        for in_channels in (c.image_embed_dim, c.conv_channels):
            conv.append(nn.Conv2d(in_channels, c.conv_channels, kernel_size=3, padding=1))
            if c.batch_norm:
                conv.append(nn.BatchNorm2d(c.conv_channels))
            conv.append(nn.ReLU())
        self.image_conv = nn.Sequential(*conv)
        self.register_buffer(
            "_cell_offsets", torch.arange(3, dtype=torch.long) * c.cell_values, persistent=False
        )
        if c.direction_dim:
            self.direction_embedding = nn.Embedding(4, c.direction_dim)
        if c.use_mission:
            self.word_embedding = nn.Embedding(c.vocab_size, c.word_dim, padding_idx=0)
            self.mission_rnn = nn.GRU(c.word_dim, c.mission_dim, batch_first=True)
        self.films = nn.ModuleList(
            _FiLMBlock(c.conv_channels, c.mission_dim) for _ in range(c.num_film)
        )
        mission_dim = c.mission_dim if c.use_mission else 0
        grid_dim = c.conv_channels * (c.view_size**2 if c.pool == "flatten" else 1)
        map_dim = c.map_channels * (c.map_size**2 + c.coarse_size**2)
        if c.map_size:
            self.map_conv = _map_cnn(c.map_planes, c.map_channels)
        if c.coarse_size:
            self.coarse_conv = _map_cnn(c.coarse_planes, c.map_channels)
        self.out = nn.Linear(grid_dim + map_dim + c.direction_dim + mission_dim, c.out_dim)

    def encode_mission(self, mission: Tensor) -> Tensor:
        """mission: (B, L) token ids -> (B, M), the GRU state after the last non-pad token."""
        lengths = (mission != 0).sum(dim=1).clamp(min=1)  # (B,)
        max_len = int(lengths.max())
        words = self.word_embedding(mission[:, :max_len].long())  # (B, L', W)
        outputs, _ = self.mission_rnn(words)  # (B, L', M)
        index = (lengths - 1)[:, None, None].expand(-1, 1, outputs.shape[-1])  # (B, 1, M)
        last: Tensor = outputs.gather(1, index).squeeze(1)  # (B, M)
        return last

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        """Encode (B, V, V, 3) grids, (B,) headings and (B, L) missions into (B, D)."""
        c = self.config
        image = obs["image"].long().clamp(0, c.cell_values - 1)  # (B, H, W, 3)
        cells = self.image_embedding(image + self._cell_offsets).sum(dim=3)  # (B, H, W, E)
        x = self.image_conv(cells.permute(0, 3, 1, 2))  # (B, C, H, W)
        parts: list[Tensor] = []
        if c.use_mission:
            mission = self.encode_mission(obs["mission"])  # (B, M)
            for film in self.films:
                x = film(x, mission)  # (B, C, H, W)
        parts.append(x.flatten(1) if c.pool == "flatten" else x.amax(dim=(2, 3)))  # (B, C*V*V)
        if c.map_size:
            explored = obs[MAP_KEY].float().permute(0, 3, 1, 2)  # (B, P, S, S)
            parts.append(self.map_conv(explored).flatten(1))  # (B, C_map * S * S)
        if c.coarse_size:
            coarse = obs[COARSE_MAP_KEY].float().permute(0, 3, 1, 2)  # (B, Pc, Sc, Sc)
            parts.append(self.coarse_conv(coarse).flatten(1))
        if c.direction_dim:
            parts.append(self.direction_embedding(obs["direction"].long().reshape(-1) % 4))
        if c.use_mission:
            parts.append(mission)
        return torch.relu(self.out(torch.cat(parts, dim=1)))  # (B, D)


class VectorEncoder(ObservationEncoder):
    """MLP over ``"obs"`` (B, O) float features, plus an embedding of ``"task"`` (B,) if asked."""

    config: VectorEncoderConfig

    def __init__(self, config: VectorEncoderConfig) -> None:
        super().__init__()
        self.config = config
        in_dim = config.obs_dim
        if config.num_tasks:
            self.task_embedding = nn.Embedding(config.num_tasks, config.task_dim)
            in_dim += config.task_dim
        layers: list[nn.Module] = []
        for dim in (*config.hidden_dims, config.out_dim):
            layers += [nn.Linear(in_dim, dim), nn.ReLU()]
            in_dim = dim
        self.net = nn.Sequential(*layers)

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        """Encode (B, O) features (and (B,) task ids) into (B, D)."""
        x = obs["obs"].float()  # (B, O)
        if self.config.num_tasks:
            x = torch.cat([x, self.task_embedding(obs["task"].long().reshape(-1))], dim=1)
        out: Tensor = self.net(x)  # (B, D)
        return out


def make_encoder(config: EncoderConfig | Mapping[str, Any]) -> ObservationEncoder:
    """Build the encoder a config (or its ``to_json()`` dict) describes.

    Example:
        >>> make_encoder({"kind": "vector", "obs_dim": 4}).out_dim
        128
    """
    if not isinstance(config, BabyAIEncoderConfig | VectorEncoderConfig):
        config = encoder_config_from_json(config)
    if isinstance(config, BabyAIEncoderConfig):
        return BabyAIEncoder(config)
    return VectorEncoder(config)


def obs_to_tensors(
    batch: Mapping[str, npt.NDArray[Any]], device: torch.device | str | None = None
) -> dict[str, Tensor]:
    """Convert a batch of NumPy observations into tensors an encoder reads.

    Integer and uint8 arrays (grids, headings, token ids, task ids) become int64; floating and
    bool arrays become float32. Each array keeps its shape, (B, ...).
    """
    tensors: dict[str, Tensor] = {}
    for name, array in batch.items():
        arr = np.asarray(array)
        if np.issubdtype(arr.dtype, np.integer):
            tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        tensors[name] = tensor.to(device) if device is not None else tensor
    return tensors
