"""A writer process for the crash test: writes skills forever until it is killed.

Usage: ``python -m tests.memory.crash_writer MEMORY_DIR FIRST_SEED``. After each write returns
(committed) it prints one line per stored version: ``C <skill_id> <version> <seed>``; the key and
weights of that version are ``key_for(seed)`` and ``weights_for(seed)``.
"""

from __future__ import annotations

import random
import sys

from skillbank.memory import SkillMemory
from tests.memory.store_helpers import key_for, spec_for, weights_for


def main() -> None:
    directory, first_seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(first_seed)
    memory = SkillMemory(directory, busy_timeout_s=60.0)
    mine: list[str] = []
    seed = first_seed
    print("READY", flush=True)
    while True:
        op = rng.random()
        lines: list[str] = []
        if op < 0.35 or not mine:
            record = memory.add_many([spec_for(seed)])[0]
            lines.append(f"C {record.skill_id} 1 {seed}")
        elif op < 0.6:
            records = memory.add_many([spec_for(seed + i) for i in range(4)])
            lines.extend(f"C {r.skill_id} 1 {seed + i}" for i, r in enumerate(records))
        elif op < 0.9:
            skill_id = rng.choice(mine)
            record = memory.add_version(skill_id, weights=weights_for(seed), key=key_for(seed))
            lines.append(f"C {skill_id} {record.version} {seed}")
        else:
            memory.record_usage(rng.choice(mine), executed=1, succeeded=1)
        for line in lines:
            mine.append(line.split()[1])
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        seed += 4


if __name__ == "__main__":
    main()
