"""The llama.cpp engine behind `LlamaCppChatModel`: one loaded base per GGUF per process, shared by every model
object on that file (the persona model, each person's personal model, a training run's models), with the
persons' LoRA adapters loaded into it on demand.

llama.cpp's server (through `xllamacpp.Server`) takes its adapters when it starts: `lora_adapters` in its
parameters; a request then chooses scales for those by position (`"lora": [{"id", "scale"}]`), and
`/lora-adapters` only sets their global scales. No call loads an adapter into a running server (xllamacpp
2026.10: `Server` has handle_* methods only). So the engine keeps an LRU of loaded adapters bounded by
`max_adapters` (`SECONDSELF_MAX_ADAPTERS`, default 8): a request for an adapter that is not loaded restarts
the server with it plus the most recently used others (the least recently used beyond the bound is evicted).
A restart waits for the requests in flight to finish (every request holds a lease on the running server) and
holds new ones back until the new server is up; an evicted adapter is loaded again on its next request. Its
cost is a reload of the base (bench/adapters.py measures it against a request whose adapter is loaded).

Measured (bench/adapters.py, 135M, 1 thread): a loaded adapter at scale 0 costs memory (about its file size),
not time; applying one costs ~1.5x the base's time to first token, switching the applied adapter between two
requests ~3x (llama.cpp rebuilds its compute graph), and a restart for an evicted one ~10x.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, ContextOverflowError, ModelFileError, ModelNotAvailableError
from .embedders import real_models_allowed
from .gguf_files import GGUFInfo, check_adapter, read_gguf, requantized_copy

__all__ = ["shared_engine", "pick_threads", "env_threads", "max_adapters", "DEFAULT_N_CTX", "DEFAULT_MAX_ADAPTERS"]

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 4096        # KV cache for one slot; the model's training context if that is smaller
DEFAULT_MAX_ADAPTERS = 8    # adapters loaded at once in one engine (SECONDSELF_MAX_ADAPTERS)
_END = object()             # the worker thread's last queue item


def _env_count(var: str) -> int | None:
    env = os.environ.get(var, "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise ConfigError(f"{var} must be a whole number >= 1, not {env!r}")
    return int(env)


def env_threads() -> int | None:
    """SECONDSELF_THREADS as a number, None when unset."""
    return _env_count("SECONDSELF_THREADS")


def max_adapters() -> int:
    """How many adapters one engine keeps loaded: SECONDSELF_MAX_ADAPTERS, default 8."""
    return _env_count("SECONDSELF_MAX_ADAPTERS") or DEFAULT_MAX_ADAPTERS


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
    from ..cpu import free_cores, threads_for, usable_cpus

    return threads_for(free_cores(sample_s), len(usable_cpus()))


_POOL: dict[tuple[Any, ...], _Engine] = {}
_POOL_LOCK = threading.Lock()


def shared_engine(gguf: Path, n_ctx: int | None, threads: int | None, n_batch: int, n_ubatch: int,
                  cache_dir: Path | None) -> _Engine:
    """The process's engine for this GGUF and these load settings, created (not loaded) on first request.
    Where the Q8_0 copy is cached does not make another engine: the first caller's directory is used."""
    key = (gguf.resolve(), n_ctx, threads, n_batch, n_ubatch, cache_dir is not None)
    with _POOL_LOCK:
        if key not in _POOL:
            _POOL[key] = _Engine(gguf.resolve(), n_ctx, threads, n_batch, n_ubatch, cache_dir)
        return _POOL[key]


class _Engine:
    """One llama.cpp server for a GGUF, its loaded adapters (an LRU), and the leases of requests on it."""

    drain_s = 600.0   # how long a restart waits for the requests in flight

    def __init__(self, gguf: Path, n_ctx: int | None, threads: int | None, n_batch: int, n_ubatch: int,
                 cache_dir: Path | None) -> None:
        self.gguf, self.n_ctx, self.threads = gguf, n_ctx, threads
        self.cache_dir = cache_dir              # None: run the file as it is
        self.loaded_path: Path | None = None    # what llama.cpp runs: gguf, or its Q8_0 copy
        self.n_batch, self.n_ubatch = n_batch, n_ubatch
        self.max_adapters = max_adapters()
        self.info: GGUFInfo | None = None
        self.server: Any = None
        self.loaded: list[Path] = []            # the running server's adapters: a request names them by position
        self.starts = 0                         # servers started (the first load and every restart)
        self._recent: OrderedDict[Path, None] = OrderedDict()  # loaded adapters, least recently used first
        self._checked: set[Path] = set()
        self._http: Any = None
        self._dir: str | None = None
        self._cond = threading.Condition()
        self._active = 0                        # leases held: requests running on the current server
        self._restarting = False
        self._mine = threading.local()          # leases held by this thread (a restart it asked for would wait forever)

    # -- files --------------------------------------------------------------------------------------
    def inspect(self) -> GGUFInfo:
        if self.info is None:
            self.info = read_gguf(self.gguf)
        return self.info

    def context_window(self) -> int:
        train = self.inspect().context_length or DEFAULT_N_CTX
        return min(self.n_ctx or DEFAULT_N_CTX, train)

    def check_model(self) -> None:
        info = self.inspect()
        if info.kind != "model":
            raise ModelFileError(self.gguf, f"this GGUF is a {info.kind}, not a model",
                                 "Give the base model's .gguf file (adapters are passed separately).")

    def check_adapter(self, path: Path) -> None:
        """A GGUF LoRA made for this base, else a typed error naming the file (AdapterMismatchError for an
        adapter of another base); from the headers, once per file."""
        if path not in self._checked:
            check_adapter(path, self.inspect(), self.gguf)
            self._checked.add(path)

    # -- leases, the LRU and restarts ----------------------------------------------------------------
    def plan(self, adapter: Path | None) -> list[Path]:
        """The adapters a request for `adapter` will find loaded (after a restart if it needs one)."""
        with self._cond:
            if adapter is None or adapter in self.loaded:
                return list(self.loaded)
            return self._next_set(adapter)

    def _next_set(self, adapter: Path) -> list[Path]:
        keep = [p for p in self._recent if p != adapter and p.is_file()]  # a deleted version is dropped
        return keep[max(0, len(keep) - self.max_adapters + 1):] + [adapter]

    @contextmanager
    def lease(self, adapter: Path | None = None) -> Iterator[list[Path]]:
        """Hold the running server (started, or restarted with `adapter` loaded, first) for one request;
        yields its adapter list. Restarts wait until no lease is held and hold new leases back meanwhile."""
        self.check_model()  # headers only: a wrong file is named even where real models are off
        if adapter is not None:
            self.check_adapter(adapter)
        if not real_models_allowed():
            raise ModelNotAvailableError("real models are disabled in this test (SECONDSELF_REAL_MODELS=deny)")
        with self._cond:
            while True:
                self._cond.wait_for(lambda: not self._restarting)
                if self.server is not None and (adapter is None or adapter in self.loaded):
                    break
                self._restart(adapter)
            if adapter is not None:
                self._recent.move_to_end(adapter)
            self._active += 1
            loaded = list(self.loaded)
        self._mine.n = getattr(self._mine, "n", 0) + 1
        try:
            yield loaded
        finally:
            self._mine.n = getattr(self._mine, "n", 1) - 1  # a generator closed by the GC elsewhere
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _restart(self, adapter: Path | None) -> None:
        """With the condition held: wait for the leases in flight, stop the server, start one with `adapter`."""
        if self._active and getattr(self._mine, "n", 0):
            raise BackendError(f"{self.gguf.name}: a reply on this thread is still open, so the engine cannot "
                               "load another adapter; read or close it first")
        self._restarting = True
        try:
            if not self._cond.wait_for(lambda: self._active == 0, timeout=self.drain_s):
                raise BackendError(f"{self.gguf.name}: requests in flight did not finish within {self.drain_s:.0f} "
                                   "s, so another adapter could not be loaded; try again")
            wanted = list(self.loaded) if adapter is None else self._next_set(adapter)
            evicted = [p for p in self.loaded if p not in wanted]
            self._stop()
            self._start(wanted)
            self._recent = OrderedDict((p, None) for p in self._recent if p in wanted)
            self._recent.update((p, None) for p in wanted if p not in self._recent)
            if evicted:
                log.info("llama.cpp %s: evicted %d adapter(s) (least recently used, bound %d): %s", self.gguf.name,
                         len(evicted), self.max_adapters, ", ".join(p.parent.name + "/" + p.name for p in evicted))
        finally:
            self._restarting = False
            self._cond.notify_all()

    def forget(self, adapter: Path) -> None:
        """`adapter` will not be asked for again: it is the first evicted (no restart now)."""
        with self._cond:
            if adapter in self._recent:
                self._recent.move_to_end(adapter, last=False)

    # -- the server ---------------------------------------------------------------------------------
    def _start(self, adapters: list[Path]) -> None:
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
        if adapters:
            p.lora_init_without_apply = True
            p.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(path), 0.0) for path in adapters]
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
        self.server, self.loaded = server, list(adapters)
        self.starts += 1
        log.info("llama.cpp loaded %s with %d adapter(s) in %.1f s (%d threads, n_ctx %d)", self.gguf.name,
                 len(adapters), time.perf_counter() - t0, threads, p.n_ctx)

    def _stop(self) -> None:
        if self._http is not None:
            self._http.close()
        self.server = self._http = None  # the server's destructor stops its loop thread
        self.loaded = []
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def close(self) -> None:
        """Stop the server once the requests in flight are done; the next request starts it again."""
        if getattr(self._mine, "n", 0):
            raise BackendError(f"{self.gguf.name}: a reply on this thread is still open; read or close it before "
                               "closing the model")
        with self._cond:
            self._cond.wait_for(lambda: self._active == 0 and not self._restarting, timeout=self.drain_s)
            self._stop()

    # -- requests -----------------------------------------------------------------------------------
    def post(self, route: str, body: dict[str, Any], adapter: Path | None = None) -> Any:
        with self.lease(adapter):
            response = self._http.post(route, json=body)
        if response.status_code != 200:
            raise BackendError(f"llama.cpp {route} failed ({response.status_code}): {response.text[:300]}")
        return response.json()

    def metrics(self) -> dict[str, float]:
        """The running server's counters (tokens_predicted_total, prompt_tokens_total, ...); a restart resets them."""
        with self.lease():
            text = self.server.handle_metrics()
        out = {}
        for line in text.splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line[len("llamacpp:"):].partition(" ")
                out[name] = float(value)
        return out

    def generate(self, request: dict[str, Any], what: str, adapter: Path | None = None) -> Iterator[str]:
        """Stream the content deltas of one chat request with `adapter` applied (scale 1, every other loaded
        adapter 0); closing the generator stops the engine. The lease is taken when reading starts."""
        with self.lease(adapter) as loaded:
            if loaded:  # always the full list: an adapter left out would keep its last scale
                request = {**request, "lora": lora_list(loaded, adapter)}
            yield from self._generate(self.server, request, what)

    def _generate(self, server: Any, request: dict[str, Any], what: str) -> Iterator[str]:
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


def lora_list(loaded: Sequence[Path], adapter: Path | None) -> list[dict[str, Any]]:
    return [{"id": i, "scale": 1.0 if path == adapter else 0.0} for i, path in enumerate(loaded)]


def _error(err: dict[str, Any], what: str) -> BackendError:
    if err.get("type") == "exceed_context_size_error":
        return ContextOverflowError(f"the prompt is {err.get('n_prompt_tokens')} tokens but {what} holds "
                                    f"{err.get('n_ctx')}: shorten the conversation or memories")
    return BackendError(f"llama.cpp refused the request to {what}: {err.get('message', err)}")
