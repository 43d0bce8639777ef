"""Helpers shared by the benchmark scripts (not a benchmark itself).

Imported as `from _common import ...`: each script puts its own folder and the repository root on
sys.path, so `python bench/<name>.py` works from the repository root without an install.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAYA = REPO / "examples" / "maya"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Fallback vocabulary if the example corpus is missing (it ships with the repository, so normally unused).
_FALLBACK = """time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number night
point home water room mother area money story fact month lot right study book eye job word business issue
side kind head house service friend father power hour game line end member law car city community name
president team minute idea kid body information back parent face others level office door health person
art war history party result change morning reason research girl guy moment air teacher force education
river garden music letter harbor winter coffee train bread cello sea boat rain summer market street
""".split()

NAMES = ["Maya", "Inês", "Tomás", "Rita", "Margarida", "João", "Ana", "Lars", "Sofia", "Pedro", "Helena",
         "Nuno", "Beatriz", "Erik", "Amara", "Chidi", "Luís", "Marta", "Karin", "Oskar"]
SURNAMES = ["Reis", "Silva", "Costa", "Lindqvist", "Okafor", "Ferreira", "Santos", "Pereira", "Almeida",
            "Nilsson", "Carvalho", "Sousa"]


def vocabulary(min_len: int = 3) -> tuple[list[str], np.ndarray]:
    """Real English words and their frequencies from the example corpus (Markdown and text files), so
    that FTS5 posting lists and word-piece counts look like real text. Returns (words, probabilities),
    most frequent first; the frequencies are Zipf-like, as in real text."""
    counts: Counter[str] = Counter()
    corpus = MAYA / "corpus"
    if corpus.is_dir():
        for p in sorted(corpus.rglob("*")):
            if p.suffix in (".md", ".txt"):
                counts.update(w.lower() for w in re.findall(r"[A-Za-z]+", p.read_text("utf-8", "replace"))
                              if len(w) >= min_len)
    if len(counts) < 500:
        counts = Counter({w: 1000 // (i + 1) + 1 for i, w in enumerate(_FALLBACK)})
    words = [w for w, _ in counts.most_common()]
    freqs = np.array([counts[w] for w in words], dtype=np.float64)
    return words, freqs / freqs.sum()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def dump_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=float))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
