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
- LoRA adapters per request: registered GGUF adapters are loaded once, unapplied, and EVERY request
  sends the full adapter list with scale 0 for those it does not use (`lora_init_without_apply` alone
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
import math
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, ContextOverflowError, ModelFileError, ModelNotAvailableError
from .chat import Message, Sampling
from .embedders import real_models_allowed
from .gguf_files import GGUFInfo, check_adapter, read_gguf, requantized_copy

__all__ = ["LlamaCppChatModel", "pick_threads", "DEFAULT_N_CTX"]

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 4096   # KV cache for one slot; the model's training context if that is smaller
_END = object()        # the worker thread's last queue item


def env_threads() -> int | None:
    """SECONDSELF_THREADS as a number, None when unset."""
    env = os.environ.get("SECONDSELF_THREADS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise ConfigError(f"SECONDSELF_THREADS must be a whole number >= 1, not {env!r}")
    return int(env)


def pick_threads(sample_s: float = 0.25) -> int:
    """Threads for llama.cpp: `SECONDSELF_THREADS` if set, else the cores free right now.

    Free cores are measured from /proc/stat over `sample_s` seconds on the CPUs this process may use
    (sched_getaffinity); the count is rounded down (a fraction of a core is not enough for a thread that
    the others wait for at every step) and is at least 1. Without /proc: the usable cores minus the
    1-minute load average.
    """
    env = env_threads()
    if env:
        return env
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    try:
        before = _cpu_times(cpus)
        time.sleep(sample_s)
        after = _cpu_times(cpus)
        idle = sum((after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1) for c in cpus)
    except (OSError, ValueError, KeyError, IndexError):
        idle = len(cpus) - os.getloadavg()[0] if hasattr(os, "getloadavg") else 1.0
    return max(1, min(len(cpus), math.floor(idle + 0.25)))  # 0.75 of a core idle counts as free


def _cpu_times(cpus: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(idle + iowait, total) jiffies per CPU from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        head, _, rest = line.partition(" ")
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cpus:
            v = [int(x) for x in rest.split()]
            out[int(head[3:])] = (v[3] + v[4], sum(v[:8]))
    return out


class _Engine:
    """One loaded llama.cpp server for a GGUF and its adapters, shared by every adapter view."""

    def __init__(self, gguf: Path, n_ctx: int | None, threads: int | None, n_batch: int, n_ubatch: int,
                 adapters: dict[str, Path], cache_dir: Path | None) -> None:
        self.gguf, self.n_ctx, self.threads = gguf, n_ctx, threads
        self.cache_dir = cache_dir              # None: run the file as it is
        self.loaded_path: Path | None = None    # what llama.cpp runs: gguf, or its Q8_0 copy
        self.n_batch, self.n_ubatch = n_batch, n_ubatch
        self.adapters = adapters                    # name -> path; the id is the position
        self.info: GGUFInfo | None = None
        self.server: Any = None
        self._http: Any = None
        self._dir: str | None = None
        self._lock = threading.Lock()

    def inspect(self) -> GGUFInfo:
        if self.info is None:
            self.info = read_gguf(self.gguf)
        return self.info

    def context_window(self) -> int:
        train = self.inspect().context_length or DEFAULT_N_CTX
        return min(self.n_ctx or DEFAULT_N_CTX, train)

    def check_files(self) -> None:
        """The model is a GGUF model and every adapter a GGUF LoRA made for it; else a typed error naming
        the file (AdapterMismatchError for an adapter of another base)."""
        info = self.inspect()
        if info.kind != "model":
            raise ModelFileError(self.gguf, f"this GGUF is a {info.kind}, not a model",
                                 "Give the base model's .gguf file (adapters are passed separately).")
        for path in self.adapters.values():
            check_adapter(path, info, self.gguf)

    def load(self) -> Any:
        if self.server is not None:
            return self.server
        self.check_files()  # headers only: a wrong file is named even where real models are off
        if not real_models_allowed():
            raise ModelNotAvailableError("real models are disabled in this test (SECONDSELF_REAL_MODELS=deny)")
        with self._lock:
            if self.server is None:
                self._start()
        return self.server

    def _start(self) -> None:
        try:
            import xllamacpp
        except ImportError as e:
            raise ModelNotAvailableError("GGUF models run on llama.cpp through the xllamacpp package: run "
                                         "`pip install -e .` (or `pip install xllamacpp`)") from e
        threads = self.threads or pick_threads()
        self.loaded_path = self.gguf
        if self.cache_dir is not None:
            t0 = time.perf_counter()
            self.loaded_path = requantized_copy(self.gguf, self.cache_dir)
            if self.loaded_path != self.gguf:
                log.info("using %s (Q8_0 copy, %.1f s)", self.loaded_path, time.perf_counter() - t0)
        self._dir = tempfile.mkdtemp(prefix="secondself-llama-")  # 0700: only this user reaches the socket
        key = secrets.token_hex(16)
        p = xllamacpp.CommonParams()
        p.model.path = str(self.loaded_path)
        p.n_ctx = self.context_window()
        p.n_parallel = 1                 # one generation at a time; the serving gate queues the rest
        p.n_batch, p.n_ubatch = self.n_batch, self.n_ubatch
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.hostnames = [os.path.join(self._dir, "llama.sock")]
        p.api_keys = [key]
        p.ui = False
        p.n_threads_http = 1
        p.cache_ram_mib = 0              # no host-memory prompt cache: RSS stays the model + one KV cache
        p.endpoint_metrics = True        # the engine's own token counters (tests check cancellation with them)
        p.verbosity = -1
        if self.adapters:
            p.lora_init_without_apply = True
            p.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(path), 0.0) for path in self.adapters.values()]
        t0 = time.perf_counter()
        try:
            server = xllamacpp.Server(p)
        except (RuntimeError, ValueError) as e:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise ModelFileError(self.gguf, f"llama.cpp could not load it ({e})",
                                 "The file may be truncated or of an architecture this llama.cpp does not "
                                 "know: download or assemble it again, or choose another model.") from e
        import httpx

        sock = server.listening_address.removeprefix("unix://")
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://llama.cpp",
                                  headers={"Authorization": f"Bearer {key}"}, timeout=60.0)
        self.threads = threads
        self.server = server
        log.info("llama.cpp loaded %s in %.1f s (%d threads, n_ctx %d)", self.gguf.name,
                 time.perf_counter() - t0, threads, p.n_ctx)

    def post(self, route: str, body: dict[str, Any]) -> Any:
        self.load()
        response = self._http.post(route, json=body)
        if response.status_code != 200:
            raise BackendError(f"llama.cpp {route} failed ({response.status_code}): {response.text[:300]}")
        return response.json()

    def metrics(self) -> dict[str, float]:
        """The engine's counters (tokens_predicted_total, prompt_tokens_total, requests_processing, ...)."""
        out = {}
        for line in self.load().handle_metrics().splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line[len("llamacpp:"):].partition(" ")
                out[name] = float(value)
        return out

    def generate(self, request: dict[str, Any], what: str) -> Iterator[str]:
        """Stream the content deltas of one chat request; closing the generator stops the engine."""
        server = self.load()
        chunks: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()

        def on_chunk(chunk: Any) -> bool:  # runs on the worker; its True tells llama.cpp to stop
            chunks.put(chunk)
            return cancel.is_set()

        def work() -> None:
            try:
                try:
                    server.handle_chat_completions(request, on_chunk)
                except ValueError as e:  # a schema llama.cpp cannot compile: unconstrained, the caller validates
                    if "json_schema" not in request:
                        raise
                    log.warning("llama.cpp cannot constrain output to this JSON schema (%s); generating "
                                "without the constraint", e)
                    server.handle_chat_completions({k: v for k, v in request.items() if k != "json_schema"},
                                                   on_chunk)
            except BaseException as e:  # handed to the reader, raised there
                chunks.put(e)
            finally:
                chunks.put(_END)

        worker = threading.Thread(target=work, name=f"llama.cpp {what}", daemon=True)
        worker.start()
        try:
            while (item := chunks.get()) is not _END:
                if isinstance(item, BaseException):
                    raise BackendError(f"llama.cpp failed on {what}: {item}") from item
                if "error" in item:
                    raise _error(item["error"], what)
                for choice in item.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        finally:
            cancel.set()   # the engine sees it at its next token and ends the request
            worker.join()

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
            self.server = self._http = None  # the server's destructor stops its loop thread
            if self._dir:
                shutil.rmtree(self._dir, ignore_errors=True)


def _error(err: dict[str, Any], what: str) -> BackendError:
    if err.get("type") == "exceed_context_size_error":
        return ContextOverflowError(f"the prompt is {err.get('n_prompt_tokens')} tokens but {what} holds "
                                    f"{err.get('n_ctx')}: shorten the conversation or memories")
    return BackendError(f"llama.cpp refused the request to {what}: {err.get('message', err)}")


class LlamaCppChatModel:
    """A GGUF chat model run in-process by llama.cpp. Loaded on first use; `close()` frees it.

    `gguf`: the model file. `name`: display name (default: the file's stem).
    `n_ctx`: context window in tokens (default min(4096, the model's training context)).
    `threads`: llama.cpp threads for prompts and generation (default `pick_threads()` at load).
    `n_batch`, `n_ubatch`: prompt-processing batch sizes (see bench/engine.py for the measurement).
    `cache_dir`: where a Q8_0 copy of a Q4_1/Q5_1 file is kept (default `<SECONDSELF_HOME>/models/llamacpp`);
    `requantize=False` runs such a file as it is (slower prompts).
    `adapters`: {name: path of a GGUF LoRA adapter trained on this base}, loaded with the model but
    applied only by the views `with_adapter(name)` returns (all views share one loaded engine).
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
            loras[key] = Path(value).expanduser()
            if not loras[key].is_file():
                raise ModelFileError(loras[key], "no such adapter file",
                                     "Check the path; `secondself model list` shows the trained adapters.")
        if requantize and cache_dir is None:
            from ..config import default_home
            cache_dir = default_home() / "models" / "llamacpp"
        cache = Path(cache_dir).expanduser() if requantize and cache_dir is not None else None
        self._engine = _Engine(path.resolve(), n_ctx, threads, n_batch, n_ubatch, loras, cache)
        self._base_name = name or path.stem
        self.adapter: str | None = None
        self.name = self._base_name

    def with_adapter(self, adapter: str | None) -> LlamaCppChatModel:
        """A view of this model that applies the registered adapter `adapter` (None: the base alone)."""
        if adapter is not None and adapter not in self._engine.adapters:
            known = ", ".join(sorted(self._engine.adapters)) or "none"
            raise ConfigError(f"no adapter named {adapter!r} is registered with {self._base_name} "
                              f"(registered: {known})")
        view = object.__new__(LlamaCppChatModel)
        view._engine, view._base_name, view.adapter = self._engine, self._base_name, adapter
        view.name = self._base_name if adapter is None else f"{self._base_name}+{adapter}"
        return view

    def __repr__(self) -> str:
        return f"LlamaCppChatModel(name={self.name!r}, loaded={self._engine.server is not None})"

    @property
    def path(self) -> Path:
        return self._engine.gguf

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self._engine.adapters)

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
        if not text:
            return 0
        return len(self._engine.post("/tokenize", {"content": text, "add_special": False})["tokens"])

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        """Check the request fits, then return the streaming generator (nothing runs until it is read)."""
        request = self._request(messages, sampling)
        n_prompt = self._engine.post("/v1/chat/completions/input_tokens",
                                     {"messages": request["messages"]})["input_tokens"]
        if n_prompt + sampling.max_tokens > self.context_window:
            raise ContextOverflowError(
                f"the prompt is {n_prompt} tokens plus up to {sampling.max_tokens} for the reply, but "
                f"{self.name} reads at most {self.context_window}: shorten the conversation (fewer or "
                "shorter messages and memories) or lower max_tokens")
        return self._engine.generate(request, self.name)

    def metrics(self) -> dict[str, float]:
        """llama.cpp's own counters for this engine (shared by all adapter views)."""
        return self._engine.metrics()

    def close(self) -> None:
        """Free the engine (for every view); the next use loads it again."""
        self._engine.close()

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
        if self._engine.adapters:  # always the full list: an adapter left out would keep its last scale
            request["lora"] = [{"id": i, "scale": 1.0 if name == self.adapter else 0.0}
                               for i, name in enumerate(self._engine.adapters)]
        return request

