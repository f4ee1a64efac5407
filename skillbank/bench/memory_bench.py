"""Benchmark of the skill memory: insert rate, open time, exact and approximate retrieval latency,
recall and peak memory, on clustered synthetic keys (a mixture of Gaussians, like skill codes).

Each size N runs in fresh subprocesses (``python -m skillbank.bench.memory_bench``) so that peak
resident memory of one size never mixes with another's, and the insert phase's peak is reported
apart from the retrieval phase's. Every comparison is made in the same process on the same keys:
the plain NumPy scan (``keys @ q`` then ``argpartition``) beside the memory's exact search, and the
approximate index's top-10 against the exact top-10 (recall@10).

All benchmark skills share one tiny weights blob (content addressing stores it once): the benchmark
measures the key store and retrieval, not blob I/O. The JSON says so under ``notes``.

Example:
    >>> cfg = MemoryBenchConfig(sizes=(1000,), dim=16, num_queries=20)  # doctest: +SKIP
    >>> report = run_memory_bench(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import save as st_save

from skillbank.bench.run_info import machine_info, package_versions
from skillbank.memory import INDEX_KINDS, SkillMemory, SkillSpec
from skillbank.types import Provenance

__all__ = [
    "MemoryBenchConfig",
    "clustered_keys",
    "main",
    "run_memory_bench",
    "run_size",
]

_ARCH = "mlp-v1"
_CONFIG = {"in_dim": 2, "hidden_dims": [], "out_dim": 1}


@dataclass(frozen=True, slots=True)
class MemoryBenchConfig:
    """Settings of one benchmark run.

    Attributes:
        sizes: Numbers of skills N to measure, each in fresh subprocesses.
        dim: Key dimension Z.
        seed: Seed of the keys and queries.
        k: Top-k of every query.
        num_queries: Queries timed per search method.
        num_clusters: Gaussian components of the key distribution.
        cluster_std: Standard deviation of keys around their centre (centres are N(0, 1)).
        indexes: Approximate indexes to measure; the first one fills the ``approx_*`` fields.
        batch_size: Skills per ``add_many`` transaction.
        workdir: Where the temporary memories go (a fresh temporary directory when ``None``).
    """

    sizes: tuple[int, ...] = (1000, 10_000, 100_000, 1_000_000)
    dim: int = 64
    seed: int = 0
    k: int = 10
    num_queries: int = 200
    num_clusters: int = 256
    cluster_std: float = 0.35
    indexes: tuple[str, ...] = ("faiss",)
    batch_size: int = 10_000
    workdir: Path | None = None

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError("MemoryBenchConfig.sizes must be positive integers")
        if self.dim < 1 or self.k < 1 or self.num_queries < 1 or self.batch_size < 1:
            raise ValueError("MemoryBenchConfig.dim, k, num_queries, batch_size must be >= 1")
        if self.num_clusters < 1 or not self.cluster_std > 0:
            raise ValueError("MemoryBenchConfig.num_clusters and cluster_std must be positive")
        unknown = set(self.indexes) - set(INDEX_KINDS)
        if unknown:
            raise ValueError(f"MemoryBenchConfig.indexes: unknown {sorted(unknown)}")


def clustered_keys(
    num: int, dim: int, *, num_clusters: int, cluster_std: float, seed: int, stream: int = 0
) -> npt.NDArray[np.float32]:
    """Keys (N, Z) from a mixture of ``num_clusters`` Gaussians with N(0, 1) centres.

    ``stream`` picks independent samples from the same mixture (0: stored keys, 1: queries).
    """
    centres = np.random.default_rng([seed, 0]).normal(size=(num_clusters, dim))  # (C, Z)
    rng = np.random.default_rng([seed, 1 + stream])
    keys = np.empty((num, dim), np.float32)
    for start in range(0, num, 1 << 16):
        stop = min(num, start + (1 << 16))
        which = rng.integers(num_clusters, size=stop - start)
        noise = rng.normal(scale=cluster_std, size=(stop - start, dim))
        keys[start:stop] = centres[which] + noise  # (b, Z)
    return keys


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB).

    Reads ``VmHWM`` from /proc: ``getrusage``'s ``ru_maxrss`` survives fork + exec, so a child
    would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def _time_queries(
    fn: Callable[[npt.NDArray[np.float32]], Any], queries: npt.NDArray[np.float32]
) -> list[int]:
    for q in queries[: min(10, len(queries))]:  # warm-up
        fn(q)
    samples: list[int] = []
    for q in queries:
        t0 = time.perf_counter_ns()
        fn(q)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def _phase_insert(cfg: MemoryBenchConfig, n: int, directory: Path) -> dict[str, Any]:
    keys = clustered_keys(
        n, cfg.dim, num_clusters=cfg.num_clusters, cluster_std=cfg.cluster_std, seed=cfg.seed
    )
    blob = st_save(
        {"net.0.weight": np.full((1, 2), 0.5, np.float32), "net.0.bias": np.zeros(1, np.float32)}
    )
    provenance = Provenance("bench", task="bench/memory")
    t0, c0 = time.perf_counter(), time.process_time()
    with SkillMemory(directory) as memory:
        for start in range(0, n, cfg.batch_size):
            stop = min(n, start + cfg.batch_size)
            memory.add_many(
                [
                    SkillSpec(f"s{i}", keys[i], _ARCH, _CONFIG, blob, provenance)
                    for i in range(start, stop)
                ]
            )
    insert_s, insert_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    del keys
    # First open: no key cache yet, the matrix is read from SQLite (and the cache written).
    t0, c0 = time.perf_counter(), time.process_time()
    with SkillMemory(directory, create=False) as memory:
        memory.retrieve(np.zeros(cfg.dim, np.float32), cfg.k, record=False)
        first_open_s, first_open_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {
        "insert_per_s": n / insert_s,
        "insert_s": insert_s,
        "insert_cpu_s": insert_cpu_s,
        "first_open_s": first_open_s,
        "first_open_cpu_s": first_open_cpu_s,
        "insert_rss_mb": _peak_rss_mb(),
        "db_mb": (directory / "skills.sqlite").stat().st_size / 2**20,
    }


def _queries(cfg: MemoryBenchConfig) -> npt.NDArray[np.float32]:
    """The queries: fresh samples (stream 1) of the keys' mixture, the same in every phase."""
    return clustered_keys(
        cfg.num_queries,
        cfg.dim,
        num_clusters=cfg.num_clusters,
        cluster_std=cfg.cluster_std,
        seed=cfg.seed,
        stream=1,
    )


def _phase_query(cfg: MemoryBenchConfig, n: int, directory: Path) -> dict[str, Any]:
    queries = _queries(cfg)
    out: dict[str, Any] = {}
    # --- open and exact search ---
    t0, c0 = time.perf_counter(), time.process_time()
    memory = SkillMemory(directory, create=False)
    memory.retrieve(queries[0], cfg.k, record=False)  # ready to retrieve
    out["open_s"], out["open_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    out["raw_key_mb"] = n * cfg.dim * 4 / 2**20
    for q in queries[:10]:  # warm-up
        memory.retrieve(q, cfg.k, record=False)
    # One pass of exact search before the NumPy copy exists, so rss_mb is the memory's own peak.
    exact_ns: list[int] = []
    for q in queries:
        t0 = time.perf_counter_ns()
        memory.retrieve(q, cfg.k, record=False)
        exact_ns.append(time.perf_counter_ns() - t0)
    out["rss_mb"] = _peak_rss_mb()
    # --- the plain NumPy scan over the same keys, same process, interleaved query by query ---
    _, keys = memory.keys()  # (N, Z) copy of the same float32 keys
    scale = np.float32(1.0 / np.sqrt(cfg.dim))
    k = min(cfg.k, n)

    def numpy_scan(q: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        scores = (keys @ q) * scale  # (N,)
        top = np.argpartition(-scores, k - 1)[:k]
        result: npt.NDArray[np.int64] = top[np.argsort(-scores[top])]
        return result

    numpy_ns: list[int] = []
    exact_ns = []  # the reported exact timings are the interleaved ones
    for q in queries:  # alternate the two so load swings on a shared machine hit both alike
        t0 = time.perf_counter_ns()
        numpy_scan(q)
        numpy_ns.append(time.perf_counter_ns() - t0)
        t0 = time.perf_counter_ns()
        memory.retrieve(q, cfg.k, record=False)
        exact_ns.append(time.perf_counter_ns() - t0)
    memory.close()
    out["exact_p50_ms"], out["exact_p99_ms"] = _percentiles(exact_ns)
    out["numpy_scan_p50_ms"], out["numpy_scan_p99_ms"] = _percentiles(numpy_ns)
    out["exact_over_numpy_p50"] = out["exact_p50_ms"] / out["numpy_scan_p50_ms"]
    return out


def _phase_index(cfg: MemoryBenchConfig, n: int, directory: Path, kind: str) -> dict[str, Any]:
    """Build (then reopen) one approximate index and time it against exact search."""
    queries = _queries(cfg)
    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    with SkillMemory(directory, create=False, index=kind) as building:
        building.retrieve(queries[0], cfg.k, approximate=True, record=False)
        out[f"{kind}_build_s"] = time.perf_counter() - t0
        out[f"{kind}_build_cpu_s"] = time.process_time() - c0
    del building  # free the built index before loading it again: one index in memory at a time
    t0 = time.perf_counter()
    memory = SkillMemory(directory, create=False, index=kind)
    memory.retrieve(queries[0], cfg.k, approximate=True, record=False)
    out[f"{kind}_open_s"] = time.perf_counter() - t0
    exact = [set(memory.retrieve(q, cfg.k, record=False).skill_ids) for q in queries]
    approx = [memory.retrieve(q, cfg.k, approximate=True, record=False) for q in queries]
    recall = [
        len(set(a.skill_ids) & e) / max(len(e), 1) for a, e in zip(approx, exact, strict=True)
    ]
    samples = _time_queries(
        lambda q: memory.retrieve(q, cfg.k, approximate=True, record=False), queries
    )
    out[f"{kind}_p50_ms"], out[f"{kind}_p99_ms"] = _percentiles(samples)
    out[f"{kind}_recall_at_{cfg.k}"] = float(np.mean(recall))
    out[f"{kind}_rss_mb"] = _peak_rss_mb()
    memory.close()
    return out


def _run_phase(
    phase: str, cfg: MemoryBenchConfig, n: int, directory: Path, kind: str = ""
) -> dict[str, Any]:
    """Run one phase for size ``n`` in a fresh Python process and return its JSON."""
    payload = json.dumps(
        {"phase": phase, "n": n, "dir": str(directory), "kind": kind, "config": _cfg_json(cfg)}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "skillbank.bench.memory_bench", payload],
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark phase {phase} (N={n}) failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _cfg_json(cfg: MemoryBenchConfig) -> dict[str, Any]:
    raw = asdict(cfg)
    raw["workdir"] = None if cfg.workdir is None else str(cfg.workdir)
    return raw


def _cfg_from_json(raw: dict[str, Any]) -> MemoryBenchConfig:
    raw = dict(raw)
    raw["sizes"] = tuple(raw["sizes"])
    raw["indexes"] = tuple(raw["indexes"])
    raw["workdir"] = None if raw["workdir"] is None else Path(raw["workdir"])
    return MemoryBenchConfig(**raw)


def run_size(cfg: MemoryBenchConfig, n: int) -> dict[str, Any]:
    """Measure one size N (insert in one fresh process, retrieval in another)."""
    base = Path(tempfile.mkdtemp(prefix=f"skillbank-bench-{n}-", dir=cfg.workdir))
    try:
        result: dict[str, Any] = {"skills": n}
        result.update(_run_phase("insert", cfg, n, base / "memory"))
        result.update(_run_phase("query", cfg, n, base / "memory"))
        for kind in cfg.indexes:  # each index in its own process: its own peak memory
            result.update(_run_phase("index", cfg, n, base / "memory", kind))
        if cfg.indexes:
            first = cfg.indexes[0]
            result["approx_index"] = first
            result["approx_p50_ms"] = result[f"{first}_p50_ms"]
            result["approx_p99_ms"] = result[f"{first}_p99_ms"]
            result[f"approx_recall_at_{cfg.k}"] = result[f"{first}_recall_at_{cfg.k}"]
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_memory_bench(
    cfg: MemoryBenchConfig,
    *,
    command: str = "",
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every size of ``cfg`` and return the report (machine, versions, seed, results)."""
    started = time.time()
    results: list[dict[str, Any]] = []
    for n in cfg.sizes:
        result = run_size(cfg, n)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return {
        "benchmark": "memory",
        "command": command,
        "seed": cfg.seed,
        "config": _cfg_json(cfg),
        "machine": machine_info(),
        "versions": package_versions("safetensors", "faiss-cpu", "usearch"),
        "started_at": started,
        "duration_s": time.time() - started,
        "notes": {
            "weights": "all skills share one tiny safetensors blob (mlp-v1 2->1), stored once "
            "by content addressing; the benchmark measures keys and retrieval, not blob I/O",
            "keys": f"mixture of {cfg.num_clusters} Gaussians, centres N(0,1), "
            f"std {cfg.cluster_std}; queries are fresh samples of the same mixture",
            "open_s": "SkillMemory(dir) until the first retrieve returns, with the key cache "
            "present; first_open_s is the same without it (keys read from SQLite)",
            "cpu_s": "*_cpu_s fields are the process's CPU time for the same span: on a shared, "
            "overloaded machine wall time includes waiting for a core",
            "rss_mb": "peak resident memory (VmHWM) of the process that opens the memory and runs "
            "exact search; insert_rss_mb is the insert process's peak, <index>_rss_mb the peak of "
            "the process that builds, reloads and queries that index (key matrix + index)",
            "exact": "SkillMemory.retrieve(q, k, record=False): scaled dot product over the "
            "in-memory key matrix, argpartition top-k, softmax weights",
            "approx": "SkillMemory.retrieve(..., approximate=True): HNSW candidates re-scored "
            "exactly; recall is against the exact top-k of the same queries",
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    """Subprocess entry: run one phase given as a JSON argument and print its JSON result."""
    args = sys.argv[1:] if argv is None else argv
    request = json.loads(args[0])
    cfg = _cfg_from_json(request["config"])
    n, directory = int(request["n"]), Path(request["dir"])
    if request["phase"] == "index":
        result = _phase_index(cfg, n, directory, request["kind"])
    else:
        phase = {"insert": _phase_insert, "query": _phase_query}[request["phase"]]
        result = phase(cfg, n, directory)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
