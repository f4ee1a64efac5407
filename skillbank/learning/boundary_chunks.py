"""Extra cuts inside segments where the next action stops being predictable (branching entropy).

Unsupervised word segmentation reads boundaries off a rise of the entropy of the next symbol
given the symbols so far (Harris, 1955, "From Phoneme to Morpheme"; Tanaka-Ishii, 2005,
"Entropy as an Indicator of Context Boundaries"). Here the symbols are discrete actions and the
context is anchored: the action that ended the previous segment, then the segment's own actions
from its start. A demonstrator that opens every stretch with a stereotyped routine (walk
through the door, look around) makes the next action nearly certain inside the routine and
uncertain right after it; the largest such rise in a segment, if large enough and seen often
enough, becomes one extra cut.

Actions only, discrete only; annotations are never read. Each segment gets at most one cut.

Example:
    >>> cuts = entropy_rise_cuts(actions, boundaries, min_rise=0.6)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["entropy_rise_cuts"]

_START = -1  # context symbol of an episode's first segment
_END = -2  # next symbol at a segment's end


def _entropy(counts: Counter[int]) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def entropy_rise_cuts(
    actions: Sequence[npt.NDArray[np.integer]],
    boundaries: Sequence[Sequence[int]],
    *,
    min_rise: float,
    min_count: int = 10,
    min_offset: int = 3,
) -> list[tuple[int, ...]]:
    """Add at most one cut per segment where the next action's entropy rises most.

    Args:
        actions: Per episode, (T,) discrete action ids.
        boundaries: Per episode, segment starts (first 0), strictly increasing.
        min_rise: Nats the entropy of the next action must rise by, from one prefix to the next.
        min_count: Segments that must share the prefix before its entropy is trusted.
        min_offset: Actions of the segment that stay before a new cut.

    Returns:
        Per episode, the segment starts with the new cuts added.
    """
    if min_rise <= 0 or min_count < 1 or min_offset < 1:
        raise ValueError("entropy_rise_cuts: min_rise > 0, min_count >= 1, min_offset >= 1")
    # --- a trie of anchored prefixes: node (context, a_0, ..., a_{j-1}) -> next-action counts ---
    children: dict[tuple[int, int], int] = {}
    next_counts: list[Counter[int]] = []
    paths: list[list[tuple[int, list[int]]]] = []  # per episode: (start, trie node per prefix)

    def child(node: int, symbol: int) -> int:
        key = (node, symbol)
        if key not in children:
            children[key] = len(next_counts)
            next_counts.append(Counter())
        return children[key]

    root = -1
    for acts, starts in zip(actions, boundaries, strict=True):
        ends = [*starts[1:], len(acts)]
        episode = []
        for lo, hi in zip(starts, ends, strict=True):
            node = child(root, int(acts[lo - 1]) if lo > 0 else _START)
            nodes = [node]  # nodes[j]: the prefix holding the segment's first j actions
            for t in range(lo, hi):
                next_counts[node][int(acts[t])] += 1
                node = child(node, int(acts[t]))
                nodes.append(node)
            next_counts[node][_END] += 1
            episode.append((lo, nodes))
        paths.append(episode)
    entropy = [_entropy(c) for c in next_counts]
    support = [sum(c.values()) for c in next_counts]
    # --- per segment, the largest trusted rise past min_offset actions ---
    out = []
    for starts, episode in zip(boundaries, paths, strict=True):
        new = set(starts)
        for lo, nodes in episode:
            best, cut = min_rise, None
            for j in range(min_offset, len(nodes) - 1):  # cut before the segment's action j
                node = nodes[j]
                rise = entropy[node] - entropy[nodes[j - 1]]
                if support[node] >= min_count and (rise > best or (cut is None and rise == best)):
                    best, cut = rise, lo + j
            if cut is not None:
                new.add(cut)
        out.append(tuple(sorted(new)))
    return out
