"""A small CNN over the grid-shaped slices of a flat feature vector (the "grid trunk").

Observation features reach every module as one flat vector (B, O) (see
:class:`skillbank.learning.features.ObservationFeaturizer`). Some of its slices are grids: an
integer (H, W, C) entry one-hot encoded per cell is ``H * W * sum(cards)`` features laid out
cell by cell. A :class:`GridSlice` says where such a slice lies; :class:`GridTrunk` reshapes each
one to (B, C, H, W), runs a few convolutions (ReLU), flattens the result (keeping where things
are, as BabyAI 1.1's "flat" variant; Hui et al., 2020) and concatenates it with the remaining
features. An MLP follows in the module that owns the trunk (skill or controller).

A :class:`TokenSlice` says where a token sequence lies (e.g. a BabyAI mission: a bag of tokens,
then one one-hot of V ids per position). With token slices in the spec the trunk also reads each
sequence with a GRU over its embedded positions (a :class:`TokenReader`, as BabyAI 1.1's mission
GRU) and appends the final state (a "mission vector") to its output; optionally that vector
FiLM-modulates every convolution of the grid CNN (Perez et al., 2018; BabyAI 1.1). A spec may
hold token slices and no grid (a controller without the CNN still reads its mission).

The layout is part of the owner's JSON config, so a module stored in the skill memory is rebuilt
with the same trunk in a fresh process.

Example:
    >>> spec = GridTrunkSpec(grids=(GridSlice(offset=0, height=3, width=3, channels=2),))
    >>> trunk = GridTrunk(obs_dim=20, spec=spec)
    >>> tuple(trunk(torch.zeros(4, 20)).shape) == (4, trunk.out_dim)
    True
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "GridSlice",
    "GridTrunk",
    "GridTrunkSpec",
    "StackedGridTrunks",
    "TokenReader",
    "TokenSlice",
    "conv_output_size",
]


@dataclass(frozen=True, slots=True)
class GridSlice:
    """Where one grid lies in the flat features: ``features[offset : offset + size]``.

    The slice holds H * W cells, row-major, each with C features (its one-hot channels).

    Attributes:
        offset: First feature of the slice.
        height: H, rows.
        width: W, columns.
        channels: C, features per cell.
        groups: How the C features of a cell split into one-hot groups (one per channel of the
            integer grid, e.g. BabyAI's object type, colour and state), summing to C; empty:
            unknown. Layout metadata only: not stored in module configs, not compared.
    """

    offset: int
    height: int
    width: int
    channels: int
    groups: tuple[int, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ValueError(f"GridSlice.offset must be >= 0, got {self.offset}")
        if min(self.height, self.width, self.channels) < 1:
            raise ValueError("GridSlice.height, .width and .channels must be >= 1")
        if self.groups and (min(self.groups) < 1 or sum(self.groups) != self.channels):
            raise ValueError(
                f"GridSlice.groups {self.groups} must be positive and sum to channels "
                f"{self.channels}"
            )

    @property
    def size(self) -> int:
        """Features in the slice: H * W * C."""
        return self.height * self.width * self.channels

    def cell_start(self, cell: int) -> int:
        """First feature of ``cell`` (row-major index) in the flat features."""
        return self.offset + cell * self.channels

    def to_json(self) -> dict[str, int]:
        """The slice as stored in a module config."""
        return {
            "offset": self.offset,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GridSlice:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            int(data["offset"]), int(data["height"]), int(data["width"]), int(data["channels"])
        )


@dataclass(frozen=True, slots=True)
class TokenSlice:
    """Where one token sequence lies in the flat features (the layout of a ``"tokens"`` entry of
    :class:`~skillbank.learning.features.ObservationFeaturizer`): a bag of the tokens (V
    features) at ``offset``, then the one-hot token (V features) of each of P positions.

    Attributes:
        offset: First feature of the entry (its bag).
        vocab: V, token ids (id 0, padding, is all zeros).
        positions: P, positions encoded one-hot.
    """

    offset: int
    vocab: int
    positions: int

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ValueError(f"TokenSlice.offset must be >= 0, got {self.offset}")
        if min(self.vocab, self.positions) < 1:
            raise ValueError("TokenSlice.vocab and .positions must be >= 1")

    @property
    def size(self) -> int:
        """Features of the whole entry: V * (1 + P)."""
        return self.vocab * (1 + self.positions)

    @property
    def start(self) -> int:
        """First feature of the positions (the reader's input; the bag is not read)."""
        return self.offset + self.vocab

    @property
    def end(self) -> int:
        """One past the last feature of the entry."""
        return self.offset + self.size

    def to_json(self) -> dict[str, int]:
        """The slice as stored in a module config."""
        return {"offset": self.offset, "vocab": self.vocab, "positions": self.positions}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenSlice:
        """Rebuild from :meth:`to_json` output."""
        return cls(int(data["offset"]), int(data["vocab"]), int(data["positions"]))


def conv_output_size(size: int, kernel_size: int, num_layers: int) -> int:
    """Side of a grid after ``num_layers`` convolutions padded by ``(kernel_size - 1) // 2``.

    Odd kernels keep the size; a 2x2 kernel shrinks it by one per layer.
    """
    padding = (kernel_size - 1) // 2
    for _ in range(num_layers):
        size = size + 2 * padding - kernel_size + 1
    return size


@dataclass(frozen=True, slots=True)
class GridTrunkSpec:
    """The grid trunk of a module: which slices are grids and the CNN run on each.

    Attributes:
        grids: The grid slices, in the order their features are concatenated (non-overlapping).
        conv_channels: Output channels of each convolution (ReLU after each).
        kernel_size: Side of the square kernels (odd: size-preserving padding).
        arg_film: Where the module's argument, if any, modulates: ``"mlp"`` (the first MLP layer,
            as ``skill-policy-v2``) or ``"grid"`` (the first convolution's channels, the same
            modulation at every cell, so the later convolutions, shared by every cell, can
            compute "is the object the argument names here" as a feature map; FiLM as in
            Perez et al., 2018); or ``"pointer"``: the argument is a query (C_first per grid)
            scored against a learned embedding of every cell (a 1x1 convolution), and the score
            map (H, W) enters the first convolution as one more input channel, so "the cell the
            argument names" is one dot product per cell rather than something the convolutions
            must learn to compute from a channel modulation.
        tokens: Token sequences read by a :class:`TokenReader` each (their positions leave the
            passed-through features; their bags stay); empty: none (the spec then needs a grid).
        token_embed_dim: W, the embedding of each token (a bias-free linear map of its one-hot).
        token_dim: M, the GRU state, one mission vector per token slice.
        token_film: The mission vectors FiLM-modulate every convolution of every grid
            ((gamma, beta) per channel from one linear map of the concatenated vectors).
        token_keep: The positions' one-hots also pass through (the reader adds its vector to
            what the module saw without it, rather than replacing them).
        skip: [start, stop) feature ranges the module does not read at all (e.g. a skill skips
            the agent's explored map, which its controller reads); empty: none.
    """

    grids: tuple[GridSlice, ...]
    conv_channels: tuple[int, ...] = (16, 16)
    kernel_size: int = 3
    arg_film: str = "mlp"
    tokens: tuple[TokenSlice, ...] = ()
    token_embed_dim: int = 32
    token_dim: int = 64
    token_film: bool = False
    token_keep: bool = False
    skip: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if any(not 0 <= start < stop for start, stop in self.skip):
            raise ValueError(f"GridTrunkSpec.skip ranges must be 0 <= start < stop: {self.skip}")
        if not self.grids and not self.tokens:
            raise ValueError(
                "GridTrunkSpec needs at least one GridSlice in .grids or TokenSlice in .tokens"
            )
        spans = sorted(self._layout)
        if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
            raise ValueError("GridTrunkSpec.grids and .tokens must not overlap")
        if min(self.token_embed_dim, self.token_dim) < 1:
            raise ValueError("GridTrunkSpec.token_embed_dim and .token_dim must be >= 1")
        if self.token_film and not (self.tokens and self.grids):
            raise ValueError("GridTrunkSpec.token_film needs both .tokens and .grids")
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ValueError("GridTrunkSpec.conv_channels must be positive (at least one)")
        if self.kernel_size < 1:
            raise ValueError(f"GridTrunkSpec.kernel_size must be >= 1, got {self.kernel_size}")
        for g in self.grids:
            out = conv_output_size(
                min(g.height, g.width), self.kernel_size, len(self.conv_channels)
            )
            if out < 1:
                raise ValueError(
                    f"GridTrunkSpec: a {g.height}x{g.width} grid vanishes under "
                    f"{len(self.conv_channels)} convolutions of kernel {self.kernel_size}"
                )
        if self.arg_film not in ("mlp", "grid", "pointer"):
            raise ValueError(
                f"GridTrunkSpec.arg_film must be 'mlp', 'grid' or 'pointer', got {self.arg_film!r}"
            )

    @property
    def _layout(self) -> tuple[tuple[int, int], ...]:
        """The [start, stop) feature ranges of every grid, every token slice's positions and
        every skipped range."""
        grids = tuple((g.offset, g.offset + g.size) for g in self.grids)
        return grids + tuple((t.start, t.end) for t in self.tokens) + self.skip

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """The [start, stop) feature ranges the trunk consumes (not passed through): every grid,
        every skipped range, and the positions of every token slice unless ``token_keep``."""
        if self.token_keep:
            return self._layout[: len(self.grids)] + self.skip
        return self._layout

    @property
    def end(self) -> int:
        """One past the last feature any grid or token slice uses (the owner's obs_dim must
        reach it)."""
        return max(stop for _, stop in self._layout)

    def grid_out_dim(self, grid: GridSlice) -> int:
        """Features one grid contributes after the CNN: C_last * H' * W'."""
        layers = len(self.conv_channels)
        return (
            self.conv_channels[-1]
            * conv_output_size(grid.height, self.kernel_size, layers)
            * conv_output_size(grid.width, self.kernel_size, layers)
        )

    def out_dim(self, obs_dim: int) -> int:
        """Width of the trunk's output for ``obs_dim`` input features."""
        rest = obs_dim - sum(stop - start for start, stop in self.spans)
        grids = sum(self.grid_out_dim(g) for g in self.grids)
        return grids + rest + self.token_dim * len(self.tokens)

    def film_dim(self) -> int:
        """Width of the argument's projection: (gamma, beta) per first-layer channel per grid
        (``"grid"``), or a query of C_first per grid (``"pointer"``)."""
        per_grid = (
            self.conv_channels[0] if self.arg_film == "pointer" else 2 * self.conv_channels[0]
        )
        return per_grid * len(self.grids)

    @property
    def pointer(self) -> bool:
        """The argument points at cells (a score map as an extra first-conv input channel)."""
        return self.arg_film == "pointer"

    def to_json(self) -> dict[str, Any]:
        """The spec as stored in a module config (``"tokens"`` and ``"skip"`` only when there are
        token slices or skipped ranges, so specs without them store exactly what they did
        before)."""
        data: dict[str, Any] = {
            "grids": [g.to_json() for g in self.grids],
            "conv_channels": list(self.conv_channels),
            "kernel_size": self.kernel_size,
            "arg_film": self.arg_film,
        }
        if self.skip:
            data["skip"] = [list(span) for span in self.skip]
        if self.tokens:
            data["tokens"] = {
                "slices": [t.to_json() for t in self.tokens],
                "embed_dim": self.token_embed_dim,
                "dim": self.token_dim,
                "film": self.token_film,
                "keep": self.token_keep,
            }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GridTrunkSpec:
        """Rebuild from :meth:`to_json` output."""
        tokens = data.get("tokens")
        extra: dict[str, Any] = {}
        if tokens is not None:
            extra = {
                "tokens": tuple(TokenSlice.from_json(t) for t in tokens["slices"]),
                "token_embed_dim": int(tokens["embed_dim"]),
                "token_dim": int(tokens["dim"]),
                "token_film": bool(tokens["film"]),
                "token_keep": bool(tokens.get("keep", False)),
            }
        return cls(
            grids=tuple(GridSlice.from_json(g) for g in data["grids"]),
            conv_channels=tuple(int(c) for c in data["conv_channels"]),
            kernel_size=int(data["kernel_size"]),
            arg_film=str(data.get("arg_film", "mlp")),
            skip=tuple((int(a), int(b)) for a, b in data.get("skip", [])),
            **extra,
        )


def _rest_ranges(obs_dim: int, spans: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """The [start, stop) feature ranges no span covers, in order."""
    ranges, position = [], 0
    for start, stop in sorted(spans):
        if start > position:
            ranges.append((position, start))
        position = stop
    if position < obs_dim:
        ranges.append((position, obs_dim))
    return ranges


def _grid_image(features: torch.Tensor, grid: GridSlice) -> torch.Tensor:
    """One grid of features (B, O) as an image (B, C, H, W)."""
    cells = features[:, grid.offset : grid.offset + grid.size]  # (B, H * W * C)
    return cells.reshape(-1, grid.height, grid.width, grid.channels).permute(0, 3, 1, 2)


def _gather_ranges(features: torch.Tensor, ranges: list[tuple[int, int]]) -> torch.Tensor:
    """The features (B, R) in ``ranges`` (from :func:`_rest_ranges`), in order."""
    parts = [features[:, a:b] for a, b in ranges]
    return torch.cat(parts, dim=1) if parts else features[:, :0]


class TokenReader(nn.Module):
    """One token sequence of the flat features -> a mission vector: the positions' one-hots
    embedded (bias-free linear, so padding embeds as zeros), a GRU over them, and its state at
    the last non-padding position (trailing padding never moves it).

    Args:
        tokens: Where the sequence lies.
        embed_dim: W, the token embedding.
        dim: M, the GRU state.
    """

    def __init__(self, tokens: TokenSlice, embed_dim: int, dim: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.embed = nn.Linear(tokens.vocab, embed_dim, bias=False)
        self.gru = nn.GRU(embed_dim, dim, batch_first=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, O) -> mission vectors (B, M)."""
        t = self.tokens
        one_hot = features[:, t.start : t.end].reshape(-1, t.positions, t.vocab)  # (B, P, V)
        length = (one_hot.sum(-1) > 0).sum(-1)  # (B,)
        # the GRU runs only as far as the longest sequence of the batch (it is sequential on
        # CPU: BossLevel's 32 positions cost ~3x its 12); later states are never read
        steps = max(1, int(length.max())) if len(length) else 1
        states: torch.Tensor = self.gru(self.embed(one_hot[:, :steps]))[0]  # (B, P', M)
        last = (length - 1).clamp(min=0)  # (B,)
        return states[torch.arange(len(states)), last]  # (B, M)


class GridTrunk(nn.Module):
    """Flat features (B, O) -> grid CNN features and the other features (B, F).

    Output order: each grid's flattened (C_last, H', W') features in ``spec.grids`` order, then
    the features outside every grid and token positions in their original order, then the
    mission vector (M) of each token slice in ``spec.tokens`` order.

    Args:
        obs_dim: O, input features.
        spec: The grid slices and the CNN.
    """

    def __init__(self, obs_dim: int, spec: GridTrunkSpec) -> None:
        super().__init__()
        if spec.end > obs_dim:
            raise ValueError(f"GridTrunk: a grid reaches feature {spec.end}, obs_dim is {obs_dim}")
        self.obs_dim = obs_dim
        self.spec = spec
        self.out_dim = spec.out_dim(obs_dim)
        self.rest = _rest_ranges(obs_dim, spec.spans)
        padding = (spec.kernel_size - 1) // 2
        convs = []
        pointers = []
        for grid in spec.grids:
            layers: list[nn.Module] = []
            prev = grid.channels + (1 if spec.pointer else 0)
            if spec.pointer:
                pointers.append(nn.Conv2d(grid.channels, spec.conv_channels[0], 1))
            for width in spec.conv_channels:
                layers += [nn.Conv2d(prev, width, spec.kernel_size, padding=padding), nn.ReLU()]
                prev = width
            convs.append(nn.Sequential(*layers))
        self.convs = nn.ModuleList(convs)
        self.pointers = nn.ModuleList(pointers)  # per grid, cell embeddings (pointer only)
        self.readers = nn.ModuleList(
            TokenReader(t, spec.token_embed_dim, spec.token_dim) for t in spec.tokens
        )
        # token FiLM: per grid, (gamma, beta) of every conv layer from the mission vectors
        films = []
        if spec.token_film:
            for _ in spec.grids:
                film = nn.Linear(spec.token_dim * len(spec.tokens), 2 * sum(spec.conv_channels))
                nn.init.zeros_(film.weight)  # starts as no modulation
                nn.init.zeros_(film.bias)
                films.append(film)
        self.token_films = nn.ModuleList(films)

    def conv_layers(self, index: int) -> list[nn.Conv2d]:
        """The convolutions of grid ``index``, first to last."""
        return [m for m in self.convs[index].children() if isinstance(m, nn.Conv2d)]

    def pointer_conv(self, index: int) -> nn.Conv2d:
        """The cell embedding (1x1 convolution) of grid ``index`` (``"pointer"`` only)."""
        conv = self.pointers[index]
        assert isinstance(conv, nn.Conv2d)
        return conv

    def grid_input(self, features: torch.Tensor, index: int) -> torch.Tensor:
        """Grid ``index`` of features (B, O) as an image (B, C, H, W)."""
        return _grid_image(features, self.spec.grids[index])

    def rest_features(self, features: torch.Tensor) -> torch.Tensor:
        """The features (B, R) outside every grid."""
        return _gather_ranges(features, self.rest)

    def read_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """The mission vectors of features (B, O), concatenated: (B, M * len(spec.tokens))."""
        parts = [reader(features) for reader in self.readers]
        return torch.cat(parts, dim=1) if parts else features[:, :0]

    def forward(self, features: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        """Features (B, O) -> (B, F); ``film`` (B, 2 * C_first * G) modulates the first convs."""
        mission = self.read_tokens(features)  # (B, M * len(tokens))
        outs = []
        for index in range(len(self.convs)):
            hidden = self.grid_input(features, index)  # (B, C, H, W)
            if self.spec.pointer:
                hidden = torch.cat([hidden, self._score_map(hidden, film, index)], dim=1)
            token_film = (
                self.token_films[index](mission).split(
                    [2 * c for c in self.spec.conv_channels], dim=-1
                )
                if self.spec.token_film
                else None
            )  # per layer (B, 2 * C_l)
            for layer, conv in enumerate(self.conv_layers(index)):
                hidden = conv(hidden)  # (B, C_l, H_l, W_l)
                if film is not None and layer == 0 and not self.spec.pointer:
                    width = self.spec.conv_channels[0]
                    part = film[:, 2 * width * index : 2 * width * (index + 1)]
                    gamma, beta = part.chunk(2, dim=-1)  # (B, C_first) each
                    hidden = hidden * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
                if token_film is not None:
                    gamma, beta = token_film[layer].chunk(2, dim=-1)  # (B, C_l) each
                    hidden = hidden * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
                hidden = torch.relu(hidden)
            outs.append(hidden.flatten(1))  # (B, C_last * H' * W')
        outs.append(self.rest_features(features))
        outs.append(mission)
        return torch.cat(outs, dim=1)

    def _score_map(
        self, image: torch.Tensor, film: torch.Tensor | None, index: int
    ) -> torch.Tensor:
        """How well each cell of grid ``index`` (B, C, H, W) matches the argument's query in
        ``film`` (B, C_first * G): (B, 1, H, W); zeros without an argument."""
        if film is None:
            return image.new_zeros(image.shape[0], 1, *image.shape[2:])
        width = self.spec.conv_channels[0]
        query = film[:, width * index : width * (index + 1)]  # (B, P)
        cells = self.pointer_conv(index)(image)  # (B, P, H, W)
        return torch.einsum("bphw,bp->bhw", cells, query).unsqueeze(1)


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None
    return conv.bias.detach()


class StackedGridTrunks(nn.Module):
    """N grid trunks of one spec run together: one convolution per layer for all N.

    The first convolution of every trunk reads the same image, so their kernels are concatenated
    along the output channels; later layers are grouped convolutions (``groups=N``), each group
    one trunk's channels.

    Args:
        trunks: The trunks, all with the same ``obs_dim`` and spec.
    """

    def __init__(self, trunks: Sequence[GridTrunk]) -> None:
        super().__init__()
        if not trunks:
            raise ValueError("StackedGridTrunks needs at least one GridTrunk")
        first = trunks[0]
        if any(t.spec != first.spec or t.obs_dim != first.obs_dim for t in trunks):
            raise ValueError("StackedGridTrunks: every trunk must share one obs_dim and spec")
        if first.spec.tokens or not first.spec.grids:
            raise ValueError(
                "StackedGridTrunks: token readers are not stacked (skills have none); "
                "hint: run a trunk with GridTrunkSpec.tokens on its own"
            )
        self.spec = first.spec
        self.rest = first.rest
        self.num_trunks = len(trunks)
        self.padding = (first.spec.kernel_size - 1) // 2
        self.weights: list[list[torch.Tensor]] = []  # per grid, per layer (N * C_out, C_in, k, k)
        self.biases: list[list[torch.Tensor]] = []  # per grid, per layer (N * C_out,)
        # pointer: per grid, the first conv's kernels on the score map (N * C_out, 1, k, k) and
        # the cell embeddings (N * P, C, 1, 1), (N * P,)
        self.map_weights: list[torch.Tensor] = []
        self.pointer_weights: list[torch.Tensor] = []
        self.pointer_biases: list[torch.Tensor] = []
        for index, grid in enumerate(self.spec.grids):
            convs = [t.conv_layers(index) for t in trunks]  # per trunk, per layer
            layers = range(len(self.spec.conv_channels))
            self.weights.append([torch.cat([c[i].weight.detach() for c in convs]) for i in layers])
            self.biases.append([torch.cat([_bias(c[i]) for c in convs]) for i in layers])
            if self.spec.pointer:
                kernels = self.weights[-1][0]  # (N * C_out, C + 1, k, k)
                self.weights[-1][0] = kernels[:, : grid.channels].contiguous()
                self.map_weights.append(kernels[:, grid.channels :].contiguous())
                embeds = [t.pointer_conv(index) for t in trunks]
                self.pointer_weights.append(torch.cat([e.weight.detach() for e in embeds]))
                self.pointer_biases.append(torch.cat([_bias(e) for e in embeds]))

    @torch.no_grad()
    def forward(
        self, features: torch.Tensor, film: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, O) -> every trunk's grid features (B, N, F_grid) and the features outside
        the grids (B, R), shared by all (kept apart: no N copies of them); film
        (N, B, 2 * C_first * G) modulates the first convs."""
        n, batch = self.num_trunks, features.shape[0]
        width = self.spec.conv_channels[0]
        outs = []
        for index, g in enumerate(self.spec.grids):
            hidden = _grid_image(features, g)  # (B, C, H, W)
            for layer, (weight, bias) in enumerate(
                zip(self.weights[index], self.biases[index], strict=True)
            ):
                groups = 1 if layer == 0 else n
                image = hidden
                hidden = nn.functional.conv2d(
                    hidden, weight, bias, padding=self.padding, groups=groups
                )  # (B, N * C_l, H_l, W_l)
                if self.spec.pointer and film is not None and layer == 0:
                    score = self._score_maps(image, film, index)  # (B, N, H, W)
                    hidden = hidden + nn.functional.conv2d(
                        score, self.map_weights[index], padding=self.padding, groups=n
                    )
                elif film is not None and layer == 0:
                    part = film[:, :, 2 * width * index : 2 * width * (index + 1)]
                    gamma, beta = part.permute(1, 0, 2).chunk(2, dim=-1)  # (B, N, C_first) each
                    shaped = hidden.reshape(batch, n, width, *hidden.shape[2:])  # (B, N, C, H, W)
                    shaped = shaped * (1 + gamma[..., None, None]) + beta[..., None, None]
                    hidden = shaped.reshape(hidden.shape)
                hidden = torch.relu(hidden)
            outs.append(hidden.reshape(batch, n, -1))  # (B, N, C * H' * W')
        grid = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)  # (B, N, F_grid)
        return grid, _gather_ranges(features, self.rest)

    def _score_maps(self, image: torch.Tensor, film: torch.Tensor, index: int) -> torch.Tensor:
        """Every trunk's score map of grid ``index`` (B, C, H, W) against its query in film
        (N, B, C_first * G): (B, N, H, W)."""
        n, batch = self.num_trunks, image.shape[0]
        width = self.spec.conv_channels[0]
        cells = nn.functional.conv2d(
            image, self.pointer_weights[index], self.pointer_biases[index]
        )  # (B, N * P, H, W)
        cells = cells.reshape(batch, n, width, *image.shape[2:])  # (B, N, P, H, W)
        query = film[:, :, width * index : width * (index + 1)].permute(1, 0, 2)  # (B, N, P)
        return torch.einsum("bnphw,bnp->bnhw", cells, query)
