"""Adapter versions: the artifact between training and serving.

Each finished training run becomes one directory under `<person dir>/adapters/`:

    v003/
      adapter_model.safetensors   LoRA weights (peft)
      adapter_config.json         peft's config (rank, alpha, target modules, base model path)
      secondself.json             our metadata: base model, sample counts by kind, hyperparameters, rank and
                                  why, training figures, eval scores, created_at

A version directory appears only complete (it is renamed into place) and is never modified afterwards,
except that evaluation scores and the base's GGUF path (`base_gguf`) may be added to its metadata, and its
GGUF form (`adapter_model.gguf`, train/gguf_lora.py) is written beside the weights once, after training or
when it is first served. Which version chat uses is
recorded in the person's database (meta `adapter_current`, with the history of selections for `rollback`).

Serving (`personal_chat_model`): when the base model has a GGUF — the file recorded at training
(`base_gguf` in the metadata), else the catalog model its checkpoint was converted from — the personal model
is the llama.cpp engine on that GGUF with the adapter applied per request; otherwise transformers with peft's
adapter merged in. `personal_engine` says which, without loading or hashing anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterNotFoundError, TrainingError
from ..store import Store, now_iso

__all__ = ["AdapterInfo", "adapters_dir", "list_adapters", "register", "get", "current", "use", "rollback",
           "update_metadata", "base_gguf", "prepare_gguf", "personal_chat_model", "personal_engine"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^v(\d{3,})$")
META = "secondself.json"


@dataclass(frozen=True)
class AdapterInfo:
    version: str
    path: Path
    metadata: dict[str, Any]

    @property
    def base(self) -> str:
        return self.metadata.get("base", "")

    @property
    def scores(self) -> dict[str, Any]:
        return self.metadata.get("eval", {})


def adapters_dir(person_dir: Path) -> Path:
    return person_dir / "adapters"


def list_adapters(person_dir: Path) -> list[AdapterInfo]:
    root = adapters_dir(person_dir)
    out = []
    for d in sorted(root.iterdir() if root.is_dir() else [], key=lambda p: p.name):
        if _NAME.match(d.name) and (d / META).is_file() and (d / "adapter_config.json").is_file():
            out.append(AdapterInfo(d.name, d, json.loads((d / META).read_text(encoding="utf-8"))))
    return out


def get(person_dir: Path, version: str) -> AdapterInfo:
    if not re.fullmatch(r"v?\d{1,6}", version or ""):
        raise AdapterNotFoundError(f"no adapter {version!r}: versions look like v001 (`secondself model list` shows them)")
    version = version if version.startswith("v") else f"v{int(version):03d}"
    for a in list_adapters(person_dir):
        if a.version == version:
            return a
    raise AdapterNotFoundError(f"no adapter {version}; `secondself model list` shows the versions")


def register(person_dir: Path, trained: Path, metadata: dict[str, Any]) -> AdapterInfo:
    """Move a finished adapter directory in as the next version (atomic rename) with its metadata."""
    root = adapters_dir(person_dir)
    root.mkdir(parents=True, exist_ok=True)
    if not (trained / "adapter_config.json").is_file():
        raise TrainingError(f"{trained} holds no saved adapter; nothing to register")
    (trained / META).write_text(json.dumps({**metadata, "created_at": now_iso()}, indent=2, ensure_ascii=False),
                                encoding="utf-8")
    numbers = [int(m.group(1)) for d in root.iterdir() if (m := _NAME.match(d.name))]
    version = f"v{max(numbers, default=0) + 1:03d}"
    os.replace(trained, root / version)
    return get(person_dir, version)


def update_metadata(info: AdapterInfo, **values: Any) -> AdapterInfo:
    meta = {**info.metadata, **values}
    tmp = info.path / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, info.path / META)
    return AdapterInfo(info.version, info.path, meta)


def _history(store: Store) -> list[str]:
    return json.loads(store.get_meta("adapter_history") or "[]")


def current(store: Store, person_dir: Path) -> AdapterInfo | None:
    version = store.get_meta("adapter_current")
    if not version:
        return None
    try:
        return get(person_dir, version)
    except TrainingError:
        return None                      # its directory was deleted by hand: behave as if none is selected


def use(store: Store, person_dir: Path, version: str) -> AdapterInfo:
    info = get(person_dir, version)
    with store.transaction():
        history = _history(store)
        if store.get_meta("adapter_current") not in (None, info.version):
            history.append(store.get_meta("adapter_current"))
        store.set_meta("adapter_history", json.dumps(history[-50:]))
        store.set_meta("adapter_current", info.version)
    return info


def rollback(store: Store, person_dir: Path) -> AdapterInfo:
    """Select the adapter that was selected before the current one."""
    history = [v for v in _history(store) if (adapters_dir(person_dir) / v).is_dir()]
    if not history:
        raise TrainingError("no earlier adapter to roll back to; `secondself model list` shows the versions")
    previous = history.pop()
    with store.transaction():
        store.set_meta("adapter_history", json.dumps(history))
        store.set_meta("adapter_current", previous)
    return get(person_dir, previous)


# -- serving ------------------------------------------------------------------------------------------

def base_gguf(info: AdapterInfo, models_dir: Path, *, prepare: bool = True) -> Path | None:
    """The GGUF of the adapter's base model, None when it has none that can be found: the file recorded at
    training (metadata `base_gguf`), else the catalog model whose GGUF the base checkpoint was converted from
    (the conversion records the file's name and size). `prepare=False` hashes and assembles nothing (for
    listings): a catalog file is then returned where it is or will be."""
    recorded = info.metadata.get("base_gguf")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    return checkpoint_gguf(Path(info.metadata.get("base_dir") or "/nonexistent"), models_dir, prepare=prepare)


def checkpoint_gguf(base_dir: Path, models_dir: Path, *, prepare: bool = True) -> Path | None:
    """The catalog GGUF that the plain checkpoint `base_dir` was converted from, None if it was not (a model
    directory of the person's own) or that GGUF is not installed."""
    from ..backends import catalog
    from ..backends.local import _converted_from  # the conversion's record of its source GGUF

    source = _converted_from(base_dir)
    if not source:
        return None
    for entry in catalog.CATALOG:
        if (entry.filename, entry.size) == (source.get("file"), source.get("size")):
            st = catalog.status(entry, models_dir)
            if not (st.installed or st.assembled):
                return None
            return catalog.ensure(entry, models_dir) if prepare else st.path
    return None


def prepare_gguf(info: AdapterInfo, models_dir: Path, gguf: Path | None = None) -> AdapterInfo:
    """After training: record the base's GGUF `gguf` (when the base came from one) and convert the adapter for
    it now, so the first answer does not wait. Never raises: serving converts (or falls back) on first use."""
    from ..errors import SecondSelfError

    try:
        if gguf is not None and info.metadata.get("base_gguf") != str(gguf):
            info = update_metadata(info, base_gguf=str(gguf))
        found = base_gguf(info, models_dir)
        if found is not None:
            from .gguf_lora import ensure_gguf_adapter

            ensure_gguf_adapter(info.path, found)
    except (SecondSelfError, OSError) as e:
        log.warning("adapter %s was not converted to GGUF now (%s); it will be when first served", info.version, e)
    return info


def personal_engine(info: AdapterInfo, models_dir: Path) -> tuple[str, str]:
    """("llama.cpp" or "transformers", why) for the personal model of `info`; loads and hashes nothing."""
    gguf = base_gguf(info, models_dir, prepare=False)
    if gguf is None:
        return "transformers", f"no GGUF of its base {info.base or '?'} is known, so peft's adapter is merged in"
    from ..backends.gguf_files import read_gguf
    from ..errors import SecondSelfError
    from .gguf_lora import CONVERTIBLE

    try:
        arch = read_gguf(gguf).arch if gguf.is_file() else None
    except (SecondSelfError, OSError) as e:  # a listing never fails on a bad file: using it says what is wrong
        return "transformers", f"the base GGUF {gguf} cannot be read ({e})"
    if arch is not None and arch not in CONVERTIBLE:
        return "transformers", f"adapters of {arch!r} models are not converted to GGUF yet"
    return "llama.cpp", f"{gguf.name} with the adapter as a GGUF LoRA, applied per request"


def run_models(base_dir: Path, models_dir: Path) -> Callable[[Path | None], Any]:
    """make_model(adapter_dir) for a training run's generations (the base's answers mixed in for retention,
    the evaluation's answers of base and personal model): llama.cpp on the base's GGUF, the run's adapter
    converted to a GGUF LoRA, when the base came from one; else transformers (+ peft). Each model is built once.

    Greedy generation on llama.cpp was ~20x transformers' tokens/s on these CPUs (bench/engine.py): the
    retention answers alone took 12 minutes with transformers on a loaded 2-core machine. Base and personal
    model run on the same engine kind, so the evaluation compares like with like; the loss-based figures
    (compression, retention) stay on transformers, the weights that were trained."""
    cache: dict[str, Any] = {}

    def make(adapter: Path | None) -> Any:
        key = str(adapter)
        if key not in cache:
            cache[key] = _run_model(base_dir, models_dir, adapter)
        return cache[key]
    return make


def _run_model(base_dir: Path, models_dir: Path, adapter: Path | None) -> Any:
    from ..errors import ModelNotAvailableError, SecondSelfError

    try:
        gguf = checkpoint_gguf(base_dir, models_dir)
        if gguf is not None:
            from ..backends.llamacpp import LlamaCppChatModel

            if adapter is None:
                return LlamaCppChatModel(gguf, cache_dir=models_dir)
            from .gguf_lora import ensure_gguf_adapter

            lora = ensure_gguf_adapter(adapter, gguf)
            return LlamaCppChatModel(gguf, cache_dir=models_dir, adapters={"run": lora}).with_adapter("run")
    except (SecondSelfError, ModelNotAvailableError, ImportError, OSError) as e:
        log.warning("training run: generating with transformers instead of llama.cpp: %s", e)
    from ..backends.local import LocalChatModel

    return LocalChatModel(base_dir, cache_dir=models_dir, adapter=adapter)


def personal_chat_model(info: AdapterInfo, models_dir: Path) -> Any:
    """The personal model of adapter `info` (built, not loaded): llama.cpp on the base's GGUF with the adapter
    converted once to a GGUF LoRA, when the base has a GGUF; else transformers + peft. An adapter that does not
    fit the base's GGUF raises AdapterMismatchError naming both files; an adapter the converter cannot handle
    (or a GGUF that cannot be prepared) falls back to transformers, with a warning saying why."""
    from ..errors import AdapterMismatchError, ModelNotAvailableError

    lora = gguf = None
    try:
        gguf = base_gguf(info, models_dir)
        if gguf is not None:
            from .gguf_lora import ensure_gguf_adapter

            lora = ensure_gguf_adapter(info.path, gguf)
    except AdapterMismatchError:
        raise
    except (TrainingError, ModelNotAvailableError, ImportError) as e:
        log.warning("personal model %s: serving it with transformers + peft instead of llama.cpp: %s",
                    info.version, e)
        lora = None
    if gguf is not None and lora is not None:
        try:
            from ..backends.llamacpp import LlamaCppChatModel
        except ImportError as e:
            log.warning("personal model %s: the llama.cpp backend is unavailable (%s); using transformers",
                        info.version, e)
        else:
            log.info("personal model %s: llama.cpp on %s with %s applied per request", info.version, gguf, lora)
            model = LlamaCppChatModel(gguf, name=info.base or None, adapters={info.version: lora})
            return model.with_adapter(info.version)
    from ..backends.local import LocalChatModel

    log.info("personal model %s: transformers + peft on %s", info.version, info.metadata.get("base_dir"))
    return LocalChatModel(Path(info.metadata["base_dir"]), cache_dir=models_dir, adapter=info.path)
