"""Hindsight "first sighting" cuts: a segment ending at an entity restarts where it was first seen.

A demonstrator that must find something before it can go to it (BabyAI's bot: explore while no
object matching the mission is in its memory of seen cells, then go next to the closest one)
switches subgoals on the step at which the thing first enters its view, with no change of action
statistics there (see :mod:`skillbank.learning.segment`). Offline, the whole episode is known:
the entity a segment ends at is the content of the *interaction cell* (the cell in front of the
agent, the one pick-up / open / drop act on) in the observation where the segment ends, and the
step at which a cell with that content first appeared anywhere in the grid observation is where
the approach could begin. If that step lies well inside the segment, the segment is cut there.

Everything is read from the data and the featurizer's layout, never from annotations:

- the grid is a one-hot grid slice of the features (:class:`~skillbank.nn.grid_trunk.GridSlice`;
  vector worlds have none and get no cut);
- a cell's *content* is its one-hot feature vector (BabyAI: object type, colour and state);
- the interaction cell is the cell that the event actions (interactions) change most often among
  the cells that moves change too (the agent's own cell shows what it carries: only pick-up and
  drop change it, a move never does, so it is an inventory slot, not a place ahead).

Contents visible from an episode's first observation (floor, walls) never give a cut: the first
sighting must lie inside the segment. Duplicates (two red balls) can fool the rule: the first
sighting of *some* cell with that content is taken.

Example:
    >>> cells = [grid_cells(f, grid) for f in features]  # (T+1, N, C) each  # doctest: +SKIP
    >>> cell = interaction_cell(cells, events)  # doctest: +SKIP
    >>> cuts = first_sighting_cuts(cells, boundaries, cell)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from skillbank.nn.grid_trunk import GridSlice

__all__ = [
    "approach_steps",
    "background_content",
    "first_sighting_cuts",
    "grid_cells",
    "interaction_cell",
    "inventory_cell",
    "local_actions",
]


def grid_cells(features: npt.NDArray[np.floating], grid: GridSlice) -> npt.NDArray[np.bool_]:
    """The grid part of one-hot features (T, O) as cells: (T, H * W, C) bool, row-major."""
    part = features[:, grid.offset : grid.offset + grid.size] > 0.5  # (T, H * W * C)
    cells: npt.NDArray[np.bool_] = part.reshape(len(features), grid.height * grid.width, -1)
    return cells


def background_content(cells: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    """The most frequent content, (C,) bool, of cells (..., C) (BabyAI, the cell in front of the
    agent over its steps: the empty floor); ``None`` without cells."""
    flat = cells.reshape(-1, cells.shape[-1])
    if not len(flat):
        return None
    packed = np.packbits(flat, axis=1)  # (M, ceil(C / 8)) uint8: one row per content
    rows, counts = np.unique(packed, axis=0, return_counts=True)
    background: npt.NDArray[np.bool_] = np.unpackbits(rows[counts.argmax()])[: flat.shape[1]] > 0
    return background


def _changed_cells(grid_feats: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """(T+1, N, C) cell contents -> (T, N): True where a step changed the cell."""
    changed: npt.NDArray[np.bool_] = (grid_feats[1:] != grid_feats[:-1]).any(-1)
    return changed


def interaction_cell(
    cells: Sequence[npt.NDArray[np.bool_]], event_steps: Sequence[npt.NDArray[np.bool_]]
) -> int | None:
    """The cell the event actions act on: an index into the N = H * W cells, or None.

    Args:
        cells: Per episode, (T+1, N, C) one-hot cell contents (see :func:`grid_cells`).
        event_steps: Per episode, (T,) True where the step's action is an interaction.

    Returns:
        The cell changed most often by event steps among the cells that other steps change
        too; None if no event step changes any such cell.
    """
    counts = _change_counts(cells, event_steps)
    if counts is None:
        return None
    event_changes, move_changes = counts
    # A cell no move changes is not a place in the world (an inventory slot): skip it.
    score = np.where(move_changes > 0, event_changes, 0.0)  # (N,)
    if score.max() <= 0:
        return None
    return int(score.argmax())


def inventory_cell(
    cells: Sequence[npt.NDArray[np.bool_]], event_steps: Sequence[npt.NDArray[np.bool_]]
) -> int | None:
    """The cell only interactions change, an inventory slot (BabyAI draws what the agent
    carries in its own cell, which no move or turn changes): among the cells no other step
    changes, the one event steps change most often; None if there is none. Same arguments as
    :func:`interaction_cell`."""
    counts = _change_counts(cells, event_steps)
    if counts is None:
        return None
    event_changes, move_changes = counts
    score = np.where(move_changes == 0, event_changes, 0.0)  # (N,)
    if score.max() <= 0:
        return None
    return int(score.argmax())


def _change_counts(
    cells: Sequence[npt.NDArray[np.bool_]], event_steps: Sequence[npt.NDArray[np.bool_]]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """Per cell, how often event steps and other steps change it ((N,), (N,)); None without
    cells, event steps or other steps."""
    if not cells:
        return None
    event_changes = np.zeros(cells[0].shape[1])  # (N,)
    move_changes = np.zeros(cells[0].shape[1])  # (N,)
    for grid_feats, events in zip(cells, event_steps, strict=True):
        changed = _changed_cells(grid_feats)  # (T, N)
        events = np.asarray(events, bool)
        event_changes += changed[events].sum(0)
        move_changes += changed[~events].sum(0)
    if not event_steps or not any(np.any(e) for e in event_steps):
        return None
    if all(np.all(np.asarray(e, bool)) for e in event_steps):
        return None
    return event_changes, move_changes


def local_actions(
    cells: Sequence[npt.NDArray[np.bool_]],
    actions: Sequence[npt.NDArray[np.integer]],
    *,
    ratio: float = 1 / 3,
) -> npt.NDArray[np.bool_]:
    """Discrete actions that act on a few cells (interactions) rather than move the view.

    An action is local when its steps change, on average, fewer than ``ratio`` times as many
    cells as the most frequent action's steps do (in an egocentric view a move or a turn shifts
    most cells). BabyAI demos, cells changed per step: forward 15.5, turns 27-28, pick-up and
    drop 2, toggle 31 (an opened door reveals the room behind it, so toggle is no local action;
    the pick-ups and drops still find the interaction cell). A cheaper rule than the
    segmenter's effect cosines, reading the grid alone (for :func:`interaction_cell`).

    Args:
        cells: Per episode, (T+1, N, C) one-hot cell contents (see :func:`grid_cells`).
        actions: Per episode, (T,) discrete action ids.
        ratio: The share of the most frequent action's changed cells below which an action is
            local.

    Returns:
        (A,) True for local actions, A = the largest action id + 1 (False for unseen ones).
    """
    if not actions or not sum(len(a) for a in actions):
        return np.zeros(0, bool)
    num_actions = int(max(int(a.max()) for a in actions if len(a))) + 1
    changed = np.zeros(num_actions)  # (A,) cells changed, summed over steps
    count = np.zeros(num_actions)  # (A,)
    for grid_feats, acts in zip(cells, actions, strict=True):
        per_step = _changed_cells(grid_feats).sum(-1)  # (T,)
        np.add.at(changed, acts, per_step)
        np.add.at(count, acts, 1)
    mean = changed / np.maximum(count, 1)  # (A,)
    local: npt.NDArray[np.bool_] = (count > 0) & (mean < ratio * mean[int(count.argmax())])
    return local


def _segment_sightings(
    grid_feats: npt.NDArray[np.bool_], starts: Sequence[int], cell: int
) -> list[tuple[int, int, npt.NDArray[np.bool_]]]:
    """Per segment of one episode whose entity is not in view at the start: (lo, hi, where).

    ``where`` (hi + 1, N) marks the cells showing the content of ``cell`` at observation ``hi``,
    in every observation up to ``hi``.
    """
    num_steps = len(grid_feats) - 1
    out = []
    for lo, hi in zip(starts, [*starts[1:], num_steps], strict=True):
        where = (grid_feats[: hi + 1] == grid_feats[hi, cell]).all(-1)  # (hi + 1, N)
        if not where[0].any():  # floor, walls, anything in view from the start: no entity
            out.append((lo, hi, where))
    return out


def approach_steps(
    cells: Sequence[npt.NDArray[np.bool_]], boundaries: Sequence[Sequence[int]], cell: int
) -> npt.NDArray[np.float64]:
    """Fewest steps seen from an entity in each cell of the view to the segment end it ends at.

    Over every segment whose entity (see :func:`first_sighting_cuts`) is not in view at the
    episode's start, and every step of it at which exactly one cell shows the entity: the least
    number of steps left to the segment's end. It is a map of distances in the view learned from
    the demonstrations (BabyAI: 0 at the interaction cell, growing with the walk and the turns).

    Args:
        cells: Per episode, (T+1, N, C) one-hot cell contents (see :func:`grid_cells`).
        boundaries: Per episode, segment starts (first 0), strictly increasing.
        cell: The interaction cell, an index into the N cells.

    Returns:
        (N,) steps; ``inf`` where no entity was ever seen alone in that cell.
    """
    steps = np.full(cells[0].shape[1] if cells else 0, np.inf)  # (N,)
    for grid_feats, starts in zip(cells, boundaries, strict=True):
        for lo, hi, where in _segment_sightings(grid_feats, starts, cell):
            alone = np.nonzero(where[lo:].sum(1) == 1)[0]  # steps after lo showing it once
            at = where[lo + alone].argmax(1)  # (S,) the cell showing it
            np.minimum.at(steps, at, (hi - lo - alone).astype(np.float64))
    return steps


def first_sighting_cuts(
    cells: Sequence[npt.NDArray[np.bool_]],
    boundaries: Sequence[Sequence[int]],
    cell: int,
    *,
    min_offset: int = 1,
    max_detour: int | None = 1,
) -> list[tuple[int, ...]]:
    """Cut each segment where the entity it ends at was first seen in its episode.

    The segment ``[lo, hi)`` ends at observation ``hi`` (the observation before the next
    segment's first action, or the episode's last); its entity is the content of ``cell`` there.
    If the first observation of the episode that shows that content in any cell is ``f`` with
    ``lo + min_offset <= f < hi``, ``f`` becomes a boundary (the action taken at ``f`` is the
    first the demonstrator chose while seeing the entity) — if the rest of the segment goes
    there directly: ``hi - f`` at most ``max_detour`` steps more than the fewest steps ever seen
    from where the entity shows at ``f`` (:func:`approach_steps`). The check drops sightings of
    an entity that the demonstrator passes by and comes back to later (BabyAI: a door seen while
    the bot still explores the room; GoTo, 200 demos: F1 0.801 -> 0.825, precision 0.90 ->
    0.99).

    Args:
        cells: Per episode, (T+1, N, C) one-hot cell contents (see :func:`grid_cells`).
        boundaries: Per episode, segment starts (first 0), strictly increasing.
        cell: The interaction cell (see :func:`interaction_cell`), an index into the N cells.
        min_offset: Steps of the segment that stay before a new cut.
        max_detour: Extra steps allowed after the sighting (None: no check).

    Returns:
        Per episode, the segment starts with the new cuts added.

    Raises:
        ValueError: If ``cell`` is outside the grid, ``min_offset`` < 1 or ``max_detour`` < 0.
    """
    if cells and not 0 <= cell < cells[0].shape[1]:
        raise ValueError(f"first_sighting_cuts: cell {cell} outside the {cells[0].shape[1]} cells")
    if min_offset < 1:
        raise ValueError(f"first_sighting_cuts: min_offset must be >= 1, got {min_offset}")
    if max_detour is not None and max_detour < 0:
        raise ValueError(f"first_sighting_cuts: max_detour must be >= 0, got {max_detour}")
    fewest = approach_steps(cells, boundaries, cell) if max_detour is not None else None
    out = []
    for grid_feats, starts in zip(cells, boundaries, strict=True):
        new = set(starts)
        for lo, hi, where in _segment_sightings(grid_feats, starts, cell):
            first = int(where.any(1).argmax())  # where[hi, cell] holds: argmax finds a True
            if not lo + min_offset <= first < hi:
                continue
            if fewest is None or hi - first <= fewest[where[first]].min() + max_detour:
                new.add(first)
        out.append(tuple(sorted(new)))
    return out
