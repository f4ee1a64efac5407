"""Parse and validate a safetensors file without trusting it.

A safetensors file is ``u64 little-endian N`` + ``N`` bytes of JSON header + a data buffer. The
header maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
relative to the start of the data buffer) plus an optional ``"__metadata__"`` string map.

Every check here runs on bytes already in memory and before any array is built: the size prefix is
bounded, the JSON is strict (no duplicate keys, no NaN constants), every dtype is known, every
tensor's byte span matches its shape, the spans tile the data buffer exactly (contiguous, no gap,
no overlap, nothing past the end), the tensors equal what the architecture registry expects for the
config, and every value is finite. A failure raises :class:`~skillbank.errors.PackError` naming the
file and the problem.

Example:
    >>> from safetensors.numpy import save
    >>> import numpy as np
    >>> blob = save({"w": np.zeros((2, 3), dtype=np.float32)})
    >>> header = parse_header(blob, name="w.safetensors")
    >>> header.tensors["w"].shape
    (2, 3)
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.architectures import expected_tensors
from skillbank.errors import ArchitectureError, PackError
from skillbank.memory.pack_manifest import reject_json_constant, unique_json_object

__all__ = [
    "DTYPE_SIZES",
    "NUMPY_DTYPES",
    "SafetensorsHeader",
    "SafetensorsLimits",
    "TensorEntry",
    "decode_tensors",
    "parse_header",
    "validate_weights",
]

#: Byte size of every safetensors dtype this checker knows; any other dtype is refused.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}

#: The dtypes that decode to NumPy arrays (little-endian on disk).
NUMPY_DTYPES: dict[str, str] = {
    "BOOL": "|b1",
    "U8": "|u1",
    "I8": "|i1",
    "I16": "<i2",
    "U16": "<u2",
    "F16": "<f2",
    "I32": "<i4",
    "U32": "<u4",
    "F32": "<f4",
    "I64": "<i8",
    "U64": "<u8",
    "F64": "<f8",
}

_MAX_NDIM = 8
_MAX_TENSORS = 100_000


@dataclass(frozen=True, slots=True)
class SafetensorsLimits:
    """Size limits applied before anything is parsed.

    Attributes:
        max_header_bytes: Largest JSON header accepted (the ``N`` of the prefix).
        max_file_bytes: Largest whole file accepted.
    """

    max_header_bytes: int = 100 * 1024 * 1024
    max_file_bytes: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_header_bytes <= 0:
            raise ValueError("SafetensorsLimits.max_header_bytes must be positive")
        if self.max_file_bytes <= 8:
            raise ValueError("SafetensorsLimits.max_file_bytes must be larger than 8")


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor as the header declares it (already checked for internal consistency).

    Attributes:
        dtype: safetensors dtype name, e.g. ``"F32"``.
        shape: The tensor's shape.
        begin: First byte of the tensor in the data buffer.
        end: One past its last byte.
    """

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_SIZES:
            raise ValueError(f"TensorEntry.dtype {self.dtype!r} is not a known dtype")
        if not 0 <= self.begin <= self.end:
            raise ValueError("TensorEntry offsets must satisfy 0 <= begin <= end")


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """A validated safetensors header.

    Attributes:
        tensors: name -> entry, in file order.
        metadata: The ``__metadata__`` string map (empty when absent).
        data_start: Offset in the file at which the data buffer starts (8 + N).
    """

    tensors: Mapping[str, TensorEntry]
    metadata: Mapping[str, str] = field(default_factory=dict)
    data_start: int = 8


def _fail(name: str, problem: str) -> PackError:
    return PackError(f"{name}: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(name: str, tensor: str, raw: Any) -> TensorEntry:
    where = f"tensor {tensor!r}"
    if not isinstance(raw, dict) or set(raw) != {"dtype", "shape", "data_offsets"}:
        raise _fail(name, f"{where} must be an object with exactly dtype, shape, data_offsets")
    dtype, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise _fail(name, f"{where} has unknown dtype {dtype!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(_is_int(d) and 0 <= d < 2**40 for d in shape)
    ):
        raise _fail(name, f"{where} has a malformed shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_int, offsets)):
        raise _fail(name, f"{where} has malformed data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise _fail(name, f"{where} has data_offsets {offsets} out of order or negative")
    num_bytes = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != num_bytes:
        raise _fail(
            name,
            f"{where} spans {end - begin} bytes but dtype {dtype} shape {shape} needs {num_bytes}",
        )
    return TensorEntry(dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def parse_header(
    data: bytes, *, name: str, limits: SafetensorsLimits | None = None
) -> SafetensorsHeader:
    """Parse and check the header of the safetensors file ``data`` (the whole file's bytes).

    Args:
        data: The file's bytes.
        name: How to name the file in errors (e.g. its path inside a pack).
        limits: Size limits; defaults to :class:`SafetensorsLimits` ().

    Raises:
        PackError: the file is oversized, its header is malformed, or the byte spans of its
            tensors do not tile the data buffer exactly.
    """
    limits = limits or SafetensorsLimits()
    if len(data) > limits.max_file_bytes:
        raise _fail(name, f"file of {len(data)} bytes exceeds the limit of {limits.max_file_bytes}")
    if len(data) < 8:
        raise _fail(name, "too short to hold the 8-byte safetensors header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > limits.max_header_bytes:
        raise _fail(
            name, f"header length {header_len} exceeds the limit of {limits.max_header_bytes}"
        )
    if 8 + header_len > len(data):
        raise _fail(name, f"header length {header_len} runs past the end of the file")
    raw_header = data[8 : 8 + header_len]
    if not raw_header.startswith(b"{"):
        raise _fail(name, "header is not a JSON object")
    try:
        parsed = json.loads(
            raw_header.decode("utf-8"),
            object_pairs_hook=unique_json_object,
            parse_constant=reject_json_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(name, f"header is not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise _fail(name, "header is not a JSON object")

    metadata = parsed.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _fail(name, "__metadata__ must map strings to strings")
    if len(parsed) > _MAX_TENSORS:
        raise _fail(name, f"header declares {len(parsed)} tensors (limit {_MAX_TENSORS})")

    entries = {tensor: _parse_entry(name, tensor, raw) for tensor, raw in parsed.items()}
    if any(not tensor for tensor in entries):
        raise _fail(name, "a tensor has an empty name")

    # --- the spans must tile the data buffer: sorted, contiguous, ending at the file's end ---
    data_len = len(data) - 8 - header_len
    position = 0
    for tensor, entry in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != position:
            problem = "overlaps the previous tensor" if entry.begin < position else "leaves a gap"
            raise _fail(name, f"tensor {tensor!r} at offset {entry.begin} {problem}")
        position = entry.end
    if position > data_len:
        raise _fail(name, f"tensor data ends at {position}, past the buffer of {data_len} bytes")
    if position != data_len:
        raise _fail(name, f"{data_len - position} trailing bytes after the last tensor")
    return SafetensorsHeader(tensors=entries, metadata=metadata, data_start=8 + header_len)


def decode_tensors(
    data: bytes, header: SafetensorsHeader, *, name: str
) -> dict[str, npt.NDArray[Any]]:
    """Build one NumPy array per tensor (copies, native byte order) and check float finiteness.

    Raises:
        PackError: a dtype NumPy cannot represent (BF16, F8), or a NaN / infinite value.
    """
    arrays: dict[str, npt.NDArray[Any]] = {}
    for tensor, entry in header.tensors.items():
        np_dtype = NUMPY_DTYPES.get(entry.dtype)
        if np_dtype is None:
            raise _fail(name, f"tensor {tensor!r} has dtype {entry.dtype}, not loadable as weights")
        dtype = np.dtype(np_dtype)
        count = math.prod(entry.shape)
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=header.data_start + entry.begin)
        array = flat.astype(dtype.newbyteorder("="), copy=True).reshape(entry.shape)
        if array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
            bad = int((~np.isfinite(array)).sum())
            raise _fail(name, f"tensor {tensor!r} holds {bad} non-finite value(s) (NaN or inf)")
        arrays[tensor] = array
    return arrays


def validate_weights(
    data: bytes,
    arch_id: str,
    arch_config: Mapping[str, Any],
    *,
    name: str,
    limits: SafetensorsLimits | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Check a safetensors file against the architecture registry and return its arrays.

    Args:
        data: The file's bytes.
        arch_id: Architecture id the weights claim (must be allow-listed).
        arch_config: The architecture's JSON config.
        name: How to name the file in errors.
        limits: Size limits.

    Returns:
        name -> array, exactly the tensors ``expected_tensors(arch_id, arch_config)`` lists.

    Raises:
        PackError: any problem with the file, an unknown architecture, or an invalid config.

    Example:
        >>> from safetensors.numpy import save
        >>> cfg = {"in_dim": 2, "hidden_dims": [], "out_dim": 1}
        >>> blob = save({"net.0.weight": np.ones((1, 2), np.float32),
        ...              "net.0.bias": np.zeros((1,), np.float32)})
        >>> sorted(validate_weights(blob, "mlp-v1", cfg, name="w.safetensors"))
        ['net.0.bias', 'net.0.weight']
    """
    header = parse_header(data, name=name, limits=limits)
    try:
        expected = expected_tensors(arch_id, arch_config)
    except ArchitectureError as exc:
        raise _fail(name, exc.message) from None
    missing = sorted(set(expected) - set(header.tensors))
    unexpected = sorted(set(header.tensors) - set(expected))
    if missing or unexpected:
        raise _fail(
            name,
            f"tensors do not match {arch_id} (missing: {missing or 'none'}; "
            f"unexpected: {unexpected or 'none'})",
        )
    for tensor, spec in expected.items():
        entry = header.tensors[tensor]
        if entry.shape != spec.shape or entry.dtype != spec.dtype:
            raise _fail(
                name,
                f"tensor {tensor!r} is {entry.dtype}{list(entry.shape)}; {arch_id} expects "
                f"{spec.dtype}{list(spec.shape)}",
            )
    return decode_tensors(data, header, name=name)
