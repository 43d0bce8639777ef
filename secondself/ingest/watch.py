"""Keep folders in sync: watch for changes and re-run the (incremental, pruning) ingest.

Re-running the ingest rather than patching single files keeps one code path for every change: unchanged
files cost a stat, changed ones are replaced, deleted ones pruned. Events are debounced so a burst of
saves (an editor writing a temp file and renaming it) triggers one sync.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["watch"]

log = logging.getLogger(__name__)


def watch(paths: Sequence[Path], sync: Callable[[], None], stop: threading.Event | None = None,
          debounce: float = 1.0) -> None:
    """Call `sync()` once after each burst of file-system events under `paths`, until `stop` is set
    (or Ctrl-C). `sync` errors are logged and watching continues."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    changed = threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            if any(part.startswith(".") for part in Path(str(event.src_path)).parts[-2:]):
                return  # editor swap files, .git, .obsidian
            changed.set()

    stop = stop or threading.Event()
    observer = Observer()
    for p in paths:
        observer.schedule(Handler(), str(p if p.is_dir() else p.parent), recursive=p.is_dir())
    observer.start()
    try:
        while not stop.is_set():
            if changed.wait(timeout=0.2):
                # wait until the burst is over
                while changed.is_set() and not stop.is_set():
                    changed.clear()
                    stop.wait(debounce)
                if not stop.is_set():
                    try:
                        sync()
                    except Exception:  # keep watching: the next change may fix it
                        log.exception("sync failed")
    finally:
        observer.stop()
        observer.join(timeout=5)
