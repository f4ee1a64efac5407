"""Crash safety: a writer process SIGKILLed at random moments never leaves a broken memory.

After each kill the memory opens, ``verify`` finds no problem, and every version the writer saw
committed is present with bit-identical key and weights. The default suite kills 12 times; the
``slow`` run kills 200 times.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from skillbank.memory import SkillMemory
from tests.memory.store_helpers import key_for, same_weights, weights_for

ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(
    directory: Path, first_seed: int, rng: random.Random
) -> list[tuple[str, int, int]]:
    """Start a writer, kill it at a random moment, return the versions it reported committed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.memory.crash_writer", str(directory), str(first_seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready == b"READY\n", proc.stderr.read() if proc.stderr else ready
    time.sleep(rng.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    committed: list[tuple[str, int, int]] = []
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "C":  # a torn last line is simply not reported
            committed.append((parts[1], int(parts[2]), int(parts[3])))
    return committed


def _check(memory: SkillMemory, committed: list[tuple[str, int, int]]) -> None:
    for skill_id, version, seed in committed:
        record = memory.get(skill_id, version)
        assert record.key.tobytes() == key_for(seed).tobytes()
        assert same_weights(memory.load_weights(record), weights_for(seed))


def _crash_loop(tmp_path: Path, num_kills: int, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "memory"
    everything: list[tuple[str, int, int]] = []
    for kill in range(num_kills):
        committed = _run_and_kill(directory, (kill + 1) * 1_000_000, rng)
        with SkillMemory(directory, create=False) as memory:
            problems = memory.verify()
            assert problems == [], f"kill {kill}: {problems}"
            _check(memory, committed)
            _check(memory, rng.sample(everything, min(20, len(everything))))
            if everything:
                ids, keys = memory.keys()
                assert len(ids) == len(memory) and keys.shape[0] == len(ids)
                assert len(memory.retrieve(np.ones(keys.shape[1]), 5, record=False).skill_ids) == 5
            if kill % 5 == 4:  # reclaim what the kills left behind; nothing referenced goes
                memory.gc()
                assert memory.verify() == []
                assert not list((directory / "blobs").rglob("*.tmp"))
        everything.extend(committed)
    with SkillMemory(directory, create=False) as memory:
        _check(memory, everything)
        assert memory.verify() == []
    assert everything, "the writer never committed anything: kills came too early"


def test_sigkill_at_random_moments_never_corrupts(tmp_path: Path) -> None:
    _crash_loop(tmp_path, num_kills=12, seed=0)


@pytest.mark.slow
def test_sigkill_200_times_never_corrupts(tmp_path: Path) -> None:
    _crash_loop(tmp_path, num_kills=200, seed=1)
