"""Replaying traced BabyAI episodes in the simulator (skillbank.envs.babyai_replay, `trace`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("minigrid")

import gymnasium as gym
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.utils.baby_ai_bot import BabyAIBot
from typer.testing import CliRunner

from skillbank.cli.app import app
from skillbank.envs.babyai import cell_object, describe_cell
from skillbank.envs.babyai_replay import clause_progress, replay_episode, summarise_replays


def _cell(kind: str, colour: str) -> list[float]:
    """A target argument as traces record it: three one-hot rows (object, colour, state)."""
    rows = [[0.0] * 11 for _ in range(3)]
    rows[0][OBJECT_TO_IDX[kind]] = 1.0
    rows[1][COLOR_TO_IDX[colour]] = 1.0
    rows[2][0] = 1.0
    return [v for row in rows for v in row]


def _run_bot(env: Any, instruction: Any = None) -> tuple[list[int], list[tuple[int, int]], float]:
    """The bot's actions from ``env``'s current state until its mission (or ``instruction``, set
    as the mission) is done; after each, the mission's clause progress; the last reward."""
    world = env.unwrapped
    if instruction is not None:
        world.instrs = instruction
        instruction.reset_verifier(world)
    bot = BabyAIBot(world)
    actions, progress = [], []
    done, reward = False, 0.0
    while not done:
        action = int(bot.replan())
        _, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        progress.append(clause_progress(world.instrs))
        done = terminated or truncated
    return actions, progress, float(reward)


def _bot_episode(seed: int, *, split: int | None = None) -> dict[str, Any]:
    """A GoToLocal episode as a trace line: the bot's actions as one call (or two, cut at
    ``split``) aimed at the mission's object."""
    env = gym.make("BabyAI-GoToLocal-v0")
    observation, _ = env.reset(seed=seed)
    actions, _, reward = _run_bot(env)
    desc = env.unwrapped.instrs.desc
    argument = _cell(desc.type, desc.color)
    cuts = [actions] if split is None else [actions[:split], actions[split:]]
    return _trace_line(seed, observation["mission"], cuts, reward > 0, argument, "walk")


def _trace_line(
    seed: int,
    task: str,
    cuts: list[list[int]],
    success: bool,
    argument: list[float] | None = None,
    skill: str = "bot",
) -> dict[str, Any]:
    """An episode as a line of `skillbank eval --trace`: one call per list of actions."""
    calls, step = [], 0
    for part in cuts:
        calls.append({"actions": part, "argument": argument or [], "skill": skill, "step": step})
        step += len(part)
    steps = sum(len(part) for part in cuts)
    return {"calls": calls, "seed": seed, "steps": steps, "success": success, "task": task}


def test_the_bots_walk_sees_its_target_and_ends_facing_it() -> None:
    episode = _bot_episode(3)
    assert episode["success"] and episode["task"] == "go to the red key"
    (call,) = replay_episode("GoToLocal", episode)
    assert call.target == ("key", "red") and call.walk
    assert call.steps == episode["steps"] and call.seen and call.ends_facing


def test_a_call_cut_short_does_not_end_facing_its_target() -> None:
    first, second = replay_episode("babyai/GoToLocal", _bot_episode(3, split=2))
    assert first.steps == 2 and not first.ends_facing
    assert second.ends_facing and second.seen_at_start == first.seen


def test_summaries_split_failed_from_successful_episodes_and_count_blind_capped_walks() -> None:
    won = _bot_episode(3)
    lost = {**_bot_episode(5), "success": False}
    # a call aimed at something the level does not hold is never seen, whatever it does
    lost["calls"][0]["argument"] = _cell("box", "purple")
    summary = summarise_replays("GoToLocal", [won, lost, won], max_skill_steps=3, limit=1)
    assert summary["succeeded"]["episodes"] == 1 and summary["failed"]["episodes"] == 1
    failed = summary["failed"]
    assert failed["walks"] == 1 and failed["walks_seeing_target"] == 0
    assert failed["walks_at_cap"] == failed["walks_at_cap_never_seeing_target"] == 1
    assert failed["share_of_steps_in_blind_capped_walks"] == pytest.approx(1.0)
    assert summary["succeeded"]["walks_ending_facing_target"] == 1


def test_a_trace_of_another_level_or_without_its_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="replay a trace with the level it was evaluated on"):
        replay_episode("PickupLoc", _bot_episode(3))
    with pytest.raises(ValueError, match="needs \\['seed'\\]"):
        replay_episode("GoToLocal", {"task": "go to the red key", "calls": []})


def test_cell_object_names_objects_only() -> None:
    assert cell_object(_cell("door", "blue")) == ("door", "blue")
    assert describe_cell(_cell("door", "blue")) == "blue door (open)"
    assert cell_object(_cell("empty", "red")) is None
    assert cell_object([1.0, 0.0]) is None  # no grid cell


def test_the_trace_command_prints_and_writes_its_counts(tmp_path: Path) -> None:
    trace_file = tmp_path / "t.jsonl"
    trace_file.write_text(json.dumps(_bot_episode(3)) + "\n" + json.dumps(_bot_episode(5)) + "\n")
    out = tmp_path / "sights.json"
    result = CliRunner().invoke(
        app, ["trace", "babyai/GoToLocal", str(trace_file), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "never seeing the target" in result.output
    payload = json.loads(out.read_text())
    assert payload["succeeded"]["episodes"] == 2 and payload["failed"]["episodes"] == 0
    assert payload["succeeded"]["walks_ending_facing_target"] == 2


def test_the_trace_command_explains_a_missing_or_broken_file(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["trace", "babyai/GoToLocal", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 1 and "skillbank eval babyai/LEVEL" in missing.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    bad = runner.invoke(app, ["trace", "babyai/GoToLocal", str(broken)])
    assert bad.exit_code == 1 and "broken.jsonl:1 is not JSON" in bad.output


def _bot_actions(level: str, seed: int) -> tuple[str, list[int], list[tuple[int, int]]]:
    """The bot's actions on ``level`` and, after each, the mission's clause progress."""
    env = gym.make(f"BabyAI-{level}-v0")
    observation, _ = env.reset(seed=seed)
    actions, progress, _ = _run_bot(env)
    return observation["mission"], actions, progress


def test_clause_progress_counts_the_parts_done_inside_joined_instructions() -> None:
    leaf = SimpleNamespace()
    both = SimpleNamespace(instr_a=leaf, instr_b=leaf, a_done="success", b_done="continue")
    assert clause_progress(leaf) == (0, 1)
    assert clause_progress(both) == (1, 2)
    then = SimpleNamespace(instr_a=both, instr_b=leaf, a_done="continue", b_done=False)
    assert clause_progress(then) == (1, 3)
    then.a_done = "success"
    assert clause_progress(then) == (2, 3)


def test_summaries_tell_missions_stuck_after_a_clause_from_ones_never_started() -> None:
    mission, actions, progress = _bot_actions("GoToSeq", 1)
    total = progress[-1][1]
    assert total >= 2 and progress[0][0] == 0
    first = next(t for t, (done, _) in enumerate(progress) if done > 0) + 1
    assert first < len(actions)

    def episode(steps: int, success: bool) -> dict[str, Any]:
        calls = [{"actions": actions[:steps], "argument": [], "skill": "s", "step": 0}]
        return {"calls": calls, "seed": 1, "steps": steps, "success": success, "task": mission}

    won, stuck, idle = episode(len(actions), True), episode(first, False), episode(0, False)
    summary = summarise_replays("GoToSeq", [won, stuck, idle], max_skill_steps=64)
    assert summary["succeeded"]["missions_of_several_clauses"] == 1
    assert summary["succeeded"]["finishing_some_clauses"] == 0
    failed = summary["failed"]
    assert failed["missions_of_several_clauses"] == 2
    assert failed["finishing_no_clause"] == 1 and failed["finishing_some_clauses"] == 1


def _bot_unlock_episode(seed: int) -> dict[str, Any]:
    """An Unlock episode (open a locked door, its key in the room) as a trace line: the bot's
    actions as one call."""
    env = gym.make("BabyAI-Unlock-v0")
    observation, _ = env.reset(seed=seed)
    actions, _, reward = _run_bot(env)
    return _trace_line(seed, observation["mission"], [actions], reward > 0)


def test_summary_counts_locked_doors_and_unlocking() -> None:
    unlocked = _bot_unlock_episode(0)
    assert unlocked["success"]
    stuck = dict(unlocked, calls=[dict(unlocked["calls"][0], actions=[5, 5])], success=False)
    summary = summarise_replays("Unlock", [unlocked, stuck], max_skill_steps=64)
    assert summary["succeeded"]["levels_with_a_locked_door"] == 1
    assert summary["succeeded"]["unlocking_a_door"] == 1
    assert summary["succeeded"]["toggles_at_a_locked_door_without_its_key"] == 0
    assert summary["failed"]["levels_with_a_locked_door"] == 1
    assert summary["failed"]["unlocking_a_door"] == 0


def test_a_toggle_at_a_locked_door_is_futile_without_a_key_of_its_colour() -> None:
    from minigrid.core.world_object import Key

    from skillbank.envs.babyai_replay import _futile_unlock, _locked_doors

    env = gym.make("BabyAI-Unlock-v0")
    env.reset(seed=0)
    world: Any = env.unwrapped
    (door,) = _locked_doors(world)
    for direction, (dx, dy) in enumerate([(1, 0), (0, 1), (-1, 0), (0, -1)]):
        stand = (door[0] - dx, door[1] - dy)  # the cell before the door, facing it
        if world.grid.get(*stand) is None:
            world.agent_pos, world.agent_dir = stand, direction
            break
    assert tuple(world.front_pos) == door
    colour = world.grid.get(*door).color
    other = next(c for c in ("red", "green", "blue", "purple", "yellow", "grey") if c != colour)
    assert _futile_unlock(world, 5, [door])
    world.carrying = Key(other)
    assert _futile_unlock(world, 5, [door])
    world.carrying = Key(colour)
    assert not _futile_unlock(world, 5, [door])
    assert not _futile_unlock(world, 2, [door])  # not a toggle


def test_summary_counts_sequenced_missions_done_out_of_order() -> None:
    seed = next(s for s in range(100) if _top_kind("GoToSeq", s) == "BeforeInstr")
    env = gym.make("BabyAI-GoToSeq-v0")
    observation, _ = env.reset(seed=seed)
    in_order, _, _ = _run_bot(env)
    env = gym.make("BabyAI-GoToSeq-v0")
    env.reset(seed=seed)
    second_first, _, _ = _run_bot(env, env.unwrapped.instrs.instr_b)  # the "then" part alone
    lines = [
        _trace_line(seed, observation["mission"], [actions], ok)
        for actions, ok in ((in_order, True), (second_first, False))
    ]
    summary = summarise_replays("GoToSeq", lines, max_skill_steps=64)
    assert summary["succeeded"]["sequenced_missions"] == 1
    assert summary["succeeded"]["doing_the_second_part_first"] == 0
    assert summary["failed"]["sequenced_missions"] == 1
    assert summary["failed"]["doing_the_second_part_first"] == 1


def _top_kind(level: str, seed: int) -> str:
    env = gym.make(f"BabyAI-{level}-v0")
    env.reset(seed=seed)
    return type(env.unwrapped.instrs).__name__
