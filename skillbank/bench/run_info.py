"""What every result file records about the run: the machine, package versions, command line.

One place, so every benchmark's JSON describes its machine the same way.
"""

from __future__ import annotations

import os
import platform
import shlex
import sqlite3
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PACKAGES", "command_line", "machine_info", "package_versions"]

DEFAULT_PACKAGES = ("skillbank", "torch", "numpy", "gymnasium")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """CPU model, cores (all and usable by this process), RAM, platform, load, scheduler.

    ``sched_autogroup`` matters on shared machines: with it on, the kernel shares CPU between
    sessions rather than processes, which caps what a parallel run of one session can get.
    """
    cpu = platform.processor() or platform.machine()
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram_gb = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal"):
            ram_gb = round(int(line.split()[1]) / 2**20, 1)
            break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    autogroup = _read("/proc/sys/kernel/sched_autogroup_enabled")[:1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gb": ram_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
        "sched_autogroup": None if not autogroup else autogroup == "1",
    }


def package_versions(*dists: str) -> dict[str, str | None]:
    """Installed versions of ``DEFAULT_PACKAGES`` and ``dists`` (``None`` when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (*DEFAULT_PACKAGES, *dists):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["sqlite"] = sqlite3.sqlite_version
    return versions


def command_line(argv: list[str] | None = None) -> str:
    """The ``skillbank ...`` command line of this process, shell-quoted."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["skillbank", *args])
