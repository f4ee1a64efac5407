"""The token reader of the grid trunk: layout, registry agreement, order sensitivity, and that
specs without token slices store and act exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skillbank.architectures import expected_tensors
from skillbank.errors import ArchitectureError
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.segment_set import SegmentSet, grid_slices, token_slices
from skillbank.nn.controller import Controller, ControllerConfig, TargetSpec
from skillbank.nn.grid_trunk import (
    GridSlice,
    GridTrunk,
    GridTrunkSpec,
    StackedGridTrunks,
    TokenSlice,
)
from skillbank.types import Episode, TaskSpec

# 3 leading features, a 4x5 grid of 6 channels (120), then a token entry: a bag of 8 ids and
# 5 one-hot positions (48), then 2 more.
GRID = GridSlice(offset=3, height=4, width=5, channels=6)
TOKENS = TokenSlice(offset=3 + GRID.size, vocab=8, positions=5)
OBS = TOKENS.end + 2


def _features(sequences: list[list[int]], seed: int = 0) -> torch.Tensor:
    """Random features (B, OBS) whose token entry encodes ``sequences`` (ids, 0-padded)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(sequences), OBS, generator=gen)
    x[:, TOKENS.offset : TOKENS.end] = 0.0
    for row, ids in enumerate(sequences):
        for position, token in enumerate(ids):
            if token:
                x[row, TOKENS.offset + token] += 1.0
                x[row, TOKENS.start + position * TOKENS.vocab + token] = 1.0
    return x


def _spec(grids: tuple[GridSlice, ...] = (GRID,), film: bool = True) -> GridTrunkSpec:
    return GridTrunkSpec(
        grids, (8, 4), tokens=(TOKENS,), token_embed_dim=6, token_dim=7, token_film=film
    )


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("grids", "film"),
    [((), False), ((GRID,), False), ((GRID,), True)],
    ids=["alone", "cnn", "film"],
)
@pytest.mark.parametrize("target", [False, True])
def test_controllers_with_readers_match_the_registry(
    grids: tuple[GridSlice, ...], film: bool, target: bool
) -> None:
    spec = _spec(grids, film)
    head = TargetSpec(GRID, cell=7, groups=(4, 2)) if target else None
    config = ControllerConfig(
        OBS, latent_dim=4, hidden_dims=(16,), arg_dim=6 if target else 0, grid=spec, target=head
    )
    controller = Controller(config)
    shapes = {k: v.shape for k, v in expected_tensors(config.arch_id, config.to_json()).items()}
    assert shapes == _shapes(controller)
    assert ControllerConfig.from_json(config.to_json()) == config
    assert controller(torch.zeros(3, OBS)).shape == (3, 4)


def test_registry_and_spec_reject_bad_token_layouts() -> None:
    config = ControllerConfig(OBS, latent_dim=4, grid=_spec()).to_json()
    past = {**config, "obs_dim": TOKENS.end - 1}
    with pytest.raises(ArchitectureError, match="obs_dim"):
        expected_tensors("skill-controller-v3", past)
    trunk = config["grid_trunk"]
    overlapping = {**trunk["tokens"], "slices": [{**TOKENS.to_json(), "offset": 0}]}
    with pytest.raises(ArchitectureError, match="overlap"):
        expected_tensors(
            "skill-controller-v3", {**config, "grid_trunk": {**trunk, "tokens": overlapping}}
        )
    with pytest.raises(ArchitectureError, match="tokens"):
        bad = {**trunk, "tokens": {**trunk["tokens"], "slices": []}}
        expected_tensors("skill-controller-v3", {**config, "grid_trunk": bad})
    with pytest.raises(ValueError, match="GridSlice"):
        GridTrunkSpec(())
    with pytest.raises(ValueError, match="overlap"):
        GridTrunkSpec((GRID,), tokens=(TokenSlice(GRID.offset, 8, 2),))
    with pytest.raises(ValueError, match="token_film"):
        GridTrunkSpec((), tokens=(TOKENS,), token_film=True)
    with pytest.raises(ValueError, match="vocab"):
        TokenSlice(0, 0, 3)
    with pytest.raises(ValueError, match="hint"):
        StackedGridTrunks([GridTrunk(OBS, _spec())])


def test_the_reader_consumes_positions_and_keeps_the_bag_and_the_rest() -> None:
    torch.manual_seed(0)
    trunk = GridTrunk(OBS, _spec((), film=False))
    x = _features([[2, 3, 4, 0, 0], [5, 0, 0, 0, 0]])
    out = trunk(x)
    assert trunk.out_dim == OBS - TOKENS.vocab * TOKENS.positions + 7 == out.shape[1]
    rest = torch.cat([x[:, : TOKENS.start], x[:, TOKENS.end :]], dim=1)
    torch.testing.assert_close(out[:, : rest.shape[1]], rest)
    torch.testing.assert_close(out[:, rest.shape[1] :], trunk.read_tokens(x))


def test_kept_positions_pass_through_and_the_registry_agrees() -> None:
    spec = GridTrunkSpec((GRID,), (8, 4), tokens=(TOKENS,), token_dim=7, token_keep=True)
    trunk = GridTrunk(OBS, spec)
    x = _features([[2, 3, 4, 0, 0]])
    out = trunk(x)
    assert trunk.out_dim == 4 * 4 * 5 + OBS - GRID.size + 7 == out.shape[1]
    torch.testing.assert_close(out[:, 80:-7], torch.cat([x[:, :3], x[:, 3 + GRID.size :]], 1))
    config = ControllerConfig(OBS, latent_dim=4, grid=spec)
    shapes = {k: v.shape for k, v in expected_tensors(config.arch_id, config.to_json()).items()}
    assert shapes == _shapes(Controller(config))
    assert ControllerConfig.from_json(config.to_json()) == config


def test_the_mission_vector_is_the_gru_state_at_the_last_token_and_hears_the_order() -> None:
    torch.manual_seed(0)
    trunk = GridTrunk(OBS, _spec((), film=False))
    reader = trunk.readers[0]
    x = _features([[2, 3, 4, 0, 0], [4, 3, 2, 0, 0], [2, 3, 4, 5, 6]])
    vectors = trunk.read_tokens(x)  # (3, 7)
    # the state after the third token, as if the sequence had no padding
    one_hot = x[:1, TOKENS.start : TOKENS.end].reshape(1, 5, 8)[:, :3]
    states, _ = reader.gru(reader.embed(one_hot))
    torch.testing.assert_close(vectors[0], states[0, -1])
    # the same bag in another order, or a longer mission, reads differently
    assert not torch.allclose(vectors[0], vectors[1])
    assert not torch.allclose(vectors[0], vectors[2])


def test_the_mission_modulates_the_grid_cnn_with_film() -> None:
    torch.manual_seed(0)
    trunk = GridTrunk(OBS, _spec())
    x = _features([[2, 3, 0, 0, 0], [3, 2, 0, 0, 0]])
    x[1, : TOKENS.offset] = x[0, : TOKENS.offset]  # the same grid, two missions
    grid_out = 4 * 4 * 5
    # a fresh FiLM starts as no modulation ...
    torch.testing.assert_close(trunk(x)[0, :grid_out], trunk(x)[1, :grid_out])
    with torch.no_grad():
        trunk.token_films[0].weight.normal_()
    # ... and once trained, the mission changes what the CNN computes on the same grid
    assert not torch.allclose(trunk(x)[0, :grid_out], trunk(x)[1, :grid_out])


def test_a_reader_learns_what_only_the_order_tells() -> None:
    """The label is whether token 2 comes before token 3: a bag of tokens cannot tell."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sequences, labels = [], []
    for _ in range(256):
        pad = [int(v) for v in rng.integers(4, 8, size=3)]
        first = int(rng.integers(0, 2))
        pair = [2, 3] if first else [3, 2]
        sequences.append([pad[0], pair[0], pad[1], pair[1], pad[2]])
        labels.append(first)
    x, y = _features(sequences), torch.tensor(labels)
    controller = Controller(ControllerConfig(OBS, 2, hidden_dims=(32,), grid=_spec((), False)))
    optimizer = torch.optim.Adam(controller.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(controller(x), y)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert (controller(x).argmax(-1) == y).float().mean() > 0.95


def test_controllers_without_tokens_store_and_act_as_before() -> None:
    spec = GridTrunkSpec((GRID,), (8, 4))
    config = ControllerConfig(OBS, latent_dim=4, grid=spec)
    assert config.to_json()["grid_trunk"] == {
        "grids": [GRID.to_json()],
        "conv_channels": [8, 4],
        "kernel_size": 3,
        "arg_film": "mlp",
    }
    torch.manual_seed(0)
    controller = Controller(config)
    rebuilt = Controller(ControllerConfig.from_json(config.to_json()))
    rebuilt.load_state_dict(controller.state_dict())
    x = _features([[2, 3, 0, 0, 0]])
    torch.testing.assert_close(rebuilt(x), controller(x))
    # the trunk without readers passes every non-grid feature through, token positions too
    assert GridTrunk(OBS, spec).out_dim == 4 * 4 * 5 + OBS - GRID.size


def test_grid_spec_switches() -> None:
    off, on = ControllerTrainConfig(), ControllerTrainConfig(read_tokens=True, token_dim=5)
    assert off.grid_spec((GRID,), tokens=(TOKENS,)) is None
    assert off.grid_spec((GRID,), True, (TOKENS,)) == GridTrunkSpec((GRID,))
    alone = on.grid_spec((GRID,), tokens=(TOKENS,))
    assert alone is not None and alone.grids == () and alone.tokens == (TOKENS,)
    both = on.grid_spec((GRID,), True, (TOKENS,))
    assert both is not None and both.grids == (GRID,) and both.token_film
    assert both.token_dim == 5
    assert on.grid_spec((GRID,)) is None  # no token slices: as before


def _episode(missions: list[list[int]]) -> Episode:
    steps = len(missions)
    return Episode(
        observations={
            "image": np.zeros((steps, 3, 3, 2), np.int64),
            "mission": np.asarray([m + [0] * (20 - len(m)) for m in missions], np.int64),
        },
        actions=np.zeros(steps - 1, np.int64),
        rewards=np.zeros(steps - 1, np.float32),
        terminations=np.zeros(steps - 1, bool),
        truncations=np.zeros(steps - 1, bool),
        task=TaskSpec("toy/tokens"),
        success=True,
        seed=0,
        demonstrator="test",
    )


def test_token_slices_follow_the_featurizer_layout() -> None:
    episodes = [_episode([[2, 3, 4]] * 4), _episode([[5, 6]] * 3)]
    featurizer = ObservationFeaturizer.fit(episodes, sequence_positions=32)
    (tokens,) = token_slices(featurizer)
    (grid,) = grid_slices(featurizer)
    assert (tokens.vocab, tokens.positions) == (64, 20)  # 32 positions, capped by the length
    assert tokens.offset == grid.offset + grid.size
    features = featurizer.transform(episodes[0].observations)  # (4, O)
    positions = features[:, tokens.start : tokens.end].reshape(4, 20, 64)
    assert positions[0, :3].argmax(-1).tolist() == [2, 3, 4] and positions[0, 3:].sum() == 0
    segments = SegmentSet.build(episodes, [[0], [0]], featurizer)
    assert segments.tokens == (tokens,) and segments.subset([1]).tokens == (tokens,)
    with pytest.raises(ValueError, match="tokens"):
        SegmentSet(segments.features, segments.actions, (), tokens=(TokenSlice(0, 64, 40),))
