"""The skill memory: SQLite (WAL) is the single source of truth; weights are content-addressed
safetensors blobs beside it.

On disk, a memory directory holds::

    skills.sqlite          every skill version, its key, metadata, usage (the truth)
    blobs/ab/abcd....safetensors   weights, named by the SHA-256 of their bytes
    index/                 approximate-search cache (rebuildable; never the truth)

CONTRACT (helpers implement this; keep the signatures):

    SkillMemory(path, *, create=True, busy_timeout_s=30.0, index: str = "exact")
        index: "exact" (default), "faiss" or "usearch" (extras); the approximate index is a
        cache checked against the database on open and rebuilt when stale.
    .add(name, key, arch_id, arch_config, weights, provenance, *, tags=(), skill_id=None,
         created_at=None) -> SkillRecord          # new skill, version 1
    .add_version(skill_id, *, weights=None, key=None, arch_config=None, name=None, tags=None,
         provenance=None) -> SkillRecord          # new version whose parent is the latest
    .get(skill_id, version=None) -> SkillRecord  # latest when version is None
    .get_version(version_id) -> SkillRecord
    .versions(skill_id) -> list[SkillRecord]     # oldest first
    .list(filters: RetrievalFilter | None = None) -> list[SkillRecord]  # latest versions
    .load_weights(record) -> dict[str, np.ndarray]  # verifies the blob hash
    .retrieve(query (Z,), k, *, filters=None, metric="dot"|"cosine", temperature=1.0,
         approximate=False, record=True) -> Retrieval
    .keys(filters=None) -> tuple[list[str], np.ndarray (N, Z)]   # latest versions
    .record_usage(skill_id, *, retrieved=0, executed=0, succeeded=0) -> None
    .record_usage_many(counts: Mapping[str, tuple[int, int, int]]) -> None  # one transaction
    .delete(skill_id) -> None                    # explicit; removes every version's rows
    .gc() -> GcReport                            # removes blobs no version references
    .verify() -> list[Problem]                   # read-only
    .key_dim -> int | None ; len(memory) -> number of skills ; .close(); context manager
"""
