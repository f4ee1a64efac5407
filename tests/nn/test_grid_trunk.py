"""The grid trunk: layout, registry agreement of v3 modules, batched execution, persistence."""

from __future__ import annotations

import pytest
import torch

from skillbank.architectures import expected_tensors
from skillbank.errors import ArchitectureError
from skillbank.nn.controller import Controller, ControllerConfig
from skillbank.nn.grid_trunk import GridSlice, GridTrunk, GridTrunkSpec
from skillbank.nn.skill_policy import (
    ActionSpec,
    SkillPolicy,
    SkillPolicyConfig,
    StackedSkillPolicies,
)

# 3 leading features, a 4x5 grid of 6 channels (120 features), then 7 more.
GRID = GridSlice(offset=3, height=4, width=5, channels=6)
OBS = 3 + GRID.size + 7


def _spec(arg_film: str = "mlp", kernel: int = 3) -> GridTrunkSpec:
    return GridTrunkSpec(grids=(GRID,), conv_channels=(8, 4), kernel_size=kernel, arg_film=arg_film)


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("action", [ActionSpec("discrete", 6), ActionSpec("continuous", 2)])
@pytest.mark.parametrize("arg_dim", [0, 3])
@pytest.mark.parametrize("arg_film", ["mlp", "grid", "pointer"])
@pytest.mark.parametrize("kernel", [2, 3])
def test_v3_modules_match_the_registry(
    action: ActionSpec, arg_dim: int, arg_film: str, kernel: int
) -> None:
    spec = _spec(arg_film, kernel)
    policy = SkillPolicy(
        SkillPolicyConfig(OBS, action, hidden_dims=(16, 8), arg_dim=arg_dim, grid=spec)
    )
    controller = Controller(
        ControllerConfig(OBS, latent_dim=4, hidden_dims=(16,), arg_dim=arg_dim, grid=spec)
    )
    for arch, module, config in [
        ("skill-policy-v3", policy, policy.config.to_json()),
        ("skill-controller-v3", controller, controller.config.to_json()),
    ]:
        assert module.config.arch_id == arch
        spec_shapes = {k: v.shape for k, v in expected_tensors(arch, config).items()}
        assert spec_shapes == _shapes(module), arch
    assert SkillPolicyConfig.from_json(policy.config.to_json()) == policy.config
    assert ControllerConfig.from_json(controller.config.to_json()) == controller.config


def test_registry_rejects_bad_grid_layouts() -> None:
    config = SkillPolicyConfig(OBS, ActionSpec("discrete", 3), grid=_spec()).to_json()
    past = {**config, "obs_dim": GRID.offset + GRID.size - 1}
    with pytest.raises(ArchitectureError, match="obs_dim"):
        expected_tensors("skill-policy-v3", past)
    two = {**config["grid_trunk"], "grids": [GRID.to_json(), GRID.to_json()]}
    with pytest.raises(ArchitectureError, match="overlap"):
        expected_tensors("skill-policy-v3", {**config, "grid_trunk": two})
    with pytest.raises(ArchitectureError, match="grid_trunk"):
        expected_tensors("skill-policy-v3", {k: v for k, v in config.items() if k != "grid_trunk"})


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="overlap"):
        GridTrunkSpec(grids=(GRID, GridSlice(5, 2, 2, 1)))
    with pytest.raises(ValueError, match="vanishes"):
        GridTrunkSpec(grids=(GridSlice(0, 2, 2, 1),), conv_channels=(4, 4, 4), kernel_size=2)
    with pytest.raises(ValueError, match="arg_film"):
        GridTrunkSpec(grids=(GRID,), arg_film="both")
    with pytest.raises(ValueError, match="obs_dim"):
        SkillPolicyConfig(GRID.size, ActionSpec("discrete", 3), grid=_spec())


def test_trunk_reads_the_grid_cell_by_cell_and_keeps_the_rest() -> None:
    torch.manual_seed(0)
    trunk = GridTrunk(OBS, _spec())
    x = torch.randn(5, OBS)
    out = trunk(x)
    assert out.shape == (5, trunk.out_dim) and trunk.out_dim == 4 * 4 * 5 + 10
    # the features outside the grid pass through unchanged, in order, after the grid's
    torch.testing.assert_close(out[:, 80:], torch.cat([x[:, :3], x[:, 3 + GRID.size :]], 1))
    # the grid slice is (H, W, C) cell-major: the image the convolutions see is its transpose
    image = x[:, 3 : 3 + GRID.size].reshape(5, 4, 5, 6).permute(0, 3, 1, 2)
    torch.testing.assert_close(out[:, :80], trunk.convs[0](image).flatten(1))
    # position is kept: the same object one cell further right gives other features
    a, b = torch.zeros(1, OBS), torch.zeros(1, OBS)
    a[0, 3 + (1 * 5 + 1) * 6] = 1.0  # cell (1, 1), channel 0
    b[0, 3 + (1 * 5 + 2) * 6] = 1.0  # cell (1, 2), channel 0
    assert not torch.allclose(trunk(a), trunk(b))


@pytest.mark.parametrize("arg_film", ["mlp", "grid", "pointer"])
@pytest.mark.parametrize("arg_dim", [0, 3])
def test_stacked_grid_policies_equal_one_by_one(arg_film: str, arg_dim: int) -> None:
    torch.manual_seed(0)
    config = SkillPolicyConfig(
        OBS, ActionSpec("discrete", 5), hidden_dims=(16, 8), arg_dim=arg_dim, grid=_spec(arg_film)
    )
    policies = [SkillPolicy(config) for _ in range(3)]
    for policy in policies:  # FiLM starts at identity; give it weight so the test sees it
        if policy.film is not None:
            torch.nn.init.normal_(policy.film.weight, std=0.5)
    x = torch.randn(7, OBS)
    arg = torch.randn(7, arg_dim) if arg_dim else None
    params, stops = StackedSkillPolicies(policies)(x, arg)
    assert params.shape == (3, 7, 5) and stops.shape == (3, 7)
    for i, policy in enumerate(policies):
        p, s = policy(x, arg)
        torch.testing.assert_close(params[i], p.detach(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(stops[i], s.detach(), atol=1e-5, rtol=1e-4)
    if arg is not None:  # the argument matters wherever it modulates
        other, _ = policies[0](x, -arg)
        assert not torch.allclose(other, policies[0](x, arg)[0])


def test_vector_configs_keep_the_mlp_and_their_json() -> None:
    config = SkillPolicyConfig(10, ActionSpec("discrete", 3), arg_dim=2)
    assert config.arch_id == "skill-policy-v2" and "grid_trunk" not in config.to_json()
    assert SkillPolicy(config).grid is None
    controller = ControllerConfig(10, latent_dim=4, arg_dim=2)
    assert controller.arch_id == "skill-controller-v2" and "grid_trunk" not in controller.to_json()


def _named_cell_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4x4 grids holding four objects of distinct kinds (one-hot over 4 channels) at random
    cells; the argument names a kind (one-hot); the action is the column of that object."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.zeros(n, 4, 4, 4)
    args = torch.zeros(n, 4)
    actions = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        cells = torch.randperm(16, generator=g)[:4]
        for kind, cell in enumerate(cells.tolist()):
            grids[i, cell // 4, cell % 4, kind] = 1.0
        named = int(torch.randint(4, (1,), generator=g))
        args[i, named] = 1.0
        actions[i] = int(cells[named]) % 4
    return grids.reshape(n, -1), args, actions  # (N, 64), (N, 4), (N,)


def _named_cell_accuracy(arg_film: str) -> float:
    torch.manual_seed(0)
    spec = GridTrunkSpec(
        grids=(GridSlice(0, 4, 4, 4),), conv_channels=(8, 8), kernel_size=3, arg_film=arg_film
    )
    policy = SkillPolicy(
        SkillPolicyConfig(64, ActionSpec("discrete", 4), hidden_dims=(32,), arg_dim=4, grid=spec)
    )
    x, arg, y = _named_cell_data(512, seed=0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(150):
        for b in range(0, 512, 128):
            logits, _ = policy(x[b : b + 128], arg[b : b + 128])
            loss = torch.nn.functional.cross_entropy(logits, y[b : b + 128])
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    x, arg, y = _named_cell_data(256, seed=1)
    with torch.no_grad():
        return float((policy(x, arg)[0].argmax(-1) == y).float().mean())


def test_a_pointer_argument_finds_the_cell_it_names() -> None:
    # 4 columns: chance is 0.25; matching the argument against every cell is one dot product
    assert _named_cell_accuracy("pointer") >= 0.9


def test_skipped_ranges_are_not_read_and_survive_json_and_the_registry() -> None:
    torch.manual_seed(0)
    # the 7 trailing features are skipped (as a skill skips the agent's explored map)
    spec = GridTrunkSpec(grids=(GRID,), conv_channels=(8, 4), skip=((OBS - 7, OBS),))
    trunk = GridTrunk(OBS, spec)
    assert trunk.out_dim == 4 * 4 * 5 + 3
    x = torch.randn(5, OBS)
    y = x.clone()
    y[:, OBS - 7 :] = torch.randn(5, 7)
    torch.testing.assert_close(trunk(x), trunk(y))
    assert GridTrunkSpec.from_json(spec.to_json()) == spec
    assert "skip" not in _spec().to_json()  # specs without skipped ranges store what they did
    policy = SkillPolicy(SkillPolicyConfig(OBS, ActionSpec("discrete", 3), grid=spec))
    config = policy.config.to_json()
    assert {k: v.shape for k, v in expected_tensors("skill-policy-v3", config).items()} == _shapes(
        policy
    )
    stacked, _ = StackedSkillPolicies([policy, policy])(x)
    torch.testing.assert_close(stacked[0], policy(y)[0].detach(), atol=1e-5, rtol=1e-4)
    overlapping = {**config["grid_trunk"], "skip": [[GRID.offset, GRID.offset + 2]]}
    with pytest.raises(ArchitectureError, match="overlap"):
        expected_tensors("skill-policy-v3", {**config, "grid_trunk": overlapping})
    with pytest.raises(ValueError, match="skip"):
        GridTrunkSpec(grids=(GRID,), skip=((4, 2),))
