"""The ``README.md`` card of a skill pack: what it holds and how to import it, for people.

The card is listed in the manifest like every other file (so its checksum is verified on import)
but nothing reads it back: the manifest is the truth.
"""

from __future__ import annotations

import time

from skillbank.memory.pack_manifest import PackManifest

__all__ = ["render_card"]


def _cell(text: str) -> str:
    """``text`` safe inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")[:200]


def render_card(manifest: PackManifest, name: str) -> bytes:
    """The Markdown card of the pack ``name`` described by ``manifest`` (``files`` unused)."""
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(manifest.created_at))
    lines = [
        f"# Skill pack `{name}`",
        "",
        f"{len(manifest.skills)} skill(s), {manifest.num_versions} version(s), exported {created} "
        f"by skillbank {manifest.skillbank_version}.",
        "",
    ]
    if manifest.latest_only:
        lines += [
            "Latest versions only: each skill's newest version, stored as its first (earlier "
            "versions stay in the memory that exported it).",
            "",
        ]
    if manifest.command:
        lines += [f"Made by: `{manifest.command}`", ""]
    lines += [
        "| id | name (latest) | versions | architecture | tags |",
        "|---|---|---|---|---|",
    ]
    for skill in manifest.skills:
        latest = skill.versions[-1]
        tags = _cell(", ".join(latest.tags) or "-")
        lines.append(
            f"| `{skill.skill_id}` | {_cell(latest.name)} | {len(skill.versions)} "
            f"| {latest.arch_id} | {tags} |"
        )
    lines += [
        "",
        "Import it with `skillbank skills import PACK [--memory DIR]`, or read it in place with",
        "`--memory PACK` (eval, skills ls/show, verify). Import checks every file's SHA-256",
        "(listed in `manifest.json`), every safetensors header and weight against the",
        "architecture registry, and writes nothing unless all checks pass. Packs never hold code:",
        "weights are safetensors, configs are JSON.",
        "",
    ]
    return "\n".join(lines).encode()
