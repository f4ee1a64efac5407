"""The memory benchmark runs end to end on a tiny size and writes the documented JSON fields (it
asserts the report's shape, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from skillbank.bench.memory_bench import MemoryBenchConfig, clustered_keys
from skillbank.cli.app import app

FIELDS = {
    "skills",
    "insert_per_s",
    "open_s",
    "exact_p50_ms",
    "exact_p99_ms",
    "numpy_scan_p50_ms",
    "approx_p50_ms",
    "approx_p99_ms",
    "approx_recall_at_10",
    "rss_mb",
}


def test_clustered_keys_are_deterministic() -> None:
    a = clustered_keys(100, 8, num_clusters=4, cluster_std=0.1, seed=3)
    b = clustered_keys(100, 8, num_clusters=4, cluster_std=0.1, seed=3)
    q = clustered_keys(100, 8, num_clusters=4, cluster_std=0.1, seed=3, stream=1)
    assert a.dtype == np.float32 and a.shape == (100, 8)
    assert a.tobytes() == b.tobytes() and a.tobytes() != q.tobytes()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        MemoryBenchConfig(sizes=())
    with pytest.raises(ValueError):
        MemoryBenchConfig(indexes=("annoy",))


def test_bench_memory_cli_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench", "memory", "--skills", "300", "--dim", "8", "--queries", "20",
            "--seed", "5", "--json", str(out), "--workdir", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["seed"] == 5 and "bench memory" in report["command"]
    assert {"cpu", "cores", "ram_gb"} <= set(report["machine"])
    assert {"python", "numpy", "sqlite", "faiss-cpu", "usearch"} <= set(report["versions"])
    assert "weights" in report["notes"]
    (row,) = report["results"]
    assert set(row) >= FIELDS and row["skills"] == 300
    assert 0.0 <= row["approx_recall_at_10"] <= 1.0 and row["rss_mb"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("skillbank-bench-")]
