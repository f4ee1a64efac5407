"""Concurrency: 4 processes add 250 skills each to one memory at once; all 1000 arrive, no caller
sees an error."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from pathlib import Path
from typing import Any

from skillbank.memory import SkillMemory
from tests.memory.store_helpers import key_for, same_weights, spec_for, weights_for

NUM_PROCESSES = 4
NUM_SKILLS = 250


def _worker(directory: str, worker: int, barrier: Any, results: Any) -> None:
    try:
        with SkillMemory(directory, busy_timeout_s=120.0) as memory:
            barrier.wait(timeout=120)
            ids = []
            for i in range(NUM_SKILLS):
                seed = worker * 10_000 + i
                spec = spec_for(seed)
                record = memory.add(
                    spec.name,
                    spec.key,
                    spec.arch_id,
                    spec.arch_config,
                    spec.weights,
                    spec.provenance,
                    tags=spec.tags,
                )
                ids.append((record.skill_id, seed))
                if i % 50 == 0:  # readers interleave with writers
                    memory.retrieve(key_for(seed), 3)
        results.put(("ok", worker, ids))
    except BaseException:  # report any error to the parent test
        results.put(("error", worker, traceback.format_exc()))


def test_four_processes_add_250_skills_each(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    directory = str(tmp_path / "memory")
    SkillMemory(directory).close()  # create it once; the workers race on everything else
    barrier = ctx.Barrier(NUM_PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(directory, w, barrier, results))
        for w in range(NUM_PROCESSES)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    errors = [o for o in outcomes if o[0] != "ok"]
    assert not errors, errors
    stored = [pair for _, _, ids in outcomes for pair in ids]
    assert len(stored) == NUM_PROCESSES * NUM_SKILLS
    with SkillMemory(directory) as memory:
        assert len(memory) == NUM_PROCESSES * NUM_SKILLS
        assert {r.skill_id for r in memory.list()} == {sid for sid, _ in stored}
        for skill_id, seed in stored[::37]:
            record = memory.get(skill_id)
            assert record.key.tobytes() == key_for(seed).tobytes()
            assert same_weights(memory.load_weights(record), weights_for(seed))
        assert memory.verify() == []
        assert len(memory.keys()[0]) == NUM_PROCESSES * NUM_SKILLS


def test_processes_racing_to_create_one_memory(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    directory = str(tmp_path / "fresh")
    barrier = ctx.Barrier(3)
    results = ctx.Queue()
    procs = [ctx.Process(target=_creator, args=(directory, w, barrier, results)) for w in range(3)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(o[0] == "ok" for o in outcomes), outcomes
    with SkillMemory(directory) as memory:
        assert len(memory) == 3 and memory.verify() == []


def _creator(directory: str, worker: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=120)
        with SkillMemory(directory, busy_timeout_s=60.0) as memory:
            memory.add_many([spec_for(worker)])
        results.put(("ok", worker, None))
    except BaseException:
        results.put(("error", worker, traceback.format_exc()))
