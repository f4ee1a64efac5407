"""CLI: `skillbank skills ...`, `verify`, `gc` and the `tour` of the memory (walk-through).

People get rich tables; ``--json`` gives machine-readable output on stdout. Errors print one line
plus a hint and exit 1 (``skillbank --debug`` shows the traceback).
"""

from __future__ import annotations

import itertools
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.table import Table

from skillbank.cli.common import (
    DEFAULT_MEMORY,
    JsonOption,
    MemoryOption,
    console,
    emit_json,
    handle_errors,
)
from skillbank.cli.pack_memory import open_memory_or_pack, refuse_pack
from skillbank.errors import SkillMemoryError, SkillNotFoundError
from skillbank.memory.pack_archive import PackLimits
from skillbank.memory.pack_verify import read_pack
from skillbank.memory.packs import (
    ImportReport,
    PackReport,
    export_pack,
    import_pack,
    import_verified_pack,
)
from skillbank.memory.store import SkillMemory
from skillbank.types import Provenance, RetrievalFilter, SkillRecord

__all__ = ["register"]

skills_app = typer.Typer(help="List, inspect, delete, export and import stored skills.")


# --- helpers --------------------------------------------------------------------------------------


@contextmanager
def _open(path: Path, *, create: bool = False, action: str = "write to") -> Iterator[SkillMemory]:
    """Open the memory at ``path`` for writing; a pack is refused (import it first)."""
    refuse_pack(path, action)
    if not create and not path.exists():
        raise SkillMemoryError(
            f"no skill memory at {path}",
            hint="pass --memory DIR, or store skills first (e.g. `skillbank demo`)",
        )
    memory = SkillMemory(path, create=create)
    try:
        yield memory
    finally:
        memory.close()


def _record_json(record: SkillRecord, *, with_key: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "skill_id": record.skill_id,
        "version": record.version,
        "version_id": record.version_id,
        "name": record.name,
        "key_dim": int(record.key.size),
        "arch_id": record.arch_id,
        "arch_config": dict(record.arch_config),
        "weights_sha256": record.weights_sha256,
        "provenance": {
            "source": record.provenance.source,
            "task": record.provenance.task,
            "dataset_hash": record.provenance.dataset_hash,
            "extra": dict(record.provenance.extra),
        },
        "created_at": record.created_at,
        "parent_version_id": record.parent_version_id,
        "tags": list(record.tags),
        "usage": {
            "num_retrieved": record.usage.num_retrieved,
            "num_executed": record.usage.num_executed,
            "num_succeeded": record.usage.num_succeeded,
            "last_used": record.usage.last_used,
        },
    }
    if with_key:
        payload["key"] = [float(x) for x in record.key]
    return payload


def _records_table(title: str, records: list[SkillRecord]) -> Table:
    table = Table(title=title)
    # ids are what people copy into the next command: never truncate them
    id_width = max((len(r.skill_id) for r in records), default=2)
    table.add_column("id", no_wrap=True, min_width=id_width)
    for column in ("v", "name", "arch", "tags", "source", "run/retrieved", "weights"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.skill_id,
            str(r.version),
            r.name,
            r.arch_id,
            ", ".join(r.tags),
            r.provenance.source,
            f"{r.usage.num_executed}/{r.usage.num_retrieved}",
            r.weights_sha256[:12],
        )
    return table


def _import_table(report: ImportReport, title: str = "imported") -> Table:
    table = Table(title=f"{title}: {report.pack} (manifest {report.manifest_sha256[:12]})")
    for column in ("pack id", "memory id", "status", "versions written"):
        table.add_column(column)
    for s in report.skills:
        table.add_row(s.pack_skill_id, s.skill_id, s.status, str(s.num_versions_written))
    return table


def _import_json(report: ImportReport) -> dict[str, Any]:
    return {
        "pack": report.pack,
        "manifest_sha256": report.manifest_sha256,
        "skills": [
            {
                "pack_skill_id": s.pack_skill_id,
                "skill_id": s.skill_id,
                "status": s.status,
                "num_versions_written": s.num_versions_written,
            }
            for s in report.skills
        ],
    }


def _export_json(report: PackReport) -> dict[str, Any]:
    return {
        "path": str(report.path),
        "skill_ids": list(report.skill_ids),
        "num_versions": report.num_versions,
        "num_files": report.num_files,
        "num_bytes": report.num_bytes,
        "manifest_sha256": report.manifest_sha256,
        "latest_only": report.latest_only,
    }


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for k, v in rows.items():
        table.add_row(k, str(v))
    return table


# --- skills ---------------------------------------------------------------------------------------


@skills_app.command("ls")
@handle_errors
def ls_command(
    memory: MemoryOption = DEFAULT_MEMORY,
    json_out: JsonOption = False,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Keep skills with this tag.")
    ] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="Keep this architecture.")] = None,
) -> None:
    """List stored skills (latest versions); MEMORY may be a directory pack."""
    with open_memory_or_pack(memory) as mem:
        filters = RetrievalFilter(tags=tuple(tag or ()), arch_id=arch)
        records = mem.list(None if filters.is_empty else filters)
    if json_out:
        emit_json([_record_json(r) for r in records])
    else:
        console.print(_records_table(f"{len(records)} skill(s) in {memory}", records))


@skills_app.command("show")
@handle_errors
def show_command(
    skill_id: Annotated[str, typer.Argument(help="Exact skill id.")],
    version: Annotated[int | None, typer.Option("--version", help="Version number.")] = None,
    memory: MemoryOption = DEFAULT_MEMORY,
    json_out: JsonOption = False,
) -> None:
    """Show one skill (its latest version unless --version); MEMORY may be a pack."""
    with open_memory_or_pack(memory) as mem:
        record = mem.get(skill_id, version)
    payload = _record_json(record, with_key=True)
    if json_out:
        emit_json(payload)
        return
    key = payload.pop("key")
    payload["key"] = (
        "[" + ", ".join(f"{x:.3f}" for x in key[:8]) + (", ...]" if len(key) > 8 else "]")
    )
    console.print(_kv_table(f"skill {skill_id} v{record.version}", payload))


@skills_app.command("versions")
@handle_errors
def versions_command(
    skill_id: Annotated[str, typer.Argument(help="Exact skill id.")],
    memory: MemoryOption = DEFAULT_MEMORY,
    json_out: JsonOption = False,
) -> None:
    """List every version of a skill, oldest first (its lineage); MEMORY may be a pack."""
    with open_memory_or_pack(memory) as mem:
        records = mem.versions(skill_id)
    if not records:
        raise SkillNotFoundError(f"no skill with id {skill_id!r}")
    if json_out:
        emit_json([_record_json(r) for r in records])
        return
    table = Table(title=f"versions of {skill_id}")
    for column in ("v", "version id", "parent", "name", "created", "weights"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r.version),
            r.version_id,
            r.parent_version_id or "-",
            r.name,
            f"{r.created_at:.0f}",
            r.weights_sha256[:12],
        )
    console.print(table)


@skills_app.command("rm")
@handle_errors
def rm_command(
    skill_id: Annotated[str, typer.Argument(help="Exact skill id (no prefixes).")],
    memory: MemoryOption = DEFAULT_MEMORY,
    json_out: JsonOption = False,
) -> None:
    """Delete a skill and all its versions (blobs stay until `skillbank gc`)."""
    with _open(memory, action="delete skills from") as mem:
        num_versions = len(mem.versions(skill_id))
        if not num_versions:
            raise SkillNotFoundError(f"no skill with id {skill_id!r}")
        mem.delete(skill_id)
    if json_out:
        emit_json({"deleted": skill_id, "num_versions": num_versions})
    else:
        console.print(
            f"deleted {skill_id} ({num_versions} version(s)); run `skillbank gc` to free blobs"
        )


@skills_app.command("export")
@handle_errors
def export_command(
    out: Annotated[Path, typer.Option("--out", help="Pack path: DIR or FILE.tar.gz (new).")],
    skill_ids: Annotated[list[str] | None, typer.Argument(help="Skill ids (default: all).")] = None,
    memory: MemoryOption = DEFAULT_MEMORY,
    json_out: JsonOption = False,
    latest_only: Annotated[
        bool,
        typer.Option(
            "--latest-only",
            help="Only each skill's latest version, as a root (smaller; enough to act).",
        ),
    ] = False,
) -> None:
    """Export skills, with every version (or --latest-only), as a pack (a directory or .tar.gz)."""
    command = shlex.join(["skillbank", *sys.argv[1:]])
    with open_memory_or_pack(memory) as mem:
        report = export_pack(mem, out, skill_ids or None, command=command, latest_only=latest_only)
    if json_out:
        emit_json(_export_json(report))
    else:
        console.print(_kv_table(f"exported pack {out}", _export_json(report)))


@skills_app.command("import")
@handle_errors
def import_command(
    pack: Annotated[Path, typer.Argument(help="Pack directory or .tar.gz.")],
    memory: MemoryOption = DEFAULT_MEMORY,
    json_out: JsonOption = False,
    max_file_mb: Annotated[
        int, typer.Option("--max-file-mb", min=1, help="Refuse any pack file larger than this.")
    ] = 1024,
    max_pack_mb: Annotated[
        int, typer.Option("--max-pack-mb", min=1, help="Refuse packs larger than this in all.")
    ] = 4096,
) -> None:
    """Import a pack: verify everything, then write every skill in one transaction."""
    limits = PackLimits(max_file_bytes=max_file_mb * 2**20, max_total_bytes=max_pack_mb * 2**20)
    refuse_pack(memory, "import into")
    verified = read_pack(pack, limits=limits)  # before the memory is opened: refusal creates none
    with _open(memory, create=True, action="import into") as mem:
        report = import_verified_pack(mem, verified)
    if json_out:
        emit_json(_import_json(report))
    else:
        console.print(_import_table(report, f"imported into {memory}"))


# --- verify / gc ----------------------------------------------------------------------------------


@handle_errors
def verify_command(memory: MemoryOption = DEFAULT_MEMORY, json_out: JsonOption = False) -> None:
    """Check every blob hash and invariant; change nothing. Exit 1 if any problem.

    MEMORY may be a pack: it is verified as on import, then the memory it makes is checked.
    """
    with open_memory_or_pack(memory) as mem:
        problems = mem.verify()
        num_skills = len(mem)
    rows = [{"kind": p.kind, "skill_id": p.skill_id, "detail": p.detail} for p in problems]
    if json_out:
        emit_json({"ok": not problems, "num_skills": num_skills, "problems": rows})
    elif problems:
        table = Table(title=f"{len(problems)} problem(s) in {memory}")
        for column in ("kind", "skill", "detail"):
            table.add_column(column)
        for p in problems:
            table.add_row(p.kind, p.skill_id or "-", p.detail)
        console.print(table)
    else:
        console.print(f"[green]ok[/]: {memory} ({num_skills} skill(s)) passed every check")
    if problems:
        raise typer.Exit(code=1)


@handle_errors
def gc_command(memory: MemoryOption = DEFAULT_MEMORY, json_out: JsonOption = False) -> None:
    """Remove blobs that no version references."""
    with _open(memory, action="garbage-collect") as mem:
        report = mem.gc()
    payload = {
        "num_blobs_removed": report.num_blobs_removed,
        "bytes_freed": report.bytes_freed,
    }
    if json_out:
        emit_json(payload)
    else:
        console.print(_kv_table(f"gc of {memory}", payload))


# --- tour (the memory walk-through) ---------------------------------------------------------------

_DEMO_SKILLS = ("reach", "grasp", "open-door", "place")
_DEMO_KEY_DIM = 16
_DEMO_DIMS = (8, 16, 4)  # in_dim, hidden, out_dim of each demo skill's MLP
_DEMO_CONFIG: dict[str, Any] = {"in_dim": 8, "hidden_dims": [16], "out_dim": 4}


def _demo_weights(rng: np.random.Generator) -> dict[str, npt.NDArray[np.float32]]:
    """Weights with exactly the tensors of ``mlp-v1`` for ``_DEMO_CONFIG``."""
    weights: dict[str, npt.NDArray[np.float32]] = {}
    for i, (d_in, d_out) in enumerate(itertools.pairwise(_DEMO_DIMS)):
        scale = np.float32(d_in**-0.5)
        weights[f"net.{2 * i}.weight"] = (
            rng.standard_normal((d_out, d_in)).astype(np.float32) * scale
        )
        weights[f"net.{2 * i}.bias"] = np.zeros(d_out, dtype=np.float32)
    return weights


class _DemoOutput:
    """Tables for people, or facts collected for one JSON document."""

    def __init__(self, json_out: bool) -> None:
        self.json_out = json_out
        self.facts: dict[str, Any] = {}

    def show(self, renderable: Any, *, soft_wrap: bool = False) -> None:
        if not self.json_out:
            console.print(renderable, soft_wrap=soft_wrap)


@handle_errors
def tour_command(memory: MemoryOption = DEFAULT_MEMORY, json_out: JsonOption = False) -> None:
    """Walk through the skill memory: store, retrieve, version, export, import, verify."""
    out = _DemoOutput(json_out)
    rng = np.random.default_rng(0)
    keys = {name: rng.standard_normal(_DEMO_KEY_DIM).astype(np.float32) for name in _DEMO_SKILLS}
    ids = [f"demo-{name}" for name in _DEMO_SKILLS]
    with _open(memory, create=True) as mem:
        if mem.key_dim not in (None, _DEMO_KEY_DIM):
            raise SkillMemoryError(
                f"{memory} holds keys of dimension {mem.key_dim}; the demo's have {_DEMO_KEY_DIM}",
                hint="run the tour on its own memory: skillbank tour --memory DIR",
            )
        # --- 1. store (skills already stored by an earlier run are kept as they are) ---
        num_new = 0
        for name, skill_id in zip(_DEMO_SKILLS, ids, strict=True):
            weights = _demo_weights(rng)
            if skill_id not in mem:
                mem.add(
                    name,
                    keys[name],
                    "mlp-v1",
                    _DEMO_CONFIG,
                    weights,
                    Provenance(source="skillbank-demo", task=f"toy/{name}"),
                    tags=("demo",),
                    skill_id=skill_id,
                )
                num_new += 1
        title = f"1. demo skills in {memory} ({num_new} stored now, {len(ids) - num_new} kept)"
        out.show(_records_table(title, [mem.get(i) for i in ids]))
        out.facts["stored"] = {"num_new": num_new, "skill_ids": ids}

        # --- 2. retrieve ---
        query = keys["open-door"] + 0.3 * rng.standard_normal(_DEMO_KEY_DIM).astype(np.float32)
        found = mem.retrieve(query, 3, filters=RetrievalFilter(tags=("demo",)), metric="cosine")
        table = Table(title="2. retrieve(query near 'open-door', k=3, cosine)")
        for column in ("rank", "id", "score", "attention"):
            table.add_column(column)
        for rank, (sid, score, weight) in enumerate(
            zip(found.skill_ids, found.scores, found.weights, strict=True), start=1
        ):
            table.add_row(str(rank), sid, f"{score:.3f}", f"{weight:.3f}")
        out.show(table)
        out.facts["retrieved"] = {
            "skill_ids": list(found.skill_ids),
            "scores": [float(x) for x in found.scores],
            "weights": [float(x) for x in found.weights],
        }

        # --- 3. adapt a copy: a new version; the old one stays bit for bit ---
        base = mem.get("demo-open-door")
        adapted = {
            k: v + np.float32(0.01) * rng.standard_normal(v.shape).astype(np.float32)
            for k, v in mem.load_weights(base).items()
        }
        mem.add_version(
            "demo-open-door",
            weights=adapted,
            provenance=Provenance(source="skillbank-demo", task="toy/open-red-door"),
        )
        lineage = mem.versions("demo-open-door")
        title = f"3. adapted a copy: 'demo-open-door' now has {len(lineage)} versions"
        out.show(_records_table(title, lineage))
        out.facts["num_versions_open_door"] = len(lineage)

        # --- 4-6. export, import into a fresh memory, re-import into this one ---
        with tempfile.TemporaryDirectory(prefix="skillbank-demo-") as tmp:
            pack = Path(tmp) / "demo-skills.tar.gz"
            exported = export_pack(mem, pack, ids, command="skillbank tour")
            out.show(_kv_table("4. exported a pack (temporary)", _export_json(exported)))
            out.facts["exported"] = _export_json(exported)
            with SkillMemory(Path(tmp) / "second-memory") as second:
                imported = import_pack(second, pack)
                identical = all(
                    a.key.tobytes() == b.key.tobytes()
                    and _same(mem.load_weights(a), second.load_weights(b))
                    for sid in ids
                    for a, b in zip(mem.versions(sid), second.versions(sid), strict=True)
                )
                second_problems = second.verify()
            out.show(_import_table(imported, "5. imported into a fresh memory"))
            out.facts["imported"] = _import_json(imported)
            out.facts["bit_identical"] = identical
            out.facts["second_memory_problems"] = len(second_problems)
            out.show(
                f"   verify: {len(second_problems)} problem(s); every version's key and weights "
                f"bit-identical: {identical}",
                soft_wrap=True,
            )
            again = import_pack(mem, pack)
            out.show(_import_table(again, "6. re-imported into the source: nothing written"))
            out.facts["reimported"] = _import_json(again)
        problems = mem.verify()
        out.show(
            f"7. verify {memory}: {len(problems)} problem(s), {len(mem)} skill(s)", soft_wrap=True
        )
        out.facts["problems"] = len(problems)
        out.facts["num_skills"] = len(mem)
    if json_out:
        emit_json(out.facts)
    if problems or second_problems or not identical:
        raise typer.Exit(code=1)


def _same(a: dict[str, npt.NDArray[Any]], b: dict[str, npt.NDArray[Any]]) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(skills_app, name="skills")
    app.command("verify")(verify_command)
    app.command("gc")(gc_command)
    app.command("tour")(tour_command)
