"""How a long step says how far it has come: one `Progress` value, handed to an `on_progress` callback.

Every long step accepts `on_progress: OnProgress | None` and calls it after each unit of work:

    ingest            scan, ingest (files), embed (chunks; also `ensure_embeddings` after a model switch)
    build (layer 1)   topics, facts (chunks), shades
    train (layer 2)   synthesize (once, info: counts, dropped), retention (prompts), train (optimizer steps,
                      info: loss, tokens, tokens_per_s, elapsed_s, eta_s, lr, ...), with --dpo pairs (items
                      drafted, info: pairs) and dpo (optimizer steps, info: loss, accuracy, margin, lr,
                      elapsed_s, eta_s), evaluate (answers)
    model catalog     assemble (bytes of a model's GGUF written and hashed)

The caller decides what a report means: the CLI draws one bar per stage (`cli/progress.py`), a server job
copies it into the job's record (`serve/runners.py`), and any caller may raise from the callback to stop the
step (what the step finished is kept). Progress is reported, never scraped from log lines.

The bottom layer: this module imports nothing from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Progress", "OnProgress"]


@dataclass(frozen=True)
class Progress:
    """`done` of `total` units of `stage` are finished (`total` None: not known). `info`: the stage's own
    figures (training: loss, tokens per second, ETA; synthesis: sample counts), JSON-able."""

    stage: str
    done: int
    total: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


OnProgress = Callable[[Progress], None]
"""on_progress(progress): called by a long step after each unit of work; may raise to stop the step."""
