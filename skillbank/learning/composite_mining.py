"""Find recurring sequences of skills in demonstrations: the candidates for composite skills.

After segmentation and assignment every demonstration is a sequence of skill indices (one per
segment), e.g. ``[goto, pickup, goto, drop]``. A sequence of 2-3 skills that recurs across many
episodes is a procedure worth keeping as one skill of its own (Sutton, Precup & Singh, 1999:
options over options).

The rule (:func:`mine_patterns`): an n-gram of consecutive skills (``min_length <= n <=
max_length``, not one skill repeated) becomes a composite when

1. it occurs in at least ``min_support`` of the episodes and in at least ``min_episodes`` of
   them; and
2. it is not explained by a longer pattern already chosen: a sub-sequence of a chosen pattern
   is kept only if its support exceeds that pattern's by at least ``min_support`` (it also
   occurs often on its own);

candidates are taken longest first, then by support (then by the sequence, so ties are
deterministic), up to ``max_composites``.

:func:`cover_sequence` then cuts one episode's sequence into calls: greedy left to right, the
first pattern (in the given priority order) matching at a position takes that span.

Example:
    >>> seqs = [[0, 1, 2], [0, 1], [3, 0, 1], [2]]
    >>> [p.sequence for p in mine_patterns(seqs, CompositeMiningConfig(min_episodes=2))]
    [(0, 1)]
    >>> cover_sequence([3, 0, 1, 0, 1], [(0, 1)])
    [(1, 3, 0), (3, 5, 0)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CompositeMiningConfig", "SkillPattern", "cover_sequence", "mine_patterns"]


@dataclass(frozen=True, slots=True)
class CompositeMiningConfig:
    """The rule for when a recurring sequence of skills becomes a composite skill.

    Attributes:
        min_length: Shortest sequence considered (skills per composite).
        max_length: Longest sequence considered.
        min_support: Share of episodes a sequence must occur in (and the margin by which a
            sub-sequence of a chosen pattern must exceed that pattern's support).
        min_episodes: Episodes a sequence must occur in (small datasets).
        max_composites: Composites made per learn call at most.
    """

    min_length: int = 2
    max_length: int = 3
    min_support: float = 0.2
    min_episodes: int = 8
    max_composites: int = 4

    def __post_init__(self) -> None:
        if not 2 <= self.min_length <= self.max_length <= 8:
            raise ValueError(
                "CompositeMiningConfig: need 2 <= min_length <= max_length <= 8, got "
                f"{self.min_length}..{self.max_length}"
            )
        if not 0.0 < self.min_support <= 1.0:
            raise ValueError(f"CompositeMiningConfig.min_support must lie in (0, 1], got {self}")
        if self.min_episodes < 1 or self.max_composites < 0:
            raise ValueError("CompositeMiningConfig: min_episodes >= 1 and max_composites >= 0")


@dataclass(frozen=True, slots=True)
class SkillPattern:
    """A recurring sequence of skills.

    Attributes:
        sequence: Skill indices, in order (length >= 2).
        support: Share of the episodes it occurs in.
        num_episodes: Episodes it occurs in.
        num_occurrences: Non-overlapping occurrences over all episodes.
    """

    sequence: tuple[int, ...]
    support: float
    num_episodes: int
    num_occurrences: int

    def __post_init__(self) -> None:
        if len(self.sequence) < 2 or min(self.sequence) < 0:
            raise ValueError(f"SkillPattern.sequence needs >= 2 skill indices, got {self.sequence}")
        if not 0.0 <= self.support <= 1.0:
            raise ValueError(f"SkillPattern.support must lie in [0, 1], got {self.support}")


def _contains(longer: tuple[int, ...], shorter: tuple[int, ...]) -> bool:
    n = len(shorter)
    return any(longer[i : i + n] == shorter for i in range(len(longer) - n + 1))


def mine_patterns(
    sequences: Sequence[Sequence[int]], config: CompositeMiningConfig
) -> tuple[SkillPattern, ...]:
    """Recurring skill sequences that pass the rule in the module docstring, in priority order.

    Args:
        sequences: Per episode, its skills in order (negative entries, unassigned segments,
            break a sequence: no pattern spans them).
        config: The rule's thresholds.

    Returns:
        The chosen patterns, longest first, then by support.
    """
    if not sequences or config.max_composites == 0:
        return ()
    episodes: Counter[tuple[int, ...]] = Counter()
    for seq in sequences:
        seen: set[tuple[int, ...]] = set()
        for n in range(config.min_length, config.max_length + 1):
            for i in range(len(seq) - n + 1):
                gram = tuple(int(s) for s in seq[i : i + n])
                if min(gram) >= 0 and len(set(gram)) > 1:
                    seen.add(gram)
        episodes.update(seen)
    total = len(sequences)
    candidates = sorted(
        (g for g, c in episodes.items() if c >= config.min_episodes),
        key=lambda g: (-len(g), -episodes[g], g),
    )
    chosen: list[SkillPattern] = []
    for gram in candidates:
        if len(chosen) >= config.max_composites:
            break
        support = episodes[gram] / total
        if support < config.min_support:
            continue
        if any(
            _contains(p.sequence, gram) and support < p.support + config.min_support for p in chosen
        ):
            continue
        occurrences = sum(len(cover_sequence(seq, [gram])) for seq in sequences)
        chosen.append(SkillPattern(gram, support, episodes[gram], occurrences))
    return tuple(chosen)


def cover_sequence(
    sequence: Sequence[int], patterns: Sequence[Sequence[int]]
) -> list[tuple[int, int, int]]:
    """Non-overlapping occurrences of ``patterns`` in ``sequence``, greedy left to right.

    At each position the first pattern (in the order given) that matches takes the span;
    elsewhere the position stays a single-skill call.

    Returns:
        ``(start, stop, pattern index)`` per occurrence, positions into ``sequence``, stop
        exclusive, in order.
    """
    found: list[tuple[int, int, int]] = []
    wanted = [tuple(int(s) for s in p) for p in patterns]
    seq = [int(s) for s in sequence]
    i = 0
    while i < len(seq):
        for j, pattern in enumerate(wanted):
            if tuple(seq[i : i + len(pattern)]) == pattern:
                found.append((i, i + len(pattern), j))
                i += len(pattern)
                break
        else:
            i += 1
    return found
