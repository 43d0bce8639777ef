"""Chat models loaded once per process and shared by several Runtimes (`secondself serve --all-persons`: one
Runtime per person, one base model in memory for all of them).

A Runtime with a `ModelCache` asks it for every model spec but 'personal' (a person's adapter stays theirs,
runtime.py). Loading is done once per spec even when two persons ask at the same moment: the second waits for
the first load rather than loading a second copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ModelCache"]

log = logging.getLogger(__name__)


class ModelCache:
    """spec → loaded chat model, shared across Runtimes; thread-safe, one load per spec."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, spec: str, load: Callable[[], Any]) -> Any:
        """The model for `spec`, loaded with `load()` the first time (a failed load is retried next time)."""
        with self._lock:
            if spec in self._models:
                return self._models[spec]
            gate = self._loading.setdefault(spec, threading.Lock())
        with gate:
            with self._lock:
                if spec in self._models:
                    return self._models[spec]
            model = load()
            with self._lock:
                self._models[spec] = model
                self._loading.pop(spec, None)
            return model

    def __contains__(self, spec: str) -> bool:
        with self._lock:
            return spec in self._models

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def close(self) -> None:
        """Close every model that holds memory until closed (llama.cpp engines); forget them all."""
        from .registry import DeferredChatModel

        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            if isinstance(model, DeferredChatModel):  # asking one never built for `close` would build it
                model = model._model
                if model is None:
                    continue
            try:
                close = getattr(model, "close", None)
                if close is not None:
                    close()
            except Exception:  # one model failing to close must not keep the others loaded
                log.exception("closing a shared model failed")
