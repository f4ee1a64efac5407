"""Replay an evaluation trace's BabyAI episodes in the simulator: what each skill call saw.

``skillbank eval babyai/L --trace F`` records every skill call of every episode (its step, skill,
target cell and actions) but not the world. Replaying an episode — the level reset with the
episode's seed, the calls' actions stepped in order — recovers it, and per call this module asks
the question a failure analysis starts with: was the thing the call was sent to (its target
cell's object type and colour) ever in the agent's view (MiniGrid's ``agent_sees``: the view
cone, walls occluding) while the call ran, and did the call end facing it? A walk that runs to
the step cap (``max_skill_steps``) without once seeing its target was searching, not heading
for something seen: in failed BossLevel episodes that is most of them (README).

Per episode it also asks what became of the level's locked doors (was one unlocked; how often
did the agent toggle one without a key of its colour in hand) and, for a mission sequenced by
"then" or "after you", whether the part due second was done before the first (BabyAI does not
count it then).

Only the simulator's public state is read, after the fact; nothing here acts.

Example:
    >>> episodes = [json.loads(line) for line in open("runs/boss.jsonl")]  # doctest: +SKIP
    >>> summary = summarise_replays("BossLevel", episodes, max_skill_steps=64)  # doctest: +SKIP
    >>> summary["failed"]["walks_at_cap_never_seeing_target"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skillbank.envs.babyai import babyai_gym_id, cell_object

__all__ = ["MOVE_ACTIONS", "CallReplay", "clause_progress", "replay_episode", "summarise_replays"]

MOVE_ACTIONS = frozenset({0, 1, 2})
"""MiniGrid's turn left, turn right and forward: a call made of these alone is a walk."""

_TOGGLE = 5  # MiniGrid's toggle (open, close, unlock)


@dataclass(frozen=True, slots=True)
class CallReplay:
    """One skill call, replayed.

    Attributes:
        skill: The skill's id, as the trace gives it.
        steps: Actions the call took.
        target: The (type, colour) of the object its target cell names, or ``None`` (an empty
            cell, a wall, no target argument).
        walk: Every action a turn or a step forward (:data:`MOVE_ACTIONS`), more than one.
        seen_at_start: An object matching the target was in view when the call began.
        seen: One was in view at the start or after any of the call's actions.
        ends_facing: The call ended facing one.
    """

    skill: str
    steps: int
    target: tuple[str, str] | None
    walk: bool
    seen_at_start: bool
    seen: bool
    ends_facing: bool


def _matching(world: Any, target: tuple[str, str] | None) -> list[tuple[int, int]]:
    """Grid positions of the objects matching ``target`` (type, colour) now."""
    if target is None:
        return []
    kind, colour = target
    found = []
    for x in range(world.width):
        for y in range(world.height):
            obj = world.grid.get(x, y)
            if obj is not None and obj.type == kind and obj.color == colour:
                found.append((x, y))
    return found


def _sees(world: Any, target: tuple[str, str] | None) -> bool:
    return any(world.agent_sees(x, y) for x, y in _matching(world, target))


def clause_progress(instruction: Any) -> tuple[int, int]:
    """(clauses verified done, clauses) of a BabyAI instruction object as the episode left it.

    Joined instructions (``AndInstr``, ``BeforeInstr``, ``AfterInstr``) keep whether each part
    succeeded (``a_done`` / ``b_done``); a part done counts all its clauses, a part not done is
    looked into (an "and" inside a "then" may have one of two done). A single clause holds no
    such flag: it reads as not done (the caller knows whether the episode succeeded).
    """
    parts = getattr(instruction, "instr_a", None), getattr(instruction, "instr_b", None)
    if parts[0] is None or parts[1] is None:
        return 0, 1
    done = total = 0
    for part, flag in zip(parts, ("a_done", "b_done"), strict=True):
        part_done, part_total = clause_progress(part)
        total += part_total
        done += part_total if getattr(instruction, flag, None) == "success" else part_done
    return done, total


class _OrderWatch:
    """Watches a mission whose top is "A, then B" (``BeforeInstr``) or "B after you A"
    (``AfterInstr``): did the part to do second get done, by its own verifier run from the
    start, before the part to do first? (BabyAI does not count it then: it must be done again.)

    Call :meth:`step` after every action the world takes; read :attr:`early` at the end.
    """

    def __init__(self, world: Any) -> None:
        import copy

        self.instruction = world.instrs
        kind = type(self.instruction).__name__
        self.sequenced = kind in ("BeforeInstr", "AfterInstr")
        self.early = False
        self._watching = self.sequenced
        if self.sequenced:
            before = kind == "BeforeInstr"
            self._first_flag = "a_done" if before else "b_done"
            second = self.instruction.instr_b if before else self.instruction.instr_a
            # a copy of the second part's verifier (not of the world it reads), from the start
            self._second = copy.deepcopy(second, memo={id(world): world})
            self._second.reset_verifier(world)

    def step(self, action: int) -> None:
        if not self._watching:
            return
        if getattr(self.instruction, self._first_flag, None) == "success":
            self._watching = False  # the first part is done: order no longer matters
        elif self._second.verify(action) == "success":
            self.early, self._watching = True, False


@dataclass(frozen=True, slots=True)
class _Replayed:
    """One traced episode replayed: its calls, the mission's clauses (done, total) at its end,
    its level's locked doors (how many at the start, unlocked by the end, toggled at while not
    carrying their key), and whether its mission is sequenced ("then", "after you") and the
    part to do second got done before the first (:class:`_OrderWatch`)."""

    episode: Mapping[str, Any]
    calls: list[CallReplay]
    progress: tuple[int, int]
    locked: int
    unlocked: int
    futile_unlocks: int
    sequenced: bool
    second_part_first: bool


def _locked_doors(world: Any) -> list[tuple[int, int]]:
    return [
        (x, y)
        for x in range(world.width)
        for y in range(world.height)
        if (obj := world.grid.get(x, y)) is not None and obj.type == "door" and obj.is_locked
    ]


def _futile_unlock(world: Any, action: int, locked: list[tuple[int, int]]) -> bool:
    """``action`` toggles a locked door without its key (a key of the door's colour) in hand."""
    front = tuple(int(v) for v in world.front_pos)
    if action != _TOGGLE or front not in locked:
        return False
    door, held = world.grid.get(*front), world.carrying
    return bool(door.is_locked) and not (
        held is not None and held.type == "key" and held.color == door.color
    )


def replay_episode(level: str, episode: Mapping[str, Any]) -> list[CallReplay]:
    """Replay one traced episode of ``level`` (a line of ``skillbank eval --trace``).

    Raises:
        ValueError: The episode lacks ``seed``/``task``/``calls``, or the level reset with its
            seed states another mission (the trace is of another level).
        EnvironmentNotFoundError: Unknown level.
    """
    return _replay(level, episode).calls


def _replay(level: str, episode: Mapping[str, Any]) -> _Replayed:
    """:func:`replay_episode`'s calls, the mission's :func:`clause_progress` at its end (a
    successful episode: every clause done), what became of the level's locked doors, and
    whether a sequenced mission's parts were done out of order."""
    import gymnasium as gym

    missing = [k for k in ("seed", "task", "calls") if k not in episode]
    if missing:
        raise ValueError(
            f"a traced episode needs {missing}: pass lines written by `skillbank eval --trace`"
        )
    env = gym.make(babyai_gym_id(level), disable_env_checker=True)
    try:
        # minigrid prints every rejected layout sample to stdout; keep stdout for the caller
        with contextlib.redirect_stdout(io.StringIO()):
            observation, _ = env.reset(seed=int(episode["seed"]))
        if observation["mission"] != episode["task"]:
            raise ValueError(
                f"{level} with seed {episode['seed']} states {observation['mission']!r}, the trace "
                f"{episode['task']!r}: replay a trace with the level it was evaluated on"
            )
        world: Any = env.unwrapped  # a MiniGridEnv
        locked = _locked_doors(world)
        order = _OrderWatch(world)
        futile = 0
        replays = []
        for call in episode["calls"]:
            target = cell_object(call.get("argument", []))
            actions = [int(a) for a in call["actions"]]
            seen_at_start = _sees(world, target)
            seen = seen_at_start
            for action in actions:
                futile += _futile_unlock(world, action, locked)
                env.step(action)
                order.step(action)
                seen = seen or _sees(world, target)
            front = tuple(int(v) for v in world.front_pos)
            replays.append(
                CallReplay(
                    skill=str(call["skill"]),
                    steps=len(actions),
                    target=target,
                    walk=len(actions) > 1 and set(actions) <= MOVE_ACTIONS,
                    seen_at_start=seen_at_start,
                    seen=seen,
                    ends_facing=front in _matching(world, target),
                )
            )
        done, clauses = clause_progress(world.instrs)
        progress = (clauses if episode.get("success") else done, clauses)
        unlocked = sum(not world.grid.get(*p).is_locked for p in locked)
        return _Replayed(
            episode, replays, progress, len(locked), unlocked, futile, order.sequenced, order.early
        )
    finally:
        env.close()


def _summary(episodes: Sequence[_Replayed], cap: int) -> dict[str, Any]:
    walks = [c for e in episodes for c in e.calls if c.walk and c.target is not None]
    capped = [c for c in walks if c.steps >= cap]
    blind = [c for c in capped if not c.seen]
    steps = sum(int(e.episode["steps"]) for e in episodes)
    joined = [e.progress for e in episodes if e.progress[1] > 1]
    return {
        "episodes": len(episodes),
        "steps": steps,
        "calls": sum(len(e.calls) for e in episodes),
        "walks": len(walks),
        "walks_seeing_target_at_start": sum(c.seen_at_start for c in walks),
        "walks_seeing_target": sum(c.seen for c in walks),
        "walks_ending_facing_target": sum(c.ends_facing for c in walks),
        "walks_at_cap": len(capped),
        "walks_at_cap_never_seeing_target": len(blind),
        "share_of_steps_in_blind_capped_walks": (
            sum(c.steps for c in blind) / steps if steps else 0.0
        ),
        "missions_of_several_clauses": len(joined),
        "finishing_no_clause": sum(done == 0 for done, _ in joined),
        "finishing_some_clauses": sum(0 < done < total for done, total in joined),
        "levels_with_a_locked_door": sum(e.locked > 0 for e in episodes),
        "unlocking_a_door": sum(e.unlocked > 0 for e in episodes),
        "toggles_at_a_locked_door_without_its_key": sum(e.futile_unlocks for e in episodes),
        "sequenced_missions": sum(e.sequenced for e in episodes),
        "doing_the_second_part_first": sum(e.second_part_first for e in episodes),
    }


def summarise_replays(
    level: str,
    episodes: Iterable[Mapping[str, Any]],
    *,
    max_skill_steps: int,
    limit: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Replay traced episodes and count, for failed and successful ones apart, the walks (calls
    of moves only, with an object as target) that saw their target, ended facing it, ran to
    ``max_skill_steps`` and ran to it without ever seeing their target; and the missions of
    several clauses that finished none of them, or some but not all; the levels with a locked
    door, those where one got unlocked, and the toggles at a locked door made without its key;
    the missions sequenced by "then" / "after you" and those whose part to do second got done
    before the first (which BabyAI does not count).

    Args:
        level: The BabyAI level the trace was evaluated on.
        episodes: Parsed trace lines.
        max_skill_steps: The cap the evaluation ran skills under.
        limit: Replay at most this many episodes of each outcome (the first ones).
    """
    groups: dict[str, list[_Replayed]] = {
        "failed": [],
        "succeeded": [],
    }
    for episode in episodes:
        group = groups["succeeded" if episode.get("success") else "failed"]
        if limit is not None and len(group) >= limit:
            continue
        group.append(_replay(level, episode))
    return {name: _summary(group, max_skill_steps) for name, group in groups.items()}
