"""Files and notes that arrive over the API or MCP, saved where ingest can read them.

Everything lands in `persons/<p>/uploads/<source>/<name>`; that folder is one ingest source, so a re-upload
of the same name replaces the file and re-ingest stays incremental. An upload never goes into a source that
one of the person's folders owns (`upload_source`). Names from clients are never trusted:
`safe_filename` keeps only the last path component, drops control and separator characters, and the final
path is checked to lie inside the uploads folder. Sizes are capped while reading, before anything is
written, and files are written to a temporary name and renamed, so a cut upload leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError, SourceConflictError, UploadTooLarge

__all__ = ["DEFAULT_MAX_BYTES", "UploadTooLarge", "safe_filename", "safe_source", "uploads_dir", "upload_source",
           "save_upload", "save_note"]

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def uploads_dir(person_dir: Path) -> Path:
    return person_dir / "uploads"


def safe_source(name: str | None) -> str:
    name = (name or "uploads").strip()
    if not _SOURCE.match(name) or name in (".", ".."):
        raise ConfigError(f"source name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, not starting "
                          "with '.')")
    return name


def upload_source(roots: Mapping[str, str], person_dir: Path, requested: str | None, default: str) -> str:
    """The source an upload goes into, given the store's sources (`roots`: name → root): never one that a
    folder of the person's owns.

    Ingesting `uploads/<name>` as the source <name> re-points that source at the uploads folder; done to a
    folder source, the next `ingest` would report all of the folder's files missing and `ingest --prune` would
    delete them. A source is the server's own when its root is `uploads/<name>`. So:
    - a name the client chose (`requested`) must be new or the server's own, else SourceConflictError (409):
      the client named the source, so it decides; filing its files under another name would surprise it;
    - the server's default (`default`: 'uploads', 'notes', 'mcp') moves on to `<default>-2`, `-3`, ...: the
      client chose nothing, and refusing would stop every such upload for whoever ingested a folder that
      happens to bear the default's name."""
    def own(name: str) -> bool:
        root = roots.get(name)
        return root is None or Path(root).resolve() == (uploads_dir(person_dir) / name).resolve()

    if requested and requested.strip():
        name = safe_source(requested)
        if not own(name):
            raise SourceConflictError(f"the source {name!r} is the folder {roots[name]}, not an upload source: "
                                      "uploading into it would make the next ingest treat that folder's files as "
                                      "missing. Choose another source name")
        return name
    name, n = safe_source(default), 1
    while not own(name):
        n += 1
        name = safe_source(f"{default}-{n}")
    return name


def safe_filename(name: str | None) -> str:
    """A harmless file name from a client's name: last component only, no control or reserved characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"[<>:\"|?*]", "_", name).strip().lstrip(".")
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 120 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else name[:120]
    if not name or name in (".", ".."):
        raise ConfigError("the uploaded file has no usable name")
    return name


def _target(person_dir: Path, source: str, filename: str) -> Path:
    root = (uploads_dir(person_dir) / safe_source(source)).resolve()
    path = (root / safe_filename(filename)).resolve()
    if path.parent != root:  # belt and braces: nothing above can escape, but check the result anyway
        raise ConfigError(f"refusing to write outside the uploads folder: {filename!r}")
    return path


def save_upload(person_dir: Path, source: str, filename: str, chunks: Iterable[bytes],
                max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Write an uploaded file atomically; raises UploadTooLarge (writing nothing) past `max_bytes`."""
    path = _target(person_dir, source, filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(f"{path.name} is larger than the limit of {max_bytes // (1024 * 1024)} MiB "
                                         "(serve --max-upload-mb raises it)")
                out.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_note(person_dir: Path, text: str, title: str | None = None, source: str = "notes",
              when: datetime | None = None) -> Path:
    """A note typed by the person (web app) or an agent (MCP `add_memory`), saved as a dated Markdown file.

    The date goes into the file name, which ingest reads as the document date."""
    if not text or not text.strip():
        raise ConfigError("the memory is empty")
    when = when or datetime.now(UTC)
    slug = re.sub(r"[^a-z0-9]+", "-", (title or text[:40]).lower()).strip("-")[:40] or "note"
    body = f"# {title}\n\n{text.strip()}\n" if title else text.strip() + "\n"
    folder = uploads_dir(person_dir) / safe_source(source)
    name, n = f"{when:%Y-%m-%d-%H%M%S}-{slug}.md", 1
    while (folder / name).exists():  # two notes in the same second must not overwrite each other
        n += 1
        name = f"{when:%Y-%m-%d-%H%M%S}-{slug}-{n}.md"
    return save_upload(person_dir, source, name, [body.encode("utf-8")])
