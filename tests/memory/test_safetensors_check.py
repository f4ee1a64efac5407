"""The safetensors checker accepts what safetensors writes and refuses every malformed header."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from skillbank.errors import PackError
from skillbank.memory.safetensors_check import (
    SafetensorsLimits,
    parse_header,
    validate_weights,
)

CONFIG = {"in_dim": 3, "hidden_dims": [4], "out_dim": 2}


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {
        "net.0.weight": (4, 3),
        "net.0.bias": (4,),
        "net.2.weight": (2, 4),
        "net.2.bias": (2,),
    }
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _raw_text(header: str, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header.encode() + data


def _raw(header: dict[str, Any], data: bytes, *, pad: bytes = b"") -> bytes:
    blob = json.dumps(header).encode() + pad
    return struct.pack("<Q", len(blob)) + blob + data


def test_accepts_what_safetensors_writes_and_decodes_bit_identical() -> None:
    weights = _weights()
    arrays = validate_weights(save(weights), "mlp-v1", CONFIG, name="w.safetensors")
    assert set(arrays) == set(weights)
    for name, array in weights.items():
        assert arrays[name].dtype == np.float32
        assert arrays[name].tobytes() == array.tobytes()


def test_accepts_metadata_and_padded_header() -> None:
    data = np.arange(6, dtype=np.float32).tobytes()
    header = {
        "__metadata__": {"format": "np"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    }
    parsed = parse_header(_raw(header, data, pad=b"    "), name="x")
    assert parsed.metadata == {"format": "np"}
    assert parsed.tensors["a"].shape == (2, 3)


def test_accepts_empty_tensor() -> None:
    header = {"a": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]}}
    assert parse_header(_raw(header, b""), name="x").tensors["a"].shape == (0, 3)


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
DATA = np.ones(2, dtype=np.float32).tobytes()

MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "too short"),
    "short-prefix": (b"\x01\x00", "too short"),
    "length-past-end": (struct.pack("<Q", 1000) + b"{}", "runs past the end"),
    "length-huge": (struct.pack("<Q", 2**63) + b"{}", "exceeds the limit"),
    "not-json": (struct.pack("<Q", 4) + b"{abc", "not valid JSON"),
    "not-object": (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    "bad-utf8": (struct.pack("<Q", 3) + b"{\xff}", "not valid JSON"),
    "nan-constant": (struct.pack("<Q", 10) + b'{"a": NaN}', "not valid JSON"),
    "duplicate-key": (
        _raw_text('{"a": %s, "a": %s}' % ((json.dumps(GOOD["a"]),) * 2), DATA),
        "duplicate key",
    ),
    "unknown-dtype": (
        _raw({"a": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}}, DATA),
        "unknown dtype",
    ),
    "bad-shape": (
        _raw({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, DATA),
        "malformed shape",
    ),
    "bool-shape": (
        _raw({"a": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, DATA),
        "malformed shape",
    ),
    "extra-field": (
        _raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}, DATA),
        "exactly dtype",
    ),
    "offsets-reversed": (
        _raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, DATA),
        "out of order",
    ),
    "offsets-wrong-span": (
        _raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, DATA),
        "needs 8",
    ),
    "offsets-past-end": (
        _raw({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, DATA),
        "past the buffer",
    ),
    "gap": (
        _raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, DATA),
        "leaves a gap",
    ),
    "overlap": (
        _raw(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            DATA,
        ),
        "overlaps",
    ),
    "trailing-bytes": (_raw(GOOD, DATA + b"\x00" * 4), "trailing bytes"),
    "bad-metadata": (
        _raw({"__metadata__": {"a": 1}, **GOOD}, DATA),
        "__metadata__",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_refuses_malformed_headers(case: str) -> None:
    data, problem = MALFORMED[case]
    with pytest.raises(PackError) as info:
        parse_header(data, name="skills/x/1/weights.safetensors")
    assert info.value.message.startswith("skills/x/1/weights.safetensors: ")
    assert problem in info.value.message


def test_limits_are_configurable() -> None:
    blob = save(_weights())
    limits = SafetensorsLimits(max_header_bytes=16)
    with pytest.raises(PackError, match=r"header length .* exceeds the limit of 16"):
        parse_header(blob, name="w", limits=limits)
    with pytest.raises(PackError, match="exceeds the limit of 100"):
        parse_header(blob, name="w", limits=SafetensorsLimits(max_file_bytes=100))
    with pytest.raises(ValueError, match="max_header_bytes"):
        SafetensorsLimits(max_header_bytes=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_refuses_non_finite_values(bad: float) -> None:
    weights = _weights()
    weights["net.2.bias"][1] = bad
    with pytest.raises(PackError, match=r"w: tensor 'net.2.bias' holds 1 non-finite"):
        validate_weights(save(weights), "mlp-v1", CONFIG, name="w")


def test_refuses_missing_and_unexpected_tensors() -> None:
    weights = _weights()
    del weights["net.2.bias"]
    weights["net.9.weight"] = np.zeros(1, np.float32)
    with pytest.raises(PackError, match=r"missing: \['net.2.bias'\].*unexpected: \['net.9"):
        validate_weights(save(weights), "mlp-v1", CONFIG, name="w")


def test_refuses_wrong_shape_and_dtype() -> None:
    weights = _weights()
    weights["net.0.weight"] = np.zeros((3, 4), np.float32)
    with pytest.raises(PackError, match=r"'net.0.weight' is F32\[3, 4\]; mlp-v1 expects F32\[4, 3"):
        validate_weights(save(weights), "mlp-v1", CONFIG, name="w")
    weights = _weights()
    weights["net.0.bias"] = weights["net.0.bias"].astype(np.float64)
    with pytest.raises(PackError, match=r"'net.0.bias' is F64\[4\]; mlp-v1 expects F32\[4\]"):
        validate_weights(save(weights), "mlp-v1", CONFIG, name="w")


def test_refuses_unknown_architecture_and_bad_config() -> None:
    blob = save(_weights())
    with pytest.raises(PackError, match="w: architecture 'evil-v1' is not in the allow-list"):
        validate_weights(blob, "evil-v1", CONFIG, name="w")
    with pytest.raises(PackError, match="w: mlp-v1 config field 'in_dim'"):
        validate_weights(blob, "mlp-v1", {**CONFIG, "in_dim": "3"}, name="w")


def test_big_endian_is_never_produced() -> None:
    arrays = validate_weights(save(_weights()), "mlp-v1", CONFIG, name="w")
    assert all(a.dtype.isnative for a in arrays.values())
