"""Carry augmentation: skills trained to act alike whatever the agent carries.

Where the features show what the agent carries in one grid cell (BabyAI draws it in the agent's
own cell; :func:`~skillbank.learning.sighting.inventory_cell` finds that cell from the data, with
no environment knowledge), a walk learned empty-handed is a different input from the same walk
made carrying a ball, and demonstrations hold few walks made carrying anything (one per put
mission). Carry augmentation shows a skill, on a share of the steps of segments whose inventory
never changes (what they carry is not what they do), another content of that cell drawn from the
contents seen anywhere in the data, nothing held included. The controller, which decides what to
do with what is held, always reads the true cell; segments that pick up, drop or otherwise change
the inventory are never altered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.sighting import grid_cells
from skillbank.nn.grid_trunk import GridSlice

__all__ = ["CarrySwap", "carry_swap", "swap_carried"]


@dataclass(frozen=True, slots=True)
class CarrySwap:
    """What carry augmentation may change, and to what.

    Attributes:
        steady: (N,) bool, per segment: its inventory cell shows one content from its first
            step to its end.
        contents: (P, C) float, the distinct contents the inventory cell shows in the data.
        columns: (C,) long, the feature columns of the inventory cell.
    """

    steady: torch.Tensor
    contents: torch.Tensor
    columns: torch.Tensor

    def __post_init__(self) -> None:
        if self.contents.ndim != 2 or self.contents.shape[1] != len(self.columns):
            raise ValueError("CarrySwap.contents must be (P, C) with one column per feature")
        if not len(self.contents):
            raise ValueError("CarrySwap.contents must hold at least one content")


def carry_swap(segments: SegmentSet, grid: GridSlice, cell: int) -> CarrySwap:
    """The segments of ``segments`` whose ``cell`` of ``grid`` (the inventory) stays as it is,
    and the contents that cell shows anywhere."""
    cells = [grid_cells(f, grid)[:, cell] for f in segments.features]  # (T+1, C) each
    steady = [
        bool((cells[e][start : stop + 1] == cells[e][start]).all())
        for e, start, stop in segments.spans
    ]
    contents = np.unique(np.concatenate(cells), axis=0)  # (P, C) bool
    columns = grid.cell_start(cell) + np.arange(grid.channels)
    return CarrySwap(
        torch.tensor(steady, dtype=torch.bool),
        torch.from_numpy(contents.astype(np.float32)),
        torch.from_numpy(columns),
    )


def swap_carried(
    inputs: torch.Tensor,
    segment_of: torch.Tensor,
    swap: CarrySwap,
    rate: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """``inputs`` (B, O) with the inventory cell of a ``rate`` share of the rows whose segment
    (``segment_of``, (B,)) is steady replaced by a content drawn uniformly from
    ``swap.contents``; a new tensor, ``inputs`` is not changed."""
    chosen = swap.steady[segment_of] & (torch.rand(len(inputs), generator=generator) < rate)
    rows = torch.nonzero(chosen).squeeze(1)  # (R,)
    out = inputs.clone()
    if len(rows):
        drawn = torch.randint(len(swap.contents), (len(rows),), generator=generator)  # (R,)
        out[rows[:, None], swap.columns[None, :]] = swap.contents[drawn]  # (R, C)
    return out
