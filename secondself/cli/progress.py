"""Progress on the terminal: one bar per stage of a long step, with its rate and ETA, on stderr.

`Bars` is the CLI's `on_progress` (the one `Progress` type, secondself/progress.py). Bars are drawn only when
stderr is a terminal and the command was not asked for --json. A command whose stages are long (train) keeps a
record of each finished stage: its bar stays on a terminal, and elsewhere (a log, CI) one summary line is
written when the stage ends ("evaluate: 64/64 answers in 01:02"), never a line per item.
tqdm is imported only when a bar is drawn, so `secondself --help` stays instant.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import click

from ..progress import Progress

__all__ = ["Bars"]


class Bars:
    """on_progress for a command: `labels` maps each stage to draw to (description, unit); other stages are
    ignored. `quiet` (--json) draws nothing at all; `keep` leaves a record of each finished stage."""

    def __init__(self, labels: Mapping[str, tuple[str, str]], *, quiet: bool = False, keep: bool = False,
                 file: TextIO | None = None) -> None:
        self.labels, self.quiet, self.keep = labels, quiet, keep
        self.file = file if file is not None else sys.stderr
        isatty = getattr(self.file, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._last: Progress | None = None
        self._started = 0.0
        self._bar: Any = None

    def __call__(self, p: Progress) -> None:
        if self.quiet or p.stage not in self.labels:
            return
        last = self._last
        if last is None or p.stage != last.stage or p.total != last.total or p.done < last.done:
            self._finish()                       # a new stage, or the same stage again (the next source)
            self._start(p)
        self._last = p
        if self._bar is not None:
            self._bar.set_postfix_str(_figures(p.info), refresh=False)
            self._bar.update(p.done - self._bar.n)

    def close(self) -> None:
        """End the current stage (call in `finally`, so an error or Ctrl-C leaves the terminal clean)."""
        self._finish()

    def _start(self, p: Progress) -> None:
        self._started = time.monotonic()
        if not self.tty:
            return
        from tqdm import tqdm

        desc, unit = self.labels[p.stage]
        # The bar starts at the first report (a resumed stage starts where it stopped); the rate and the ETA
        # are measured from there, over the work this run does.
        self._bar = tqdm(total=p.total, initial=p.done, desc=desc, unit=unit, file=self.file, leave=self.keep,
                         dynamic_ncols=True)

    def _finish(self) -> None:
        last, bar = self._last, self._bar
        self._last = self._bar = None
        if bar is not None:
            bar.close()
        if last is not None and self.keep and not self.tty:
            desc, unit = self.labels[last.stage]
            click.echo(_summary(desc, unit, last, time.monotonic() - self._started), file=self.file)


def _figures(info: Mapping[str, Any]) -> str:
    parts = []
    if isinstance(info.get("loss"), int | float):
        parts.append(f"loss {info['loss']:.3f}")
    if isinstance(info.get("tokens_per_s"), int | float):
        parts.append(f"{info['tokens_per_s']:.0f} tok/s")
    return ", ".join(parts)


def _summary(desc: str, unit: str, p: Progress, seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    count = f"{p.done}/{p.total}" if p.total is not None else f"{p.done}"
    figures = _figures(p.info)
    return f"{desc}: {count} {unit}s in {minutes:02d}:{secs:02d}" + (f", {figures}" if figures else "")
