"""Weights as safetensors bytes: encode, decode, hash, and check against the architecture registry.

The memory stores weights as safetensors files named by the SHA-256 of their bytes, and checks them
against :func:`skillbank.architectures.expected_tensors` on every write: the tensor names, shapes
and dtypes must be exactly what the architecture's config implies, and every value must be finite.

Example:
    >>> import numpy as np
    >>> cfg = {"in_dim": 2, "hidden_dims": [], "out_dim": 1}
    >>> w = {"net.0.weight": np.ones((1, 2), np.float32), "net.0.bias": np.zeros(1, np.float32)}
    >>> data, sha = encode_weights(w, "mlp-v1", cfg)
    >>> sorted(decode_weights(data, "mlp-v1", cfg, where="example"))
    ['net.0.bias', 'net.0.weight']
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from skillbank.architectures import expected_tensors
from skillbank.errors import ArchitectureError

__all__ = [
    "SAFETENSORS_DTYPES",
    "Weights",
    "check_weights",
    "decode_weights",
    "encode_weights",
    "sha256_hex",
]

Weights = Mapping[str, npt.NDArray[Any]]

#: NumPy dtype -> safetensors dtype name (the ones safetensors.numpy round-trips).
SAFETENSORS_DTYPES: dict[np.dtype[Any], str] = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint16): "U16",
    np.dtype(np.float16): "F16",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint32): "U32",
    np.dtype(np.float32): "F32",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint64): "U64",
    np.dtype(np.float64): "F64",
}


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_weights(
    weights: Weights, arch_id: str, arch_config: Mapping[str, Any], where: str
) -> None:
    """Check ``weights`` against the registry entry for ``arch_id`` with ``arch_config``.

    Args:
        weights: tensor name -> array.
        arch_id: Allow-listed architecture id.
        arch_config: Its JSON config.
        where: How to name the weights in errors (skill id, file).

    Raises:
        ArchitectureError: unknown architecture, invalid config, missing or unexpected tensors,
            wrong shape or dtype, or non-finite values.
    """
    expected = expected_tensors(arch_id, arch_config)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ArchitectureError(
            f"{where}: weights do not match {arch_id} (missing: {missing or 'none'}; "
            f"unexpected: {unexpected or 'none'})",
            hint="store weights whose tensor names follow the architecture's config",
        )
    for name, spec in expected.items():
        array = weights[name]
        if not isinstance(array, np.ndarray):
            raise ArchitectureError(f"{where}: tensor {name!r} is not a NumPy array")
        dtype = SAFETENSORS_DTYPES.get(array.dtype)
        if tuple(array.shape) != spec.shape or dtype != spec.dtype:
            raise ArchitectureError(
                f"{where}: tensor {name!r} is {dtype or array.dtype}{list(array.shape)}; "
                f"{arch_id} expects {spec.dtype}{list(spec.shape)}",
                hint="convert the tensor (e.g. .astype(np.float32)) or fix the config",
            )
        if array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
            raise ArchitectureError(
                f"{where}: tensor {name!r} holds NaN or infinite values",
                hint="only finite weights can be stored",
            )


def encode_weights(
    weights: Weights | bytes, arch_id: str, arch_config: Mapping[str, Any], where: str = "weights"
) -> tuple[bytes, str]:
    """Check weights and return their safetensors bytes and SHA-256.

    Args:
        weights: name -> array, or the bytes of a safetensors file (stored as given, so a file
            keeps its hash; it is decoded and checked all the same).
        arch_id: Allow-listed architecture id.
        arch_config: Its JSON config.
        where: How to name the weights in errors.

    Returns:
        (safetensors bytes, hex SHA-256 of those bytes).

    Raises:
        ArchitectureError: the weights do not fit the architecture, or the bytes do not parse.
    """
    if isinstance(weights, bytes | bytearray | memoryview):
        data = bytes(weights)
        decode_weights(data, arch_id, arch_config, where=where)
    else:
        check_weights(weights, arch_id, arch_config, where)
        data = st_save({name: np.ascontiguousarray(a) for name, a in weights.items()})
    return data, sha256_hex(data)


def decode_weights(
    data: bytes, arch_id: str, arch_config: Mapping[str, Any], where: str
) -> dict[str, npt.NDArray[Any]]:
    """Parse safetensors bytes into arrays and check them against the architecture.

    Raises:
        ArchitectureError: the bytes are not a valid safetensors file, or the weights do not fit.
    """
    try:
        arrays = st_load(data)
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise ArchitectureError(
            f"{where}: not a valid safetensors file ({exc})",
            hint="weights must be a safetensors file written by safetensors.numpy.save",
        ) from None
    check_weights(arrays, arch_id, arch_config, where)
    return arrays
