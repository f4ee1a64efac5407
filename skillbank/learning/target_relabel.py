"""Relabel hindsight targets to the next target the task names (waypoints take their goal's).

A hindsight target is what a segment ends facing. While exploring, most segments end at things
the task never mentions (BabyAI BossLevel: doors, on the way to "the blue box"); a controller
trained on those targets names a door at nearly every decision, and the skill never learns where
the exploring is headed. Here a segment's target is *named* when its content is associated with a
word of its task, measured from the data alone: the lift P(content | word in task) / P(content)
over all segments, reaching ``min_lift`` for some word of the segment's task (a cross-situational
lexicon: "box" lifts box contents, "blue" blue ones; a door's content is lifted by no word when
doors end segments in every kind of task). A segment whose target is not named takes the target
of the next named segment of its episode, if any (as goal relabelling does with the episode's
eventual goal, Andrychowicz et al., 2017); the last unnamed segments keep their own.

The background (the content the interaction cell shows most often: BabyAI's empty floor; pass it
as ``background``) is named by no word: a task never asks for "nothing", so a segment ending facing
it was headed elsewhere. Left to the lift alone, a relation word can come to name it: in "put the
ball next to the key" the pick-up and the walk to the drop spot both end facing the floor, and
with enough put-next tasks in the data P(floor | "next") / P(floor) crosses the threshold (twelve
BabyAI levels: "put" and "next" named it, the pick-ups and walks kept the floor as their target,
the controller learned to name the floor there, and PutNextLocal fell from 80-92% to 9%).

Nearby relabelling (:func:`relabel_nearby`) first looks around: a segment that ends facing an
unnamed place beside a named thing was headed for that thing (BabyAI "put the ball next to the
key": the walk with the ball ends facing the empty cell where it drops it, beside the key). Such a
segment takes the named content of a cell next to its own (the first, in the given order) that
is not what its episode's next named segment handles (the ball it carries); without one, the
next named target as above.

Domain-agnostic: contents are the targets' one-hot rows, words the task's token bag.

Example:
    >>> import numpy as np
    >>> targets = np.eye(3, dtype=np.float32)[[0, 1, 0, 2]]   # door, box, door, key
    >>> words = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)  # "box" task, "key" task
    >>> named = named_targets(targets, words, min_lift=1.5, min_count=1)
    >>> named.tolist()
    [False, True, False, True]
    >>> relabel_to_named(targets, [(0, 0, 5), (0, 5, 9), (1, 0, 4), (1, 4, 8)], named).argmax(1)
    array([1, 1, 2, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_MIN_LIFT", "Lexicon", "named_targets", "relabel_nearby", "relabel_to_named"]

DEFAULT_MIN_LIFT = 2.0
"""Least lift P(content | word) / P(content) by which a task word names a target content."""


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Which task words name which target contents, learned from segments (see the module).

    Attributes:
        contents: (K, C) the distinct contents seen, 0/1.
        names: (K, V) whether word v names content k.
    """

    contents: npt.NDArray[np.bool_]
    names: npt.NDArray[np.bool_]

    @classmethod
    def fit(
        cls,
        targets: npt.NDArray[np.float32],
        words: npt.NDArray[np.bool_],
        min_lift: float = DEFAULT_MIN_LIFT,
        min_count: int = 3,
        background: npt.NDArray[np.bool_] | None = None,
    ) -> Lexicon:
        """Lexicon of segments' targets (N, C) and their tasks' word bags (N, V): content k is
        named by word v when P(k | v in task) / P(k) >= ``min_lift`` over >= ``min_count``
        segments with both; the ``background`` content (C,) by no word."""
        if len(targets) != len(words):
            raise ValueError(f"one word bag per target, got {len(words)} for {len(targets)}")
        if not len(targets):
            return cls(np.zeros((0, targets.shape[1]), bool), np.zeros((0, words.shape[1]), bool))
        contents, content = np.unique(targets > 0.5, axis=0, return_inverse=True)
        content = content.reshape(-1)  # (N,) content ids
        one_hot = np.eye(len(contents), dtype=np.float64)[content]  # (N, K)
        bag = words.astype(np.float64)  # (N, V)
        together = one_hot.T @ bag  # (K, V) segments with content k and word v
        p_content = one_hot.mean(0)  # (K,)
        p_given_word = together / np.maximum(bag.sum(0), 1.0)  # (K, V)
        lift = p_given_word / np.maximum(p_content[:, None], 1e-12)
        names = (lift >= min_lift) & (together >= min_count)
        if background is not None:
            names[(contents == (np.asarray(background) > 0.5)).all(1)] = False
        return cls(contents, names)

    def named(
        self, contents: npt.NDArray[np.float32], words: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """Per row (N,), whether a word of ``words`` (N, V) names ``contents`` (N, C); a content
        the lexicon never saw is named by none."""
        index = {row.tobytes(): k for k, row in enumerate(self.contents)}
        found = np.array([index.get(row.tobytes(), -1) for row in contents > 0.5], np.int64)
        named = np.zeros(len(contents), bool)
        known = found >= 0
        named[known] = (self.names[found[known]] & words[known]).any(1)
        return named


def named_targets(
    targets: npt.NDArray[np.float32],
    words: npt.NDArray[np.bool_],
    min_lift: float = DEFAULT_MIN_LIFT,
    min_count: int = 3,
    background: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.bool_]:
    """Per segment (N,), whether a word of its task names its target content.

    Args:
        targets: (N, C) the segments' targets, one-hot per group (equal rows: one content).
        words: (N, V) the words of each segment's task (a bag).
        min_lift: Least lift of the content given one of the words.
        min_count: Least segments with the word and the content together that count.
        background: (C,) the content no word names (see the module); ``None``: none.
    """
    return Lexicon.fit(targets, words, min_lift, min_count, background).named(targets, words)


def relabel_to_named(
    targets: npt.NDArray[np.float32],
    spans: Sequence[tuple[int, int, int]],
    named: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float32]:
    """Targets (N, C) where each unnamed segment takes the target of the next named segment of
    its episode (by start step); unnamed segments after the last named one keep their own.

    Args:
        targets: (N, C) the segments' own targets.
        spans: Per segment, (episode, start, stop).
        named: (N,) from :func:`named_targets`.
    """
    out = targets.copy()
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1]))
    goal: int | None = None
    episode: int | None = None
    for i in reversed(order):
        if spans[i][0] != episode:
            goal, episode = None, spans[i][0]
        if named[i]:
            goal = i
        elif goal is not None:
            out[i] = targets[goal]
    return out


def relabel_nearby(
    targets: npt.NDArray[np.float32],
    nearby: npt.NDArray[np.float32],
    words: npt.NDArray[np.bool_],
    spans: Sequence[tuple[int, int, int]],
    min_lift: float = DEFAULT_MIN_LIFT,
    min_count: int = 3,
    background: npt.NDArray[np.bool_] | None = None,
    held: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Targets (N, C) where each unnamed segment takes the first named content beside its own
    that its episode's next named target is not, else that next named target (see the module).

    Args:
        targets: (N, C) the segments' own targets.
        nearby: (N, M, C) the contents of M cells beside each segment's target cell, at its end.
        words: (N, V) the words of each segment's task.
        spans: Per segment, (episode, start, stop).
        min_lift: As :func:`named_targets` (the lexicon is fitted on the own targets).
        min_count: As :func:`named_targets`.
        background: As :func:`named_targets`.
        held: (N, C) what the agent held at each segment's start, or ``None``; a segment whose
            own target is what it held counts as unnamed (a drop ends facing what it dropped).
    """
    if held is not None and held.shape != targets.shape:
        raise ValueError(f"held must be (N, C) like targets {targets.shape}, got {held.shape}")
    if nearby.shape[0] != len(targets) or nearby.shape[2:] != targets.shape[1:]:
        raise ValueError(
            f"nearby must be (N, M, C) for targets {targets.shape}, got {nearby.shape}"
        )
    lexicon = Lexicon.fit(targets, words, min_lift, min_count, background)
    named = lexicon.named(targets, words)
    if held is not None:
        named &= ~((held > 0.5) == (targets > 0.5)).all(1)
    out = relabel_to_named(targets, spans, named)
    num, cells = nearby.shape[:2]
    flat = nearby.reshape(num * cells, -1)
    beside = lexicon.named(flat, np.repeat(words, cells, axis=0)).reshape(num, cells)  # (N, M)
    headed = (nearby > 0.5) != (out[:, None, :] > 0.5)  # differs from the next named target
    beside &= headed.any(2)
    if held is not None:  # nor what the agent holds (its own cell, beside, shows it)
        beside &= ((nearby > 0.5) != (held[:, None, :] > 0.5)).any(2)
    for i in np.flatnonzero(~named & beside.any(1)):
        out[i] = nearby[i, int(np.argmax(beside[i]))]
    return out
