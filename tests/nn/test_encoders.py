"""Observation encoders: shapes, config round trips, registry agreement, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from skillbank.architectures import expected_tensors
from skillbank.envs.babyai_vocab import VOCAB_SIZE, tokenize_mission
from skillbank.errors import ArchitectureError
from skillbank.nn.encoders import (
    BABYAI_VOCAB_SIZE,
    BabyAIEncoder,
    BabyAIEncoderConfig,
    VectorEncoder,
    VectorEncoderConfig,
    encoder_config_from_json,
    make_encoder,
    obs_to_tensors,
)

CONFIGS = [
    BabyAIEncoderConfig(),
    BabyAIEncoderConfig(pool="max", num_film=1, batch_norm=False),
    BabyAIEncoderConfig(
        out_dim=16,
        conv_channels=8,
        image_embed_dim=8,
        num_film=1,
        word_dim=4,
        mission_dim=8,
        direction_dim=0,
    ),
    BabyAIEncoderConfig(out_dim=16, conv_channels=8, num_film=0, use_mission=False),
    BabyAIEncoderConfig(out_dim=16, conv_channels=8, map_size=5, map_planes=3, map_channels=4),
    VectorEncoderConfig(obs_dim=39),
    VectorEncoderConfig(obs_dim=7, hidden_dims=(), out_dim=5, num_tasks=10, task_dim=3),
]


def _babyai_batch(batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.stack(
        [
            rng.integers(0, 11, (batch, 7, 7)),
            rng.integers(0, 6, (batch, 7, 7)),
            rng.integers(0, 3, (batch, 7, 7)),
        ],
        axis=-1,
    ).astype(np.uint8)
    missions = ["go to the red ball", "pick up a blue key", "open the door", "go to a box"]
    return {
        "image": image,
        "direction": rng.integers(0, 4, batch).astype(np.int64),
        "mission": np.stack([tokenize_mission(missions[i % 4]) for i in range(batch)]),
    }


def test_vocab_size_agrees_with_envs() -> None:
    assert BABYAI_VOCAB_SIZE == VOCAB_SIZE


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_state_dict_matches_registry(config: BabyAIEncoderConfig | VectorEncoderConfig) -> None:
    encoder = make_encoder(config)
    state = encoder.state_dict()
    spec = expected_tensors(config.arch_id, json.loads(json.dumps(config.to_json())))
    assert set(state) == set(spec)
    for name, tensor in state.items():
        assert tuple(tensor.shape) == spec[name].shape, name
        assert {"F32": torch.float32, "I64": torch.int64}[spec[name].dtype] == tensor.dtype, name


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_config_json_round_trip(config: BabyAIEncoderConfig | VectorEncoderConfig) -> None:
    text = json.dumps(config.to_json())
    assert encoder_config_from_json(json.loads(text)) == config
    assert type(config).from_json(json.loads(text)) == config


def test_babyai_forward_shape_and_determinism() -> None:
    torch.manual_seed(0)
    encoder = BabyAIEncoder(BabyAIEncoderConfig(out_dim=32))
    batch = obs_to_tensors(_babyai_batch(5))
    out = encoder(batch)
    assert out.shape == (5, 32) and encoder.out_dim == 32
    assert torch.equal(out, encoder(batch))
    torch.manual_seed(0)
    assert torch.equal(out, BabyAIEncoder(BabyAIEncoderConfig(out_dim=32))(batch))


def test_babyai_mission_changes_features_and_padding_does_not() -> None:
    torch.manual_seed(0)
    encoder = BabyAIEncoder(BabyAIEncoderConfig(out_dim=32))
    batch = obs_to_tensors(_babyai_batch(2))
    other = dict(batch)
    other["mission"] = batch["mission"].flip(0)
    assert not torch.allclose(encoder(batch), encoder(other))
    # Mission encoding reads only up to the last real token: a shorter pad gives the same code.
    short = dict(batch)
    short["mission"] = batch["mission"][:, :12]
    assert torch.allclose(encoder(batch), encoder(short), atol=1e-6)


def test_babyai_gradients_reach_every_parameter() -> None:
    encoder = BabyAIEncoder(BabyAIEncoderConfig(out_dim=16, num_film=2))
    encoder(obs_to_tensors(_babyai_batch(8))).pow(2).sum().backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None]
    assert missing == []


def test_babyai_map_is_read_and_old_configs_need_no_map_fields() -> None:
    torch.manual_seed(0)
    config = BabyAIEncoderConfig(out_dim=16, map_size=5, map_planes=3, map_channels=4)
    encoder = BabyAIEncoder(config)
    batch = _babyai_batch(4)
    batch["map"] = np.random.default_rng(1).random((4, 5, 5, 3)) < 0.3
    tensors = obs_to_tensors(batch)
    assert tensors["map"].dtype == torch.float32
    other = dict(tensors, map=torch.zeros_like(tensors["map"]))
    assert not torch.allclose(encoder(tensors), encoder(other))
    encoder(tensors).pow(2).sum().backward()
    assert all(p.grad is not None for p in encoder.map_conv.parameters())
    # A config stored before the map existed has no map fields: still valid, no map tensors.
    old = {k: v for k, v in BabyAIEncoderConfig().to_json().items() if not k.startswith("map")}
    assert not any(n.startswith("map") for n in expected_tensors("babyai-encoder-v1", old))
    assert encoder_config_from_json(old) == BabyAIEncoderConfig()
    with pytest.raises(ValueError, match="map_size"):
        BabyAIEncoderConfig(map_size=5)


def test_babyai_coarse_map_view_is_read_by_its_own_cnn() -> None:
    torch.manual_seed(0)
    config = BabyAIEncoderConfig(
        out_dim=16, map_size=5, map_planes=3, map_channels=4, coarse_size=3, coarse_planes=4
    )
    encoder = BabyAIEncoder(config)
    rng = np.random.default_rng(1)
    batch = _babyai_batch(4)
    batch["map"] = rng.random((4, 5, 5, 3)) < 0.3
    batch["map_coarse"] = rng.random((4, 3, 3, 4)) < 0.3
    tensors = obs_to_tensors(batch)
    other = dict(tensors, map_coarse=torch.zeros_like(tensors["map_coarse"]))
    assert not torch.allclose(encoder(tensors), encoder(other))
    encoder(tensors).pow(2).sum().backward()
    assert all(p.grad is not None for p in encoder.coarse_conv.parameters())
    expected = expected_tensors("babyai-encoder-v1", config.to_json())
    assert {n: tuple(t.shape) for n, t in encoder.state_dict().items()} == {
        n: spec.shape for n, spec in expected.items()
    }
    with pytest.raises(ValueError, match="coarse_size"):
        BabyAIEncoderConfig(coarse_size=3)


def test_vector_encoder_with_tasks() -> None:
    torch.manual_seed(0)  # a ReLU output of a few units can be all zero for an unlucky init
    encoder = VectorEncoder(
        VectorEncoderConfig(obs_dim=3, hidden_dims=(8,), out_dim=16, num_tasks=2)
    )
    obs = obs_to_tensors({"obs": np.ones((6, 3), np.float32), "task": np.array([0, 1] * 3)})
    assert obs["task"].dtype == torch.int64 and obs["obs"].dtype == torch.float32
    out = encoder(obs)
    assert out.shape == (6, 16)
    assert not torch.allclose(out[0], out[1])


def test_obs_to_tensors_dtypes() -> None:
    out = obs_to_tensors(_babyai_batch(3))
    assert out["image"].dtype == torch.int64 and out["image"].shape == (3, 7, 7, 3)
    assert out["mission"].dtype == torch.int64 and out["direction"].shape == (3,)


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="num_film"):
        BabyAIEncoderConfig(use_mission=False, num_film=2)
    with pytest.raises(ValueError, match="obs_dim"):
        VectorEncoderConfig(obs_dim=0)
    with pytest.raises(ArchitectureError, match="kind"):
        encoder_config_from_json({"kind": "mystery"})
    with pytest.raises(ArchitectureError, match="unknown config fields"):
        encoder_config_from_json({"kind": "vector", "obs_dim": 3, "colour": 1})
    with pytest.raises(ArchitectureError, match="use_mission"):
        expected_tensors("babyai-encoder-v1", {**BabyAIEncoderConfig().to_json(), "use_mission": 1})
