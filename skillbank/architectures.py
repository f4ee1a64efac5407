"""The allow-list of module architectures a skill may declare.

A stored skill names an ``arch_id`` and a JSON config; this registry turns the pair into the exact
set of tensors (name, shape, dtype) its weights must have. The skill memory checks weights against
it on every write and every pack import, without importing any ``nn.Module``; ``skillbank.nn``
builds the modules from the same config, and a test checks that both agree.

Nothing outside this registry can be loaded, so a pack can never make skillbank run code.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from skillbank.errors import ArchitectureError

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "TensorSpec",
    "batch_norm_tensors",
    "expected_tensors",
    "gru_tensors",
    "int_list",
    "linear",
    "mlp_tensors",
    "positive_int",
    "register",
]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Shape and dtype of one named weight tensor.

    Attributes:
        shape: The tensor's shape.
        dtype: safetensors dtype name, e.g. ``"F32"``.
    """

    shape: tuple[int, ...]
    dtype: str = "F32"


@dataclass(frozen=True, slots=True)
class ArchitectureSpec:
    """One allow-listed architecture.

    Attributes:
        arch_id: Registry id, e.g. ``"mlp-v1"``.
        tensors: Maps a validated config to the tensors its weights must hold; raises
            ``ArchitectureError`` on a bad config.
        description: One line for people.
    """

    arch_id: str
    tensors: Callable[[Mapping[str, Any]], dict[str, TensorSpec]]
    description: str


ARCHITECTURES: dict[str, ArchitectureSpec] = {}


def register(spec: ArchitectureSpec) -> ArchitectureSpec:
    """Add ``spec`` to the allow-list (done at import time by this package only)."""
    if spec.arch_id in ARCHITECTURES:
        raise ValueError(f"architecture {spec.arch_id!r} is already registered")
    ARCHITECTURES[spec.arch_id] = spec
    return spec


def expected_tensors(arch_id: str, config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """Return the tensors that weights of ``arch_id`` with ``config`` must hold.

    Raises:
        ArchitectureError: unknown ``arch_id`` or invalid config.
    """
    spec = ARCHITECTURES.get(arch_id)
    if spec is None:
        known = ", ".join(sorted(ARCHITECTURES)) or "none"
        raise ArchitectureError(
            f"architecture {arch_id!r} is not in the allow-list (known: {known})",
            hint="only architectures registered in skillbank.architectures can be stored",
        )
    return spec.tensors(config)


# --- config helpers -------------------------------------------------------------------------------


def positive_int(config: Mapping[str, Any], field: str, arch_id: str) -> int:
    """Read ``config[field]`` as a positive int, or raise ``ArchitectureError`` naming the field."""
    value = config.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value > 1_000_000:
        raise ArchitectureError(
            f"{arch_id} config field {field!r} must be a positive integer, got {value!r}"
        )
    return value


def int_list(config: Mapping[str, Any], field: str, arch_id: str) -> list[int]:
    """Read ``config[field]`` as a list of positive ints (may be empty)."""
    value = config.get(field)
    if not isinstance(value, list) or len(value) > 64:
        raise ArchitectureError(f"{arch_id} config field {field!r} must be a list of integers")
    return [positive_int({field: v}, field, arch_id) for v in value]


def linear(prefix: str, in_dim: int, out_dim: int) -> dict[str, TensorSpec]:
    """Tensors of ``torch.nn.Linear(in_dim, out_dim)`` stored under ``prefix``."""
    return {
        f"{prefix}.weight": TensorSpec((out_dim, in_dim)),
        f"{prefix}.bias": TensorSpec((out_dim,)),
    }


def mlp_tensors(prefix: str, dims: list[int]) -> dict[str, TensorSpec]:
    """Tensors of an MLP ``nn.Sequential`` of Linear layers at even indices (Linear, act, ...)."""
    tensors: dict[str, TensorSpec] = {}
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        tensors.update(linear(f"{prefix}.{2 * i}", d_in, d_out))
    return tensors


# --- the allow-list -------------------------------------------------------------------------------


def _mlp_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "mlp-v1"
    dims = [
        positive_int(config, "in_dim", arch),
        *int_list(config, "hidden_dims", arch),
        positive_int(config, "out_dim", arch),
    ]
    return mlp_tensors("net", dims)


register(
    ArchitectureSpec(
        arch_id="mlp-v1",
        tensors=_mlp_v1,
        description="MLP in_dim -> hidden_dims (ReLU) -> out_dim",
    )
)


# --- observation encoders (skillbank.nn.encoders) -------------------------------------------------


def _flag(config: Mapping[str, Any], field: str, arch_id: str) -> bool:
    value = config.get(field)
    if not isinstance(value, bool):
        raise ArchitectureError(f"{arch_id} config field {field!r} must be true or false")
    return value


def _count(config: Mapping[str, Any], field: str, arch_id: str) -> int:
    """A non-negative int (0 switches a part off)."""
    if config.get(field) == 0 and not isinstance(config.get(field), bool):
        return 0
    return positive_int(config, field, arch_id)


def _babyai_encoder_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "babyai-encoder-v1"
    out_dim = positive_int(config, "out_dim", arch)
    cell_values = positive_int(config, "cell_values", arch)
    embed = positive_int(config, "image_embed_dim", arch)
    channels = positive_int(config, "conv_channels", arch)
    num_film = _count(config, "num_film", arch)
    direction_dim = _count(config, "direction_dim", arch)
    use_mission = _flag(config, "use_mission", arch)
    batch_norm = _flag(config, "batch_norm", arch)
    tensors: dict[str, TensorSpec] = {
        "image_embedding.weight": TensorSpec((3 * cell_values, embed))
    }
    step = 3 if batch_norm else 2  # Conv2d, [BatchNorm2d,] ReLU per layer
    for layer, in_channels in enumerate((embed, channels)):
        i = layer * step
        tensors[f"image_conv.{i}.weight"] = TensorSpec((channels, in_channels, 3, 3))
        tensors[f"image_conv.{i}.bias"] = TensorSpec((channels,))
        if batch_norm:
            tensors.update(batch_norm_tensors(f"image_conv.{i + 1}", channels))
    if direction_dim:
        tensors["direction_embedding.weight"] = TensorSpec((4, direction_dim))
    mission_dim = 0
    if use_mission:
        vocab = positive_int(config, "vocab_size", arch)
        word_dim = positive_int(config, "word_dim", arch)
        mission_dim = positive_int(config, "mission_dim", arch)
        tensors["word_embedding.weight"] = TensorSpec((vocab, word_dim))
        tensors.update(gru_tensors("mission_rnn", word_dim, mission_dim))
    elif num_film:
        raise ArchitectureError(f"{arch} config field 'num_film' must be 0 without use_mission")
    for i in range(num_film):
        tensors[f"films.{i}.conv.weight"] = TensorSpec((channels, channels, 3, 3))
        tensors[f"films.{i}.conv.bias"] = TensorSpec((channels,))
        tensors.update(linear(f"films.{i}.gamma", mission_dim, channels))
        tensors.update(linear(f"films.{i}.beta", mission_dim, channels))
    pool = config.get("pool")
    if pool not in ("flatten", "max"):
        raise ArchitectureError(f"{arch} config field 'pool' must be 'flatten' or 'max'")
    grid_dim = channels * (positive_int(config, "view_size", arch) ** 2 if pool == "flatten" else 1)
    map_dim = 0
    # configs from before the map (or its coarse view) have no such fields
    for module, size_field, planes_field in (
        ("map_conv", "map_size", "map_planes"),
        ("coarse_conv", "coarse_size", "coarse_planes"),
    ):
        if config.get(size_field, 0):
            size = positive_int(config, size_field, arch)
            planes = positive_int(config, planes_field, arch)
            map_channels = positive_int(config, "map_channels", arch)
            for i, in_channels in ((0, planes), (2, map_channels)):
                tensors[f"{module}.{i}.weight"] = TensorSpec((map_channels, in_channels, 3, 3))
                tensors[f"{module}.{i}.bias"] = TensorSpec((map_channels,))
            map_dim += map_channels * size * size
    tensors.update(linear("out", grid_dim + map_dim + direction_dim + mission_dim, out_dim))
    return tensors


def batch_norm_tensors(prefix: str, channels: int) -> dict[str, TensorSpec]:
    """Tensors (parameters and running statistics) of ``torch.nn.BatchNorm*d(channels)``."""
    return {
        f"{prefix}.weight": TensorSpec((channels,)),
        f"{prefix}.bias": TensorSpec((channels,)),
        f"{prefix}.running_mean": TensorSpec((channels,)),
        f"{prefix}.running_var": TensorSpec((channels,)),
        f"{prefix}.num_batches_tracked": TensorSpec((), "I64"),
    }


def gru_tensors(
    prefix: str, in_dim: int, hidden_dim: int, cell: str = "gru"
) -> dict[str, TensorSpec]:
    """Tensors of a one-layer ``torch.nn.GRU`` (or ``LSTM`` with ``cell="lstm"``) at ``prefix``."""
    gates = {"gru": 3, "lstm": 4}[cell] * hidden_dim
    return {
        f"{prefix}.weight_ih_l0": TensorSpec((gates, in_dim)),
        f"{prefix}.weight_hh_l0": TensorSpec((gates, hidden_dim)),
        f"{prefix}.bias_ih_l0": TensorSpec((gates,)),
        f"{prefix}.bias_hh_l0": TensorSpec((gates,)),
    }


def _vector_encoder_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "vector-encoder-v1"
    in_dim = positive_int(config, "obs_dim", arch)
    tensors: dict[str, TensorSpec] = {}
    if _count(config, "num_tasks", arch):
        task_dim = positive_int(config, "task_dim", arch)
        tensors["task_embedding.weight"] = TensorSpec((config["num_tasks"], task_dim))
        in_dim += task_dim
    dims = [in_dim, *int_list(config, "hidden_dims", arch), positive_int(config, "out_dim", arch)]
    tensors.update(mlp_tensors("net", dims))
    return tensors


register(
    ArchitectureSpec(
        arch_id="babyai-encoder-v1",
        tensors=_babyai_encoder_v1,
        description="BabyAI grid (bag-of-words CNN) + heading + mission GRU with FiLM -> out_dim",
    )
)
register(
    ArchitectureSpec(
        arch_id="vector-encoder-v1",
        tensors=_vector_encoder_v1,
        description="MLP over vector observations (+ task embedding) -> out_dim",
    )
)


# --- procedural-memory agent modules (skillbank.nn.skill_policy / skill_vae / controller) ---------


def _action_size(config: Mapping[str, Any], arch_id: str) -> tuple[str, int]:
    kind = config.get("action_kind")
    if kind not in ("discrete", "continuous"):
        raise ArchitectureError(f"{arch_id} config field 'action_kind' must be discrete|continuous")
    return str(kind), positive_int(config, "action_size", arch_id)


def _hidden_dims(config: Mapping[str, Any], arch_id: str) -> list[int]:
    hidden = int_list(config, "hidden_dims", arch_id)
    if not hidden:
        raise ArchitectureError(f"{arch_id} config field 'hidden_dims' must not be empty")
    return hidden


def _termination_head(config: Mapping[str, Any], arch: str, width: int) -> dict[str, TensorSpec]:
    """The termination head: the last hidden layer, plus ``duration_bins`` one-hots if any."""
    bins = _count(config, "duration_bins", arch) if "duration_bins" in config else 0
    if bins > 16:
        raise ArchitectureError(f"{arch} config field 'duration_bins' must be at most 16")
    return linear("termination_head", width + bins, 1)


def _skill_policy_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "skill-policy-v1"
    kind, actions = _action_size(config, arch)
    hidden = _hidden_dims(config, arch)
    tensors = mlp_tensors("trunk", [positive_int(config, "obs_dim", arch), *hidden])
    tensors.update(linear("action_head", hidden[-1], actions))
    tensors.update(_termination_head(config, arch, hidden[-1]))
    if kind == "continuous":
        tensors["log_std"] = TensorSpec((actions,))
    return tensors


def _skill_policy_v2(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "skill-policy-v2"
    kind, actions = _action_size(config, arch)
    hidden = _hidden_dims(config, arch)
    arg_dim = positive_int(config, "arg_dim", arch)
    tensors = mlp_tensors("trunk", [positive_int(config, "obs_dim", arch) + arg_dim, *hidden])
    tensors.update(linear("film", arg_dim, 2 * hidden[0]))
    tensors.update(linear("action_head", hidden[-1], actions))
    tensors.update(_termination_head(config, arch, hidden[-1]))
    if kind == "continuous":
        tensors["log_std"] = TensorSpec((actions,))
    return tensors


def _skill_vae_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "skill-vae-v1"
    kind, actions = _action_size(config, arch)
    obs = positive_int(config, "obs_dim", arch)
    hidden = positive_int(config, "hidden_dim", arch)
    latent = positive_int(config, "latent_dim", arch)
    tensors = mlp_tensors("step_encoder", [obs + actions, hidden, hidden])
    tensors.update(linear("posterior", 2 * hidden, 2 * latent))
    tensors.update(mlp_tensors("decoder", [obs + latent, hidden, actions]))
    tensors.update(linear("bag_decoder", latent, actions))
    if kind == "continuous":
        tensors["log_std"] = TensorSpec((actions,))
    return tensors


def _skill_controller_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "skill-controller-v1"
    hidden = _hidden_dims(config, arch)
    tensors = mlp_tensors("trunk", [positive_int(config, "obs_dim", arch), *hidden])
    tensors.update(linear("query_head", hidden[-1], positive_int(config, "latent_dim", arch)))
    return tensors


def _skill_controller_v2(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    tensors = _skill_controller_v1(config)
    hidden = int_list(config, "hidden_dims", "skill-controller-v2")
    tensors.update(
        linear("arg_head", hidden[-1], positive_int(config, "arg_dim", "skill-controller-v2"))
    )
    return tensors


register(
    ArchitectureSpec(
        arch_id="skill-policy-v1",
        tensors=_skill_policy_v1,
        description="Skill module: MLP over observation features -> action + termination heads",
    )
)
register(
    ArchitectureSpec(
        arch_id="skill-vae-v1",
        tensors=_skill_vae_v1,
        description="Skill encoder: pooled step MLP -> Gaussian z; decoder (obs, z) -> actions",
    )
)
register(
    ArchitectureSpec(
        arch_id="skill-controller-v1",
        tensors=_skill_controller_v1,
        description="Controller: MLP over observation features -> query over skill keys",
    )
)
register(
    ArchitectureSpec(
        arch_id="skill-policy-v2",
        tensors=_skill_policy_v2,
        description="Parameterised skill: MLP over (features, argument) -> action + termination",
    )
)
register(
    ArchitectureSpec(
        arch_id="skill-controller-v2",
        tensors=_skill_controller_v2,
        description="Controller: MLP over features -> query over skill keys + skill argument",
    )
)


def _segment_replay_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "segment-replay-v1"
    kind, width = _action_size(config, arch)
    obs = positive_int(config, "obs_dim", arch)
    segments = _count(config, "num_segments", arch)
    steps = _count(config, "num_steps", arch)
    actions = TensorSpec((steps,), "I64") if kind == "discrete" else TensorSpec((steps, width))
    return {
        "features": TensorSpec((steps + segments, obs), "F16"),
        "actions": actions,
        "lengths": TensorSpec((segments,), "I64"),
        "skills": TensorSpec((segments,), "I64"),
    }


register(
    ArchitectureSpec(
        arch_id="segment-replay-v1",
        tensors=_segment_replay_v1,
        description="Agent component: bounded replay of earlier segments (features, actions)",
    )
)


def _segment_replay_v2(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """v1 with compact features (constant columns once, 0/1 columns bit-packed, the rest F16)
    and the learn call each segment came from."""
    arch = "segment-replay-v2"
    kind, width = _action_size(config, arch)
    obs = positive_int(config, "obs_dim", arch)
    segments = _count(config, "num_segments", arch)
    steps = _count(config, "num_steps", arch)
    binary = _count(config, "num_binary", arch)
    floats = _count(config, "num_float", arch)
    if binary + floats > obs:
        raise ArchitectureError(f"{arch} config fields 'num_binary' + 'num_float' exceed obs_dim")
    rows = steps + segments  # every step, and the one after each segment's end
    actions = TensorSpec((steps,), "I64") if kind == "discrete" else TensorSpec((steps, width))
    return {
        "column_kinds": TensorSpec((obs,), "U8"),  # 0 constant, 1 binary (0/1), 2 float
        "constants": TensorSpec((obs - binary - floats,)),
        "binary_bits": TensorSpec((rows, (binary + 7) // 8), "U8"),
        "float_values": TensorSpec((rows, floats), "F16"),
        "actions": actions,
        "lengths": TensorSpec((segments,), "I64"),
        "skills": TensorSpec((segments,), "I64"),
        "calls": TensorSpec((segments,), "I64"),
    }


register(
    ArchitectureSpec(
        arch_id="segment-replay-v2",
        tensors=_segment_replay_v2,
        description="Agent component: bounded replay (0/1 feature columns bit-packed, learn calls)",
    )
)


def _segment_replay_v3(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """v2 plus each segment's call history: the skills (indices into ``skill_ids``) of the
    segments before it in its episode, flat, with their count per segment."""
    arch = "segment-replay-v3"
    tensors = _segment_replay_v2(config)
    tensors["history_lengths"] = TensorSpec((_count(config, "num_segments", arch),), "I64")
    tensors["history_skills"] = TensorSpec((_count(config, "num_history", arch),), "I64")
    return tensors


register(
    ArchitectureSpec(
        arch_id="segment-replay-v3",
        tensors=_segment_replay_v3,
        description="Agent component: bounded replay (v2 + each segment's earlier skill calls)",
    )
)


# --- composite skills (skillbank.learning.composite_training) -------------------------------------


def _skill_sequence_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """A skill made of skills: a sub-controller (any ``skill-controller-*`` config, its query
    head giving one query per position of the sequence and its argument head one argument per
    child call) stored under ``controller.``, plus the children's keys and a learned "done" key."""
    arch = "skill-sequence-v1"
    children = config.get("children")
    if (
        not isinstance(children, list)
        or not 1 <= len(children) <= 8
        or not all(isinstance(c, str) and c for c in children)
        or len(set(children)) != len(children)
    ):
        raise ArchitectureError(f"{arch} config field 'children' must list 1-8 distinct skill ids")
    sequence = config.get("sequence")
    if not isinstance(sequence, list) or not 2 <= len(sequence) <= 8:
        raise ArchitectureError(f"{arch} config field 'sequence' must list 2-8 child positions")
    for position in sequence:
        if not isinstance(position, int) or isinstance(position, bool):
            raise ArchitectureError(f"{arch} config field 'sequence' must hold integers")
        if not 0 <= position < len(children):
            raise ArchitectureError(f"{arch} config field 'sequence' indexes past 'children'")
    latent = positive_int(config, "latent_dim", arch)
    controller_arch = config.get("controller_arch")
    controller = config.get("controller")
    if not isinstance(controller_arch, str) or not controller_arch.startswith("skill-controller-"):
        raise ArchitectureError(f"{arch} config field 'controller_arch' must be skill-controller-*")
    if not isinstance(controller, Mapping):
        raise ArchitectureError(f"{arch} config field 'controller' must be an object")
    if controller.get("latent_dim") != (len(sequence) + 1) * latent:
        raise ArchitectureError(
            f"{arch} config field 'controller.latent_dim' must be (len(sequence) + 1) * latent_dim"
        )
    tensors = {
        f"controller.{k}": v for k, v in expected_tensors(controller_arch, controller).items()
    }
    tensors["child_keys"] = TensorSpec((len(children), latent))
    tensors["done_key"] = TensorSpec((latent,))
    return tensors


register(
    ArchitectureSpec(
        arch_id="skill-sequence-v1",
        tensors=_skill_sequence_v1,
        description="Composite skill: sub-controller picks children (keys + done key), arguments",
    )
)


# --- grid trunk (skillbank.nn.grid_trunk): skills and controller with a CNN over grid slices ----


def _grid_trunk_tensors(
    config: Mapping[str, Any], arch_id: str, obs_dim: int
) -> tuple[dict[str, TensorSpec], int, int]:
    """Tensors of the ``grid`` trunk at ``config["grid_trunk"]``, its output width and FiLM width.

    The FiLM width is that of ``arg_film: "grid"`` (2 * first channels * grids), 0 for ``"mlp"``,
    first channels * grids for ``"pointer"`` (which adds a 1x1 cell embedding per grid and one
    input channel, the score map, to the first convolution).
    """
    trunk = config.get("grid_trunk")
    if not isinstance(trunk, Mapping):
        raise ArchitectureError(f"{arch_id} config field 'grid_trunk' must be an object")
    channels = int_list(trunk, "conv_channels", arch_id)
    kernel = positive_int(trunk, "kernel_size", arch_id)
    grids = trunk.get("grids")
    readers, reader_dim, film_width, token_spans = _token_reader_tensors(trunk, arch_id)
    if not channels or not isinstance(grids, list) or not (grids or readers) or len(grids) > 16:
        raise ArchitectureError(
            f"{arch_id} config field 'grid_trunk' needs 1-16 'grids' (or 'tokens') and "
            "non-empty 'conv_channels'"
        )
    film = trunk.get("arg_film", "mlp")
    if film not in ("mlp", "grid", "pointer"):
        raise ArchitectureError(
            f"{arch_id} config field 'grid_trunk.arg_film' must be mlp|grid|pointer"
        )
    padding = (kernel - 1) // 2
    tensors: dict[str, TensorSpec] = dict(readers)
    keep = isinstance(trunk.get("tokens"), Mapping) and trunk["tokens"].get("keep") is True
    covered = 0 if keep else sum(b - a for a, b in token_spans)
    out_dim = reader_dim
    spans: list[tuple[int, int]] = list(token_spans)
    for g, grid in enumerate(grids):
        if not isinstance(grid, Mapping):
            raise ArchitectureError(f"{arch_id} config field 'grid_trunk.grids' must hold objects")
        offset = _count(grid, "offset", arch_id)
        height, width = positive_int(grid, "height", arch_id), positive_int(grid, "width", arch_id)
        prev = positive_int(grid, "channels", arch_id)
        size = height * width * prev
        spans.append((offset, offset + size))
        covered += size
        if film == "pointer":
            tensors[f"grid.pointers.{g}.weight"] = TensorSpec((channels[0], prev, 1, 1))
            tensors[f"grid.pointers.{g}.bias"] = TensorSpec((channels[0],))
            prev += 1  # the score map
        for layer, out in enumerate(channels):
            tensors[f"grid.convs.{g}.{2 * layer}.weight"] = TensorSpec((out, prev, kernel, kernel))
            tensors[f"grid.convs.{g}.{2 * layer}.bias"] = TensorSpec((out,))
            height, width, prev = (
                height + 2 * padding - kernel + 1,
                width + 2 * padding - kernel + 1,
                out,
            )
        if min(height, width) < 1:
            raise ArchitectureError(f"{arch_id}: grid {g} vanishes under its convolutions")
        out_dim += channels[-1] * height * width
        if film_width:
            tensors.update(linear(f"grid.token_films.{g}", film_width, 2 * sum(channels)))
    for span in trunk.get("skip", []):  # ranges the module does not read (e.g. a map)
        if not (isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)):
            raise ArchitectureError(f"{arch_id} config field 'grid_trunk.skip' holds [start, stop]")
        if not 0 <= span[0] < span[1]:
            raise ArchitectureError(f"{arch_id} config field 'grid_trunk.skip' has {span}")
        spans.append((span[0], span[1]))
        covered += span[1] - span[0]
    spans.sort()
    if spans[-1][1] > obs_dim or any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        raise ArchitectureError(f"{arch_id}: grid slices overlap or reach past obs_dim {obs_dim}")
    film_dim = {"mlp": 0, "grid": 2 * channels[0], "pointer": channels[0]}[film] * len(grids)
    return tensors, out_dim + obs_dim - covered, film_dim


def _token_reader_tensors(
    trunk: Mapping[str, Any], arch_id: str
) -> tuple[dict[str, TensorSpec], int, int, list[tuple[int, int]]]:
    """Tensors of the token readers at ``trunk["tokens"]`` (skillbank.nn.grid_trunk.TokenReader),
    their output width, the token FiLM's input width (0: no FiLM) and the feature ranges the
    readers consume; nothing without ``"tokens"``."""
    tokens = trunk.get("tokens")
    if tokens is None:
        return {}, 0, 0, []
    slices = tokens.get("slices") if isinstance(tokens, Mapping) else None
    if not isinstance(slices, list) or not slices or len(slices) > 16:
        raise ArchitectureError(f"{arch_id} config field 'grid_trunk.tokens' needs 1-16 'slices'")
    embed = positive_int(tokens, "embed_dim", arch_id)
    dim = positive_int(tokens, "dim", arch_id)
    tensors: dict[str, TensorSpec] = {}
    spans: list[tuple[int, int]] = []
    for i, piece in enumerate(slices):
        if not isinstance(piece, Mapping):
            raise ArchitectureError(f"{arch_id} config field 'grid_trunk.tokens' must hold objects")
        vocab = positive_int(piece, "vocab", arch_id)
        start = _count(piece, "offset", arch_id) + vocab
        spans.append((start, start + vocab * positive_int(piece, "positions", arch_id)))
        tensors[f"grid.readers.{i}.embed.weight"] = TensorSpec((embed, vocab))
        tensors.update(gru_tensors(f"grid.readers.{i}.gru", embed, dim))
    film = _flag(tokens, "film", arch_id) if "film" in tokens else False
    return tensors, dim * len(slices), dim * len(slices) if film else 0, spans


def _skill_policy_v3(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "skill-policy-v3"
    kind, actions = _action_size(config, arch)
    hidden = _hidden_dims(config, arch)
    arg_dim = _count(config, "arg_dim", arch) if "arg_dim" in config else 0
    obs_dim = positive_int(config, "obs_dim", arch)
    tensors, in_dim, grid_film = _grid_trunk_tensors(config, arch, obs_dim)
    tensors.update(mlp_tensors("trunk", [in_dim + arg_dim, *hidden]))
    if arg_dim:
        tensors.update(linear("film", arg_dim, grid_film or 2 * hidden[0]))
    tensors.update(linear("action_head", hidden[-1], actions))
    tensors.update(_termination_head(config, arch, hidden[-1]))
    if kind == "continuous":
        tensors["log_std"] = TensorSpec((actions,))
    return tensors


def _skill_controller_v3(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "skill-controller-v3"
    hidden = _hidden_dims(config, arch)
    tensors, in_dim, _ = _grid_trunk_tensors(config, arch, positive_int(config, "obs_dim", arch))
    tensors.update(mlp_tensors("trunk", [in_dim, *hidden]))
    tensors.update(linear("query_head", hidden[-1], positive_int(config, "latent_dim", arch)))
    if "arg_dim" in config and _count(config, "arg_dim", arch):
        tensors.update(linear("arg_head", hidden[-1], positive_int(config, "arg_dim", arch)))
    return tensors


register(
    ArchitectureSpec(
        arch_id="skill-policy-v3",
        tensors=_skill_policy_v3,
        description="Skill: CNN over grid slices + MLP over (features, argument) -> action + stop",
    )
)
register(
    ArchitectureSpec(
        arch_id="skill-controller-v3",
        tensors=_skill_controller_v3,
        description="Controller: CNN over grid slices + MLP -> query over skill keys (+ argument)",
    )
)


# --- hindsight targets (skillbank.nn.controller.TargetSpec): the argument names a cell content --


def _skill_controller_target_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    arch = "skill-controller-target-v1"
    hidden = _hidden_dims(config, arch)
    obs_dim = positive_int(config, "obs_dim", arch)
    target = config.get("target")
    if not isinstance(target, Mapping) or not isinstance(target.get("grid"), Mapping):
        raise ArchitectureError(f"{arch} config field 'target' must be an object with a 'grid'")
    grid = target["grid"]
    channels = positive_int(grid, "channels", arch)
    cells = positive_int(grid, "height", arch) * positive_int(grid, "width", arch)
    if _count(grid, "offset", arch) + cells * channels > obs_dim:
        raise ArchitectureError(f"{arch} config field 'target.grid' reaches past obs_dim")
    if not 0 <= _count(target, "cell", arch) < cells:
        raise ArchitectureError(f"{arch} config field 'target.cell' is outside the grid")
    if sum(int_list(target, "groups", arch)) != channels:
        raise ArchitectureError(f"{arch} config field 'target.groups' must sum to channels")
    if "arg_dim" in config and _count(config, "arg_dim", arch) != channels:
        raise ArchitectureError(f"{arch} config field 'arg_dim' must equal target channels")
    if "grid_trunk" in config:
        tensors, in_dim, _ = _grid_trunk_tensors(config, arch, obs_dim)
    else:
        tensors, in_dim = {}, obs_dim
    tensors.update(mlp_tensors("trunk", [in_dim, *hidden]))
    tensors.update(linear("query_head", hidden[-1], positive_int(config, "latent_dim", arch)))
    tensors.update(linear("target_head", hidden[-1], channels))
    return tensors


def _token_copy_tensors(
    config: Mapping[str, Any], field: str, prefix: str, groups: list[int], arch: str
) -> dict[str, TensorSpec]:
    """Tensors of a skillbank.nn.token_copy.TokenCopyHead over the token slice ``config[field]``
    with one attention head per one-hot group of sizes ``groups`` or, with ``copy_window`` W > 0,
    one anchor pointer and a value table per offset -W .. +W, and with ``copy_context`` L > 0 its
    L self-attention layers over the tokens (torch.nn.TransformerEncoderLayer, feed-forward
    width twice ``copy_dim``)."""
    tokens = config.get(field)
    if not isinstance(tokens, Mapping):
        raise ArchitectureError(f"{arch} config field {field!r} must be an object")
    vocab, positions = positive_int(tokens, "vocab", arch), positive_int(tokens, "positions", arch)
    end = _count(tokens, "offset", arch) + vocab * (1 + positions)
    if end > positive_int(config, "obs_dim", arch):
        raise ArchitectureError(f"{arch} config field {field!r} reaches past obs_dim")
    dim = positive_int(config, "copy_dim", arch)
    window = _count(config, "copy_window", arch) if "copy_window" in config else 0
    hidden = _hidden_dims(config, arch)
    tensors = {
        f"{prefix}.token_embed.weight": TensorSpec((dim, vocab)),
        f"{prefix}.position_embed": TensorSpec((positions, dim)),
        f"{prefix}.values.weight": TensorSpec(((2 * window + 1) * sum(groups), vocab)),
    }
    pointers = 1 if window else len(groups)
    tensors.update(linear(f"{prefix}.query", hidden[-1], dim * pointers))
    layers = _count(config, "copy_context", arch) if "copy_context" in config else 0
    for layer in range(layers):
        tensors.update(_context_layer_tensors(f"{prefix}.context.{layer}", dim))
    return tensors


def _context_layer_tensors(prefix: str, dim: int) -> dict[str, TensorSpec]:
    """Tensors of one torch.nn.TransformerEncoderLayer of width ``dim`` (feed-forward 2 dim)."""
    tensors = {
        f"{prefix}.self_attn.in_proj_weight": TensorSpec((3 * dim, dim)),
        f"{prefix}.self_attn.in_proj_bias": TensorSpec((3 * dim,)),
    }
    tensors.update(linear(f"{prefix}.self_attn.out_proj", dim, dim))
    tensors.update(linear(f"{prefix}.linear1", dim, 2 * dim))
    tensors.update(linear(f"{prefix}.linear2", 2 * dim, dim))
    for norm in ("norm1", "norm2"):
        tensors[f"{prefix}.{norm}.weight"] = TensorSpec((dim,))
        tensors[f"{prefix}.{norm}.bias"] = TensorSpec((dim,))
    return tensors


def _skill_controller_target_v2(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """target-v1 whose target head reads the query (a prior per chosen skill), plus a copy head
    over a token sequence (skillbank.nn.token_copy)."""
    arch = "skill-controller-target-v2"
    tensors = _skill_controller_target_v1(config)
    groups = int_list(config["target"], "groups", arch)
    latent = positive_int(config, "latent_dim", arch)
    tensors.update(linear("target_head", latent, sum(groups)))
    tensors.update(_token_copy_tensors(config, "target_tokens", "target_copy", groups, arch))
    return tensors


register(
    ArchitectureSpec(
        arch_id="skill-controller-target-v1",
        tensors=_skill_controller_target_v1,
        description="Controller: (CNN +) MLP -> query over skill keys + target cell content",
    )
)
register(
    ArchitectureSpec(
        arch_id="skill-controller-target-v2",
        tensors=_skill_controller_target_v2,
        description="Controller target-v1 + a copy head reading the target off the task's tokens",
    )
)


def _target_v2_needing(
    field: str, arch: str
) -> Callable[[Mapping[str, Any]], dict[str, TensorSpec]]:
    """target-v2's tensors for an id that exists for one positive config ``field``."""

    def tensors(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
        positive_int(config, field, arch)
        return _skill_controller_target_v2(config)

    return tensors


register(
    ArchitectureSpec(
        arch_id="skill-controller-target-v3",
        # one anchor pointer, a value table per offset -W .. +W (copy_window W > 0)
        tensors=_target_v2_needing("copy_window", "skill-controller-target-v3"),
        description="Controller target-v2 whose copy head reads one phrase (copy_window)",
    )
)
register(
    ArchitectureSpec(
        arch_id="skill-controller-target-v4",
        # copy_context L > 0 self-attention layers over the tokens before the pointers' keys
        # (a copy_window may come with them)
        tensors=_target_v2_needing("copy_context", "skill-controller-target-v4"),
        description="Controller target-v2/v3 whose copy head's keys read the tokens' context",
    )
)


# --- call history (skillbank.nn.controller.history_features): what the episode has called so far -


def _skill_controller_history_v1(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """Any controller (v1/v2/v3/target-v1 by its fields) whose trunk also reads the call history,
    2 * ``history_skills`` + 1 inputs joined after the grid trunk (or the flat features)."""
    arch = "skill-controller-history-v1"
    history = 2 * positive_int(config, "history_skills", arch) + 1
    if "target_tokens" in config:
        tensors = _skill_controller_target_v2(config)
    elif "target" in config:
        tensors = _skill_controller_target_v1(config)
    elif "grid_trunk" in config:
        tensors = _skill_controller_v3(config)
    elif "arg_dim" in config and _count(config, "arg_dim", arch):
        tensors = _skill_controller_v2(config)
    else:
        tensors = _skill_controller_v1(config)
    return _widen_trunk_input(tensors, history)


def _widen_trunk_input(tensors: dict[str, TensorSpec], extra: int) -> dict[str, TensorSpec]:
    """``tensors`` with the trunk's first layer reading ``extra`` more inputs."""
    hidden, inputs = tensors["trunk.0.weight"].shape
    tensors.update(linear("trunk.0", inputs + extra, hidden))
    return tensors


register(
    ArchitectureSpec(
        arch_id="skill-controller-history-v1",
        tensors=_skill_controller_history_v1,
        description="Controller (any trunk and heads) that also reads the episode's call history",
    )
)


def _skill_controller_history_v2(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """history-v1 of a target controller whose history also holds, per skill, the targets of
    its finished calls (``history_skills`` x target channels more inputs) and/or what the agent
    has held (``held_cell``: target channels more inputs)."""
    arch = "skill-controller-history-v2"
    targets, held = config.get("history_targets") is True, config.get("held_cell") is not None
    if not (targets or held) or "target" not in config:
        raise ArchitectureError(
            f"{arch} needs 'history_targets': true or a 'held_cell', and a 'target'"
        )
    channels = positive_int(config, "arg_dim", arch)
    skills = positive_int(config, "history_skills", arch) if targets else 0
    extra = skills * channels + (channels if held else 0)
    return _widen_trunk_input(_skill_controller_history_v1(config), extra)


register(
    ArchitectureSpec(
        arch_id="skill-controller-history-v2",
        tensors=_skill_controller_history_v2,
        description="Controller history-v1 whose history also holds the targets each skill got",
    )
)


def _skill_controller_history_v3(config: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """history-v2 with a copy head (``target_tokens``) whose pointers also read the history's
    targets / held blocks (``copy_done``): a weight per pointer and block."""
    arch = "skill-controller-history-v3"
    if config.get("copy_done") is not True or "target_tokens" not in config:
        raise ArchitectureError(f"{arch} needs 'copy_done': true and 'target_tokens'")
    tensors = _skill_controller_history_v2(config)
    skills = positive_int(config, "history_skills", arch)
    blocks = (skills if config.get("history_targets") is True else 0) + (
        1 if config.get("held_cell") is not None else 0
    )
    groups = int_list(config["target"], "groups", arch)
    window = _count(config, "copy_window", arch) if "copy_window" in config else 0
    tensors["target_copy.done_weight"] = TensorSpec((1 if window else len(groups), blocks))
    return tensors


register(
    ArchitectureSpec(
        arch_id="skill-controller-history-v3",
        tensors=_skill_controller_history_v3,
        description="Controller history-v2 whose copy head also reads what is done",
    )
)
