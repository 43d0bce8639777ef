"""Settings: loaded once at the edge (config file < environment < flags) and passed down explicitly.

Layout of the home directory (moved with `SECONDSELF_HOME`, default `~/.secondself`):

    settings.toml                 optional; keys as in `Settings` (see `secondself config` / README)
    persons/<person>/memory.sqlite3   one SQLite database per person (default person: "me")

Environment overrides: SECONDSELF_HOME, SECONDSELF_PERSON, SECONDSELF_PERSON_NAME, SECONDSELF_EMBEDDER,
SECONDSELF_PERSONA_MODEL, SECONDSELF_TEACHER_MODEL, SECONDSELF_STORE_URL, SECONDSELF_PERSONAL_ENDPOINT. API keys are read from the variable named by
`api_key_env` at call time and never written anywhere.
Nothing here runs at import time; `load_settings()` is called by the CLI/server and the result passed on.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import ConfigError

__all__ = ["Settings", "load_settings", "save_settings", "default_home"]

_PERSON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_home() -> Path:
    return Path(os.environ.get("SECONDSELF_HOME") or Path.home() / ".secondself").expanduser()


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Paths are absolute after `load_settings`."""

    home: Path = field(default_factory=default_home)
    person: str = field(default="me", metadata={"help": "whose memory: one database per person"})
    embedder: str = field(
        default="minilm",
        metadata={"help": "'minilm' (bundled all-MiniLM-L6-v2), 'hashing' (deterministic, no model), "
                          "or a path to a local sentence-transformers model directory"},
    )
    person_name: str = field(default="", metadata={"help": "the person's display name (chat exports say 'me')"})
    persona_model: str = field(
        default="auto",
        metadata={"help": "the model that answers as the person: 'auto' (the best catalog model installed: "
                          "qwen2.5-coder-1.5b, then 0.5b, then the embedded 135M), a catalog model ('embedded' = "
                          "SmolLM2-135M, "
                          "bundled; 'qwen2.5-coder-0.5b', 'qwen2.5-coder-1.5b'; see `secondself models`), "
                          "ollama:NAME[:TAG], a local .gguf file or HF model directory, 'openai:MODEL@BASE_URL' "
                          "for any OpenAI-compatible endpoint, or 'fake' (scripted, for demos)"},
    )
    teacher_model: str = field(default="embedded", metadata={"help": "the model used to build layers 1-2; "
                                                                     "same forms as persona_model"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the "
                                                                         "endpoint's API key (never stored)"})
    chunk_words: int = field(default=160, metadata={"help": "target chunk size in words"})
    embed_batch: int = field(default=64, metadata={"help": "texts per embedding call"})
    personal_endpoint: str = field(default="", metadata={"help": "serve the personal model on a vLLM server with "
                                                                 "multi-LoRA: openai:BASE@http://host:8000/v1 (BASE "
                                                                 "= the base model's name there; the server must "
                                                                 "read the person's directory at the same path); '' "
                                                                 "= on this machine"})
    store_url: str = field(default="", metadata={"help": "where memories live: '' (an SQLite file per person "
                                                         "under the home) or a Postgres URL "
                                                         "postgresql://user:password@host/db (pgvector needed)"})

    @property
    def person_dir(self) -> Path:
        return self.home / "persons" / self.person

    @property
    def models_dir(self) -> Path:
        """Converted model checkpoints (shared by every person)."""
        return self.home / "models"

    @property
    def db_path(self) -> Path:
        return self.person_dir / "memory.sqlite3"

    def describe(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


_ENV = {"SECONDSELF_PERSON": "person", "SECONDSELF_EMBEDDER": "embedder", "SECONDSELF_PERSON_NAME": "person_name",
        "SECONDSELF_PERSONA_MODEL": "persona_model", "SECONDSELF_TEACHER_MODEL": "teacher_model",
        "SECONDSELF_STORE_URL": "store_url", "SECONDSELF_PERSONAL_ENDPOINT": "personal_endpoint"}


def load_settings(home: str | Path | None = None, overrides: Mapping[str, object] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `home/settings.toml`, then environment, then `overrides` (CLI flags).

    Unknown keys and wrong types raise ConfigError naming the key and the file.
    """
    env = os.environ if environ is None else environ
    home_path = Path(home or env.get("SECONDSELF_HOME") or Path.home() / ".secondself").expanduser().resolve()
    values: dict[str, object] = {}
    cfg_file = home_path / "settings.toml"
    if cfg_file.exists():
        try:
            values.update(tomllib.loads(cfg_file.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{cfg_file} is not valid TOML: {e}. Fix or delete the file.") from e
    for var, key in _ENV.items():
        if env.get(var):
            values[key] = env[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})

    known = {f.name: f for f in fields(Settings)}
    for key, value in values.items():
        if key not in known or key == "home":
            raise ConfigError(f"unknown setting {key!r} (in {cfg_file} or the environment); known: "
                              + ", ".join(sorted(k for k in known if k != "home")))
        expected = type(getattr(Settings(home=home_path), key))
        if expected is int and isinstance(value, str) and value.isdigit():
            values[key] = int(value)
        elif not isinstance(values[key], expected):
            raise ConfigError(f"setting {key!r} must be {expected.__name__}, got {value!r}")
    settings = replace(Settings(home=home_path), **values)
    if not _PERSON_RE.match(settings.person):
        raise ConfigError(f"person name {settings.person!r} must be letters, digits, '.', '_' or '-'")
    if settings.chunk_words < 20:
        raise ConfigError("chunk_words must be at least 20")
    return settings


def save_settings(home: str | Path, updates: Mapping[str, str | int]) -> Path:
    """Set `updates` in `home/settings.toml`, keeping its other lines and comments; return the file.

    A key already set is rewritten in place, a new one appended. The result must load (same checks as
    `load_settings`, environment ignored) before it replaces the file, atomically."""
    home_path = Path(home).expanduser().resolve()
    cfg_file = home_path / "settings.toml"
    lines = cfg_file.read_text(encoding="utf-8").splitlines() if cfg_file.exists() else []
    for key, value in updates.items():
        rendered = f"{key} = {json.dumps(value, ensure_ascii=False)}"  # a JSON string or int is valid TOML
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        hits = [i for i, line in enumerate(lines) if pattern.match(line)]
        if hits:
            lines[hits[0]] = rendered
            lines = [line for i, line in enumerate(lines) if i not in hits[1:]]
        else:
            lines.append(rendered)
    text = "\n".join(lines) + "\n"
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"cannot update {cfg_file}: {e}. Fix or delete the file.") from e
    load_settings(home_path, overrides=values, environ={})  # validates keys and types; raises ConfigError
    home_path.mkdir(parents=True, exist_ok=True)
    tmp = cfg_file.with_name(f".settings.toml.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, cfg_file)
    return cfg_file
