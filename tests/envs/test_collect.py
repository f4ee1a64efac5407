"""The collector: parallel == serial byte for byte, resume after a kill, failures, events, Ray."""

from __future__ import annotations

import builtins
import functools
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from skillbank.envs.collect import collect, demo_source_factory
from skillbank.envs.dataset import load_dataset
from skillbank.envs.toy import ToyDemonstrator
from skillbank.envs.worker_pool import SeedOutcome, default_num_workers, demonstrate_seeds
from skillbank.errors import DatasetError, EnvironmentNotFoundError, MissingExtraError
from skillbank.events import EventLog

ROOT = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _babyai(level: str) -> functools.partial[Any]:
    pytest.importorskip("minigrid")
    from skillbank.envs.babyai import BabyAIDemoSource

    return functools.partial(BabyAIDemoSource, level)


# --- parallel == serial -----------------------------------------------------------------------


def test_parallel_equals_serial_byte_for_byte(tmp_path: Path) -> None:
    factory = functools.partial(ToyDemonstrator, "open-then-fetch")
    serial = collect(factory, range(24), tmp_path / "serial", num_workers=1)
    parallel = collect(factory, range(24), tmp_path / "parallel", num_workers=2, chunk_size=3)
    assert serial.num_episodes == parallel.num_episodes == 24
    assert serial.hash == parallel.hash
    assert _files(tmp_path / "serial") == _files(tmp_path / "parallel")
    dataset = load_dataset(tmp_path / "parallel")
    assert dataset.seeds == tuple(range(24))
    assert dataset[5].annotations is not None


@pytest.mark.babyai
def test_failures_logged_with_seeds_and_worker_count_does_not_matter(tmp_path: Path) -> None:
    # The Debug door-order level ends the episode at a wrong door; the bot fails seeds 1, 3, 6-9.
    factory = _babyai("OpenDoorsOrderN2Debug")
    serial = collect(factory, range(10), tmp_path / "serial", num_workers=1)
    collect(factory, range(10), tmp_path / "parallel", num_workers=2, chunk_size=1)
    assert sorted(serial.failures) == [1, 3, 6, 7, 8, 9]
    assert all("mission failed" in reason for reason in serial.failures.values())
    assert serial.seeds == (0, 2, 4, 5)
    assert serial.success_rate == pytest.approx(0.4)
    assert _files(tmp_path / "serial") == _files(tmp_path / "parallel")


@pytest.mark.babyai
def test_target_stops_at_n_episodes_past_failures(tmp_path: Path) -> None:
    factory = _babyai("OpenDoorsOrderN2Debug")
    log = EventLog()
    info = collect(
        factory,
        itertools.count(0),
        tmp_path / "a",
        num_episodes=4,
        num_workers=2,
        observer=log,
    )
    # The first four successes are seeds 0, 2, 4, 5; only failures before seed 5 are logged,
    # however far ahead the workers ran.
    assert info.seeds == (0, 2, 4, 5)
    assert sorted(info.failures) == [1, 3]
    serial = collect(factory, itertools.count(0), tmp_path / "b", num_episodes=4, num_workers=1)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert serial.hash == info.hash
    # Events: start, one per seed in seed order, end.
    assert log.events[0].name == "collect.start"
    assert log.events[-1].name == "collect.end"
    seed_events = log.named("collect.seed")
    assert [int(e.values["seed"]) for e in seed_events] == [0, 1, 2, 3, 4, 5]
    assert [e.values["success"] for e in seed_events] == [1, 0, 1, 0, 1, 1]
    assert seed_events[1].info["reason"]
    end = log.named("collect.end")[0].values
    assert end["num_episodes"] == 4 and end["num_failures"] == 2
    assert end["success_rate"] == pytest.approx(4 / 6)


def test_unreachable_target_keeps_what_was_collected(tmp_path: Path) -> None:
    factory = functools.partial(ToyDemonstrator, "goto")
    with pytest.raises(DatasetError, match="only 3 of 5 episodes") as info:
        collect(factory, range(3), tmp_path / "d", num_episodes=5, num_workers=1)
    assert "--max-tries" in info.value.hint
    assert load_dataset(tmp_path / "d").seeds == (0, 1, 2)


# --- resume -----------------------------------------------------------------------------------


_CHILD = """
import functools, sys
from skillbank.envs.collect import collect
from skillbank.envs.babyai import BabyAIDemoSource
if __name__ == "__main__":
    collect(functools.partial(BabyAIDemoSource, "GoTo"), range(40), sys.argv[1], num_workers=2,
            chunk_size=2, meta={"run": "test"})
"""


@pytest.mark.babyai
def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    factory = _babyai("GoTo")
    out = tmp_path / "killed"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(out)],
        start_new_session=True,  # its own process group: the kill takes its workers too
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            episodes = list((out / "episodes").glob("*.npz")) if out.exists() else []
            if len(episodes) >= 6 or child.poll() is not None:
                break
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    done_before = len(list((out / "episodes").glob("*.npz")))
    assert 0 < done_before < 40, "the child was not interrupted mid-way"

    # A half-written file of the killed run, if the kill hit a write, is cleaned up on resume.
    stale = out / "episodes" / f".seed-0000000039.npz.{child.pid}.1234.tmp"
    stale.write_bytes(b"half")
    log = EventLog()
    resumed = collect(factory, range(40), out, num_workers=2, meta={"run": "test"}, observer=log)
    assert not stale.exists()
    assert log.named("collect.end")[0].values["num_resumed"] >= done_before - 1
    fresh = collect(factory, range(40), tmp_path / "fresh", num_workers=1, meta={"run": "test"})
    assert resumed.hash == fresh.hash
    killed_files, fresh_files = _files(out), _files(tmp_path / "fresh")
    assert killed_files.keys() == fresh_files.keys()
    for name in killed_files:
        assert killed_files[name] == fresh_files[name], name


class DyingToySource(ToyDemonstrator):
    """A toy expert whose worker process dies on one seed (as if killed or out of memory)."""

    def demonstrate(self, seed: int) -> Any:
        if seed == 9:
            os._exit(3)
        return super().demonstrate(seed)


def test_dead_worker_is_reported_and_the_dataset_resumes(tmp_path: Path) -> None:
    out = tmp_path / "d"
    with pytest.raises(DatasetError, match="worker process died") as info:
        collect(functools.partial(DyingToySource, "goto"), range(16), out, num_workers=2)
    assert "resume" in info.value.hint
    partial = load_dataset(out)  # the manifest was written on the way out
    assert 9 not in partial.seeds
    factory = functools.partial(ToyDemonstrator, "goto")
    collect(factory, range(16), out, num_workers=2)
    collect(factory, range(16), tmp_path / "fresh", num_workers=1)
    assert _files(out) == _files(tmp_path / "fresh")


def test_resume_skips_stored_seeds(tmp_path: Path) -> None:
    factory = functools.partial(ToyDemonstrator, "fetch")
    collect(factory, range(5), tmp_path / "d", num_workers=1)
    before = _files(tmp_path / "d")
    log = EventLog()
    info = collect(factory, range(8), tmp_path / "d", num_workers=1, observer=log)
    assert info.seeds == tuple(range(8))
    assert [e.values.get("resumed", 0.0) for e in log.named("collect.seed")] == [1.0] * 5 + [
        0.0
    ] * 3
    after = _files(tmp_path / "d")
    for name, data in before.items():
        if name.startswith("episodes/"):
            assert after[name] == data


def test_other_dataset_in_out_dir_is_refused(tmp_path: Path) -> None:
    collect(functools.partial(ToyDemonstrator, "fetch"), range(2), tmp_path / "d", num_workers=1)
    with pytest.raises(DatasetError, match="toy/fetch"):
        collect(functools.partial(ToyDemonstrator, "goto"), range(2), tmp_path / "d")


def test_corrupted_episode_from_an_earlier_run_is_named(tmp_path: Path) -> None:
    factory = functools.partial(ToyDemonstrator, "fetch")
    collect(factory, range(3), tmp_path / "d", num_workers=1)
    victim = tmp_path / "d" / "episodes" / "seed-0000000001.npz"
    victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(DatasetError, match=r"seed-0000000001\.npz"):
        collect(factory, range(4), tmp_path / "d", num_workers=1)


# --- pieces -----------------------------------------------------------------------------------


def test_demonstrate_seeds_and_outcome_validation() -> None:
    outcomes = demonstrate_seeds(ToyDemonstrator("goto"), [4, 2])
    assert [o.seed for o in outcomes] == [4, 2]
    assert all(o.episode is not None and o.reason == "" for o in outcomes)
    with pytest.raises(ValueError, match="exactly one"):
        SeedOutcome(seed=1, episode=None, reason="", seconds=0.0)
    assert default_num_workers() >= 1


def test_bad_arguments(tmp_path: Path) -> None:
    factory = functools.partial(ToyDemonstrator, "goto")
    with pytest.raises(ValueError, match="num_workers"):
        collect(factory, range(2), tmp_path / "d", num_workers=0)
    with pytest.raises(ValueError, match="num_episodes"):
        collect(factory, range(2), tmp_path / "d", num_episodes=-1)


def test_source_factory_by_env_id() -> None:
    assert demo_source_factory("toy/fetch")().env_id == "toy/fetch"
    with pytest.raises(EnvironmentNotFoundError, match="no built-in demonstrator"):
        demo_source_factory("CartPole-v1")
    with pytest.raises(EnvironmentNotFoundError, match="toy/fetch"):
        demo_source_factory("toy/fetc")


@pytest.mark.babyai
@pytest.mark.metaworld
def test_source_factory_for_simulators() -> None:
    pytest.importorskip("minigrid")
    pytest.importorskip("metaworld")
    assert demo_source_factory("babyai/GoToLocal")().env_id == "babyai/GoToLocal"
    assert demo_source_factory("BabyAI-GoToLocal-v0")().env_id == "babyai/GoToLocal"
    assert demo_source_factory("metaworld/reach-v3")().env_id == "metaworld/reach-v3"


def test_missing_ray_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def refuse_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse_ray)
    with pytest.raises(MissingExtraError) as info:
        collect(
            functools.partial(ToyDemonstrator, "goto"),
            range(2),
            tmp_path / "d",
            ray_address="local",
        )
    assert "skillbank[ray]" in info.value.hint


@pytest.mark.slow
def test_ray_backend_gives_the_same_bytes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    factory = functools.partial(ToyDemonstrator, "open-then-fetch")
    serial = collect(factory, range(16), tmp_path / "serial", num_workers=1)
    on_ray = collect(factory, range(16), tmp_path / "ray", num_workers=2, ray_address="local")
    assert serial.hash == on_ray.hash
    assert _files(tmp_path / "serial") == _files(tmp_path / "ray")


_SCRIPT_FACTORY = """
import functools, sys
from skillbank.envs.collect import collect
from skillbank.envs.toy import ToyDemonstrator

def make():  # a factory defined in the script itself: workers must import __main__
    return ToyDemonstrator("goto")

if __name__ == "__main__":
    print(collect(make, range(4), sys.argv[1], num_workers=2).num_episodes)
"""


def test_factory_defined_in_a_script_reaches_the_workers(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(_SCRIPT_FACTORY)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "d")],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"


_WITHOUT_EXTRAS = """
import sys
for name in ("minigrid", "metaworld", "mujoco", "ray"):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
import skillbank.envs.babyai, skillbank.envs.metaworld_source, skillbank.envs.collect
from skillbank.errors import MissingExtraError
for make in (lambda: skillbank.envs.babyai.BabyAIDemoSource("GoTo"),
             lambda: skillbank.envs.metaworld_source.MetaWorldDemoSource("push-v3")):
    try:
        make()
    except MissingExtraError as exc:
        print(exc.hint)
"""


def test_modules_import_without_the_simulators() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "pip install 'skillbank[babyai]'",
        "pip install 'skillbank[metaworld]'",
    ]
