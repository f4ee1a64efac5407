"""The shared optimiser: the fused kernel makes the same updates as PyTorch's reference loop."""

import pytest
import torch

from skillbank.nn.optim import adam


@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_matches_the_reference_loop(decoupled: bool) -> None:
    torch.manual_seed(0)
    fused_net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    reference_net = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    )
    reference_net.load_state_dict(fused_net.state_dict())
    start = fused_net[0].weight.detach().clone()
    fused = adam(fused_net.parameters(), lr=1e-2, weight_decay=0.1, decoupled=decoupled)
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    reference = kind(reference_net.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert type(fused) is kind
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for _ in range(5):
        for net, optimizer in ((fused_net, fused), (reference_net, reference)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            optimizer.step()
    for a, b in zip(fused_net.parameters(), reference_net.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(fused_net[0].weight, start)  # it trained
