"""The optimiser every training loop uses: Adam (Kingma & Ba, 2015), or AdamW (Loshchilov &
Hutter, 2019) with decoupled weight decay, run by PyTorch's fused kernel.

The fused kernel updates every parameter in one pass where the default per-tensor loop dispatches
a dozen small operations per parameter tensor: on this project's 2-core CPU, one thread, it steps
6M parameters in the shapes of the agent's modules 4x faster (10.6 vs 42.3 ms per step), the
same update up to rounding. Without it, Adam's step took 16% of a profiled twelve-level learn
(a quarter of the small benchmark's demonstrations); with it, a learn runs about 13% faster.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(4, 2)
    >>> optimizer = adam(net.parameters(), lr=1e-3, weight_decay=1e-4, decoupled=True)
    >>> type(optimizer).__name__
    'AdamW'
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["adam"]


def adam(
    params: Iterable[torch.nn.Parameter],
    lr: float,
    *,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> torch.optim.Optimizer:
    """Adam over ``params`` with the fused kernel (CPU or CUDA).

    Args:
        params: The parameters to train (floating point, on one device type).
        lr: Step size.
        weight_decay: L2 penalty (Adam) or decoupled decay (AdamW).
        decoupled: AdamW rather than Adam.
    """
    if decoupled:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
