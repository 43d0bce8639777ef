"""LlamaCppChatModel: GGUF models run in this process by llama.cpp, through the prebuilt `xllamacpp` wheel.

The engine knows nothing about secondself: it is llama.cpp's own server code (`xllamacpp.Server`), called
in-process with OpenAI-shaped requests, so the model's own chat template, its sampling, stop strings,
JSON-schema constraints (`Sampling.json_schema`) and LoRA adapters are llama.cpp's. What this module adds:

- lazy loading (construction only checks the path; the first `stream`/`count_tokens` loads);
- a thread count from the cores that are actually free (`pick_threads`; `SECONDSELF_THREADS` or
  `threads=` overrides): llama.cpp's workers spin and synchronize at every step, so one thread more than
  the free cores makes them wait on each other (issue 12: 3-15 tokens/s with 2 threads on a busy machine,
  59-76 with 1). Prompts use the same count: on a 2-core machine at load average 11, 2 threads for the
  prompt alone made the time to first token 2.9x longer than 1 (bench/engine.py), though in a quieter
  minute they were 1.4x faster; the free-core count is the choice that never collapses;
- streaming as a generator: the blocking engine call runs on a worker thread and hands chunks over a
  queue; closing the generator makes the engine's callback answer "stop", so generation ends in the
  engine at the next token (verified by the engine's own token counter in tests/test_llamacpp.py);
- LoRA adapters per request on one shared base: every model object on the same GGUF (the persona model,
  each person's personal model) uses one engine per process (backends/llama_engine.py), which loads the
  adapters asked for into an LRU bounded by `SECONDSELF_MAX_ADAPTERS` (default 8), restarting llama.cpp
  when an adapter is not loaded (llama.cpp cannot add one to a running server). EVERY request sends the
  full list of loaded adapters with scale 0 for those it does not use (`lora_init_without_apply` alone
  still applied an adapter to requests that named none);
- typed errors naming the file for a missing or corrupt GGUF and for an adapter made for another base,
  from the files' headers before anything is loaded;
- fast prompt processing: a GGUF whose matrices are Q4_1/Q5_1 (the embedded SmolLM2 is Q4_1) has no fast
  CPU matrix-matrix kernel in llama.cpp, so its prompts took ~1.6x as long as with Q8_0 and longer than
  the transformers path; such a file is re-encoded once as Q8_0 into the models cache (same values to
  within 1/250 of a quantization step, same generation speed). Batch sizes made no measurable difference.

The server also listens for HTTP (llama.cpp needs it for tokenizing): on a Unix socket in a private
0700 directory, with a random API key and no web UI, so nothing is exposed on a TCP port.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ContextOverflowError, ModelFileError
from .chat import Message, Sampling
from .llama_engine import DEFAULT_N_CTX, env_threads, lora_list, pick_threads, shared_engine

__all__ = ["LlamaCppChatModel", "pick_threads", "env_threads", "DEFAULT_N_CTX"]

log = logging.getLogger(__name__)


class LlamaCppChatModel:
    """A GGUF chat model run in-process by llama.cpp. Loaded on first use; `close()` frees it.

    `gguf`: the model file. `name`: display name (default: the file's stem).
    `n_ctx`: context window in tokens (default min(4096, the model's training context)).
    `threads`: llama.cpp threads for prompts and generation (default `pick_threads()` at load).
    `n_batch`, `n_ubatch`: prompt-processing batch sizes (see bench/engine.py for the measurement).
    `cache_dir`: where a Q8_0 copy of a Q4_1/Q5_1 file is kept (default `<SECONDSELF_HOME>/models/llamacpp`);
    `requantize=False` runs such a file as it is (slower prompts).
    `adapters`: {name: path of a GGUF LoRA adapter trained on this base}, applied only by the views
    `with_adapter(name)` returns. Names are this object's own; the engine knows adapters by file, so two
    persons' "v001" never meet. Every object with the same file and settings shares one loaded engine.
    """

    constrains_output = True  # Sampling.json_schema is enforced while sampling

    def __init__(self, gguf: str | Path, *, name: str | None = None, n_ctx: int | None = None,
                 threads: int | None = None, n_batch: int = 512, n_ubatch: int = 128,
                 adapters: Mapping[str, str | Path] | None = None, cache_dir: str | Path | None = None,
                 requantize: bool = True) -> None:
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise ModelFileError(path, "no such model file" if not path.exists() else "not a file",
                                 "Check the path, or run `secondself models` to see the installed models.")
        for label, value in (("n_ctx", n_ctx), ("threads", threads)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{label} must be a whole number >= 1 or None, not {value!r}")
        if not 1 <= n_ubatch <= n_batch:
            raise ConfigError(f"need 1 <= n_ubatch <= n_batch, not n_ubatch={n_ubatch}, n_batch={n_batch}")
        loras: dict[str, Path] = {}
        for key, value in (adapters or {}).items():
            loras[key] = Path(value).expanduser().resolve()
            if not loras[key].is_file():
                raise ModelFileError(loras[key], "no such adapter file",
                                     "Check the path; `secondself model list` shows the trained adapters.")
        if requantize and cache_dir is None:
            from ..config import default_home
            cache_dir = default_home() / "models" / "llamacpp"
        cache = Path(cache_dir).expanduser() if requantize and cache_dir is not None else None
        self._engine = shared_engine(path, n_ctx, threads, n_batch, n_ubatch, cache)
        self._adapters = loras
        self._base_name = name or path.stem
        self.adapter: str | None = None
        self.name = self._base_name

    def with_adapter(self, adapter: str | None) -> LlamaCppChatModel:
        """A view of this model that applies the registered adapter `adapter` (None: the base alone)."""
        if adapter is not None and adapter not in self._adapters:
            known = ", ".join(sorted(self._adapters)) or "none"
            raise ConfigError(f"no adapter named {adapter!r} is registered with {self._base_name} "
                              f"(registered: {known})")
        view = object.__new__(LlamaCppChatModel)
        view._engine, view._adapters, view._base_name, view.adapter = (self._engine, self._adapters,
                                                                       self._base_name, adapter)
        view.name = self._base_name if adapter is None else f"{self._base_name}+{adapter}"
        return view

    def __repr__(self) -> str:
        return f"LlamaCppChatModel(name={self.name!r}, loaded={self._engine.server is not None})"

    @property
    def _lora(self) -> Path | None:
        return None if self.adapter is None else self._adapters[self.adapter]

    @property
    def path(self) -> Path:
        return self._engine.gguf

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    @property
    def where(self) -> str:
        n = self._engine.threads
        threads = f", {n} thread{'s' if n != 1 else ''}" if self._engine.server is not None else ""
        return f"local CPU (llama.cpp{threads})"

    @property
    def context_window(self) -> int:
        """n_ctx as loaded; reading it opens only the GGUF's header."""
        return self._engine.context_window()

    @property
    def threads(self) -> int | None:
        """The thread count llama.cpp runs with (known once loaded, or when given)."""
        return self._engine.threads

    def count_tokens(self, text: str) -> int:
        self._check_adapters()
        if not text:
            return 0
        return len(self._engine.post("/tokenize", {"content": text, "add_special": False}, self._lora)["tokens"])

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        """Check the request fits, then return the streaming generator (nothing runs until it is read)."""
        self._check_adapters()
        request = self._request(messages, sampling)
        request.pop("lora", None)  # the engine names the adapters loaded when the generation starts
        n_prompt = self._engine.post("/v1/chat/completions/input_tokens",
                                     {"messages": request["messages"]}, self._lora)["input_tokens"]
        if n_prompt + sampling.max_tokens > self.context_window:
            raise ContextOverflowError(
                f"the prompt is {n_prompt} tokens plus up to {sampling.max_tokens} for the reply, but "
                f"{self.name} reads at most {self.context_window}: shorten the conversation (fewer or "
                "shorter messages and memories) or lower max_tokens")
        return self._engine.generate(request, self.name, self._lora)

    def metrics(self) -> dict[str, float]:
        """llama.cpp's own counters for this engine (shared by every model on the file; a restart resets them)."""
        return self._engine.metrics()

    def close(self) -> None:
        """The base model (no adapter): free the engine, for every model on the file (the next use loads it
        again). An adapter's view: its adapter is released (the first evicted), the shared base stays."""
        if self.adapter is None:
            self._engine.close()
        else:
            self._engine.forget(self._adapters[self.adapter])

    def _check_adapters(self) -> None:
        """Every adapter of this object fits the base (AdapterMismatchError naming the file otherwise)."""
        self._engine.check_model()
        for path in self._adapters.values():
            self._engine.check_adapter(path)

    def _request(self, messages: Sequence[Message], sampling: Sampling) -> dict[str, Any]:
        request: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            # our Sampling means temperature + top_p only: llama.cpp's extra default filters are off
            "top_k": 0, "min_p": 0.0,
            "stream": True,
        }
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        if sampling.stop:  # Response cuts at them too; here they also stop the engine early
            request["stop"] = list(sampling.stop)
        if sampling.json_schema is not None:
            request["json_schema"] = dict(sampling.json_schema)
        if loaded := self._engine.plan(self._lora):  # as it will be sent, if no restart comes between
            request["lora"] = lora_list(loaded, self._lora)
        return request
