"""What `secondself status` reports: counts, disk use, the embedding model, and what is stale.

Stale means: chunks lacking a vector from the configured embedder, files changed/added/deleted on disk
since the last ingest (found by a stat-only scan, no hashing), and files that failed to read.
"""

from __future__ import annotations

from pathlib import Path

from .backends.embedders import embedder_name
from .config import Settings
from .ingest.files import relative_name, walk_files
from .ingest.readers import is_supported
from .store import Store

__all__ = ["memory_status"]


def memory_status(store: Store, settings: Settings) -> dict[str, object]:
    stats = store.stats()
    name = embedder_name(settings.embedder)
    changed, new, missing, failed = [], [], [], []
    for source, root in store.source_roots().items():
        root_p = Path(root)
        known = {f.path: f for f in store.files(store.source_id(source))}
        failed += [f"{source}/{f.path}: {f.reason}" for f in known.values() if f.status == "failed"]
        if not root_p.exists():
            missing.append(f"{source}/ (folder {root} is gone)")
            continue
        base = root_p if root_p.is_dir() else root_p.parent
        on_disk = set()
        for p in walk_files(root_p):
            if not is_supported(p):
                continue
            rel = relative_name(p, base)  # as ingest stores it
            on_disk.add(rel)
            f = known.get(rel)
            if f is None:
                new.append(f"{source}/{rel}")
            elif f.status in ("ok", "duplicate"):
                try:
                    st = p.stat()
                except OSError:  # a dangling link where the file was
                    changed.append(f"{source}/{rel}")
                    continue
                if st.st_size != f.size or st.st_mtime != f.mtime:
                    changed.append(f"{source}/{rel}")
        missing += [f"{source}/{rel}" for rel in known if rel not in on_disk]
    return {
        "person": settings.person,
        "database": str(store.path),
        "db_mb": round(int(stats["db_bytes"]) / 1e6, 2),
        "sources": stats["sources"],
        "files": stats["files"],
        "documents": stats["documents"],
        "chunks": stats["chunks"],
        "embedder": name,
        "vectors": stats["vectors"],
        "stale": {
            "missing_vectors": store.count_missing_vectors(name),
            "changed_files": changed, "new_files": new, "missing_files": missing, "failed_files": failed,
        },
    }
