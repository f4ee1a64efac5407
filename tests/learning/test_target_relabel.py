"""Relabelling hindsight targets: waypoints no task word names take their goal's target."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.target_relabel import (
    Lexicon,
    named_targets,
    relabel_nearby,
    relabel_to_named,
)

DOOR, BOX, KEY, BALL = 0, 1, 2, 3


def _world(episodes: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """Episodes "fetch the box|key|ball": two door waypoints, then the fetched thing (a goal's
    content is 3x likelier given its word). Words: 0 "fetch", 1 "box", 2 "key", 3 "ball"."""
    rng = np.random.default_rng(seed)
    targets, words, spans = [], [], []
    for e in range(episodes):
        goal = int(rng.integers(BOX, BALL + 1))
        bag = np.zeros(4, bool)
        bag[[0, goal]] = True
        for j, kind in enumerate([DOOR, DOOR, goal]):
            targets.append(np.eye(4, dtype=np.float32)[kind])
            words.append(bag)
            spans.append((e, 10 * j, 10 * j + 10))
    return np.stack(targets), np.stack(words), spans


def test_words_name_the_goals_not_the_waypoints() -> None:
    targets, words, _ = _world()
    named = named_targets(targets, words)
    kinds = targets.argmax(1)
    assert named[kinds != DOOR].all() and not named[kinds == DOOR].any()


def test_waypoints_take_the_next_named_target_of_their_own_episode() -> None:
    targets, words, spans = _world()
    out = relabel_to_named(targets, spans, named_targets(targets, words))
    for e in range(0, len(spans), 3):
        goal = targets[e + 2]
        assert all(np.array_equal(out[e + j], goal) for j in range(3))
    # the input is not changed, and order of the rows does not matter
    assert targets[0].argmax() == DOOR
    perm = np.random.default_rng(1).permutation(len(spans))
    shuffled = relabel_to_named(
        targets[perm], [spans[i] for i in perm], named_targets(targets[perm], words[perm])
    )
    np.testing.assert_array_equal(shuffled, out[perm])


def test_unnamed_segments_after_the_last_named_keep_their_own() -> None:
    targets = np.eye(4, dtype=np.float32)[[BOX, DOOR, DOOR]]
    named = np.array([True, False, False])
    out = relabel_to_named(targets, [(0, 0, 3), (0, 3, 6), (1, 0, 4)], named)
    np.testing.assert_array_equal(out, targets)


def test_rare_pairs_name_nothing_and_sizes_must_agree() -> None:
    targets, words, _ = _world(episodes=2)
    assert not named_targets(targets, words, min_count=50).any()
    with pytest.raises(ValueError, match="one word bag per target"):
        named_targets(targets, words[:-1])
    assert named_targets(targets[:0], words[:0]).shape == (0,)


def test_relabelling_needs_hindsight_targets() -> None:
    with pytest.raises(ValueError, match="relabel_targets relabels hindsight targets"):
        SkillTrainConfig(relabel_targets=True)
    assert SkillTrainConfig(argument="hindsight", relabel_targets=True).relabel_targets


EMPTY = 4  # a fifth content: the empty place something is dropped on


Segment = tuple[int, np.ndarray, int]  # (target content, contents beside it, content held)
Span = tuple[int, int, int]
PutWorld = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Span], list[Span]]


def _put_episodes(
    seed: int, segments_of: Callable[[int, int, np.ndarray], list[Segment]]
) -> PutWorld:
    """The fetch episodes of :func:`_world` (nothing beside but doors, nothing held), then 60
    "put the <goal> next to the <other>" episodes of ``segments_of(goal, other, eye)``: targets,
    nearby (N, 4, 5), held, words, spans and per put episode (first segment, goal, other)."""
    rng = np.random.default_rng(seed)
    eye = np.eye(5, dtype=np.float32)
    fetch_targets, fetch_words, fetch_spans = _world(episodes=120)
    targets = list(np.pad(fetch_targets, ((0, 0), (0, 1))))
    nearby = [eye[[DOOR] * 4]] * len(targets)
    held = [eye[EMPTY]] * len(targets)
    words, spans, puts = list(fetch_words), list(fetch_spans), []
    for e in range(120, 180):
        goal, other = (int(k) for k in rng.choice([BOX, KEY, BALL], 2, replace=False))
        bag = np.zeros(4, bool)
        bag[[0, goal, other]] = True
        puts.append((len(targets), goal, other))
        for j, (kind, around, holding) in enumerate(segments_of(goal, other, eye)):
            targets.append(eye[kind])
            nearby.append(around)
            held.append(eye[holding])
            words.append(bag)
            spans.append((e, 10 * j, 10 * j + 10))
    return np.stack(targets), np.stack(nearby), np.stack(held), np.stack(words), spans, puts


def test_a_walk_ending_beside_a_named_thing_takes_it() -> None:
    """Episodes "put the <goal> next to the <other>": fetch the goal (named), walk with it to the
    empty cell beside the other (unnamed: empty; the goal, carried, is beside it too), drop it
    there (ends facing the goal again); between them, "fetch" episodes as in :func:`_world`."""
    targets_np, nearby_np, _, words_np, spans, puts = _put_episodes(
        0,
        lambda goal, other, eye: [
            (goal, eye[[DOOR] * 4], EMPTY),
            # cells beside the walk's target cell: [door, carried (the goal), other, empty]
            (EMPTY, eye[[DOOR, goal, other, EMPTY]], goal),
            (goal, eye[[EMPTY] * 4], goal),
        ],
    )
    out = relabel_nearby(targets_np, nearby_np, words_np, spans)
    nxt = relabel_to_named(targets_np, spans, named_targets(targets_np, words_np))
    for fetch, _, other in puts:
        walk, drop = fetch + 1, fetch + 2
        # the walk heads for the other thing, not for the goal it carries (which "next" gives)
        assert out[walk].argmax() == other and nxt[walk].argmax() == targets_np[drop].argmax()
        np.testing.assert_array_equal(out[[fetch, drop]], targets_np[[fetch, drop]])
    # where nothing named is beside, as "next": the fetch episodes' door waypoints
    fetches = puts[0][0]
    np.testing.assert_array_equal(out[:fetches], nxt[:fetches])
    with pytest.raises(ValueError, match="nearby"):
        relabel_nearby(targets_np, nearby_np[:, :, :2], words_np, spans)


def test_a_lexicon_names_only_contents_it_has_seen() -> None:
    targets, words, _ = _world()
    lexicon = Lexicon.fit(targets, words)
    unseen = np.zeros((1, 4), np.float32)  # no content at all
    assert not lexicon.named(unseen, words[:1]).any()
    np.testing.assert_array_equal(lexicon.named(targets, words), named_targets(targets, words))


def test_nearby_relabelling_needs_next_relabelling() -> None:
    with pytest.raises(ValueError, match="relabel_targets=True too"):
        SkillTrainConfig(argument="hindsight", relabel_nearby=True)
    config = SkillTrainConfig(argument="hindsight", relabel_targets=True, relabel_nearby=True)
    assert config.relabel_mode == "nearby"
    assert SkillTrainConfig().relabel_mode == "none"


def _put_world() -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """ "fetch" episodes as :func:`_world` and as many "put the <goal> next to the <other>"
    episodes: fetch the goal, pick it up (ends facing the empty floor), walk to the empty cell
    beside the other, drop it. Words: 0 "fetch", 1-3 the things, 4 "put". The floor ends half of
    a put episode's segments and a fifth of all, so "put" lifts it 2.5x."""
    rng = np.random.default_rng(0)
    eye = np.eye(5, dtype=np.float32)
    fetch_targets, fetch_words, spans = _world(episodes=120)
    targets = list(np.pad(fetch_targets, ((0, 0), (0, 1))))
    words = list(np.pad(fetch_words, ((0, 0), (0, 1))))
    nearby = [eye[[DOOR] * 4]] * len(targets)
    puts = []
    for e in range(120, 180):
        goal, other = rng.choice([BOX, KEY, BALL], 2, replace=False)
        bag = np.zeros(5, bool)
        bag[[4, goal, other]] = True
        puts.append((len(targets), int(goal), int(other)))
        for j, (kind, around) in enumerate(
            [
                (goal, eye[[DOOR] * 4]),
                (EMPTY, eye[[DOOR] * 4]),
                (EMPTY, eye[[DOOR, goal, other, EMPTY]]),
                (goal, eye[[EMPTY] * 4]),
            ]
        ):
            targets.append(eye[kind])
            nearby.append(around)
            words.append(bag)
            spans.append((e, 10 * j, 10 * j + 10))
    return np.stack(targets), np.stack(nearby), np.stack(words), spans, puts


def test_no_word_names_the_background_floor() -> None:
    targets, nearby, words, spans, puts = _put_world()
    floor = np.eye(5, dtype=bool)[EMPTY]
    pickups = [first + 1 for first, _, _ in puts]
    # by lift alone, the relation word "put" comes to name the floor
    assert named_targets(targets, words)[pickups].all()
    assert not named_targets(targets, words, background=floor)[pickups].any()
    out = relabel_nearby(targets, nearby, words, spans, background=floor)
    for first, goal, other in puts:
        # the pick-up takes the goal it picks up, the walk with it the thing it is put next to
        assert out[first + 1].argmax() == goal and out[first + 2].argmax() == other
    kept = relabel_nearby(targets, nearby, words, spans)
    assert all(kept[first + 1].argmax() == EMPTY for first, _, _ in puts)


def test_a_target_the_agent_holds_is_not_where_it_goes() -> None:
    """With ``held`` (what the agent held at each segment's start), a drop, which ends facing
    what it dropped, counts as unnamed and takes the named thing beside the drop spot; the
    walk carrying the goal never takes the goal (shown in the agent's own cell, beside)."""
    targets_np, nearby_np, held_np, words_np, spans, puts = _put_episodes(
        1,
        lambda goal, other, eye: [
            (goal, eye[[DOOR] * 4], EMPTY),  # fetch the goal
            (EMPTY, eye[[DOOR, goal, other, EMPTY]], goal),  # walk with it beside the other
            (goal, eye[[other, EMPTY, EMPTY, EMPTY]], goal),  # drop: facing the goal again
        ],
    )
    out = relabel_nearby(targets_np, nearby_np, words_np, spans, held=held_np)
    plain = relabel_nearby(targets_np, nearby_np, words_np, spans)
    for fetch, goal, other in puts:
        walk, drop = fetch + 1, fetch + 2
        assert out[fetch].argmax() == goal and out[walk].argmax() == other
        assert out[drop].argmax() == other and plain[drop].argmax() == goal
    fetches = puts[0][0]
    np.testing.assert_array_equal(out[:fetches], plain[:fetches])
    with pytest.raises(ValueError, match="held must be"):
        relabel_nearby(targets_np, nearby_np, words_np, spans, held=held_np[:, :2])


def test_held_relabelling_refines_nearby_relabelling() -> None:
    with pytest.raises(ValueError, match="relabel_nearby=True too"):
        SkillTrainConfig(argument="hindsight", relabel_targets=True, relabel_held=True)
    config = SkillTrainConfig(
        argument="hindsight", relabel_targets=True, relabel_nearby=True, relabel_held=True
    )
    assert config.relabel_mode == "nearby-held"
