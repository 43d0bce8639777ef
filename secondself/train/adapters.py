"""Adapter versions: the artifact between training and serving.

Each finished training run becomes one directory under `<person dir>/adapters/`:

    v003/
      adapter_model.safetensors   LoRA weights (peft)
      adapter_config.json         peft's config (rank, alpha, target modules, base model path)
      secondself.json             our metadata: base model, sample counts by kind, hyperparameters, rank and
                                  why, training figures, eval scores, created_at

A version directory appears only complete (it is renamed into place) and is never modified afterwards,
except that evaluation scores may be added to its metadata. Which version chat uses is recorded in the
person's database (meta `adapter_current`, with the history of selections for `rollback`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TrainingError
from ..store import Store, now_iso

__all__ = ["AdapterInfo", "adapters_dir", "list_adapters", "register", "get", "current", "use", "rollback",
           "update_metadata"]

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
        raise TrainingError(f"no adapter {version!r}: versions look like v001 (`secondself model list` shows them)")
    version = version if version.startswith("v") else f"v{int(version):03d}"
    for a in list_adapters(person_dir):
        if a.version == version:
            return a
    raise TrainingError(f"no adapter {version}; `secondself model list` shows the versions")


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
