"""Topics: deterministic clustering of chunk embeddings, and the words that characterize each cluster.

This module is numbers only — no model, no store. `cluster()` runs spherical k-means (cosine on unit
vectors) with k-means++ seeding from a fixed seed and several restarts, so the same vectors and seed
always give the same clusters. A chunk farther than `min_cosine` from every centre, or left in a cluster
smaller than `min_size`, "fits no topic": it is labelled -1 and reported by the build, never dropped.

`assign()` places new chunks into existing clusters (the incremental build), and `keywords()` names
clusters by class-based TF-IDF: words frequent in this cluster and rare in the others.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..text.words import TOPIC_STOPWORDS

__all__ = ["Clustering", "choose_k", "cluster", "assign", "keywords", "representatives", "MIN_COSINE"]

# Cosine to the nearest centre below which a chunk fits no topic. With all-MiniLM-L6-v2 on the example
# person, members sit at 0.35-0.8 from their centre and unrelated text (a recipe among work notes) < 0.3.
MIN_COSINE = 0.30

_WORD = re.compile(r"[^\W\d_][\w'-]{2,}", re.UNICODE)


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray       # int64[n]; -1 = fits no topic
    centroids: np.ndarray    # float32[k, d], unit length; row i is cluster i


def choose_k(n: int) -> int:
    """About sqrt(n) clusters, at least 1, at most 40. (sqrt(n/2), the usual rule of thumb, merged the
    example person's cello and orchestra notes into her move; sqrt(n) gives them their own topic.)"""
    return max(1, min(40, round(math.sqrt(n))))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int) -> tuple[np.ndarray, np.ndarray, float]:
    n = len(x)
    centres = [x[rng.integers(n)]]
    closest = 1.0 - x @ centres[0]
    for _ in range(1, k):                                   # k-means++ on cosine distance
        p = np.maximum(closest, 0) ** 2
        idx = rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)
        centres.append(x[idx])
        closest = np.minimum(closest, 1.0 - x @ x[idx])
    c = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.sum(0)
            else:                                           # an empty cluster takes the worst-fitting point
                c[j] = x[np.argmin((x * c[labels]).sum(1))]
        c = _unit(c)
    inertia = float((x * c[labels]).sum())
    return labels, c, inertia


def cluster(vectors: np.ndarray, *, seed: int = 0, k: int | None = None, min_size: int = 3,
            min_cosine: float = MIN_COSINE, restarts: int = 4, iters: int = 60) -> Clustering:
    """Spherical k-means, best of `restarts` by total cosine; small clusters and far points get -1."""
    x = _unit(vectors)
    n = len(x)
    if n == 0:
        return Clustering(np.zeros(0, np.int64), np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32))
    k = min(k or choose_k(n), n)
    rng = np.random.default_rng(seed)
    best = max((_kmeans(x, k, rng, iters) for _ in range(restarts)), key=lambda r: r[2])
    labels, centres = best[0].astype(np.int64), best[1]
    sizes = np.bincount(labels, minlength=k)
    keep = np.flatnonzero(sizes >= min_size)
    remap = np.full(k, -1, np.int64)
    remap[keep] = np.arange(len(keep))
    # order clusters by size (largest first) so ids are stable for a given input and readable
    order = keep[np.argsort(-sizes[keep], kind="stable")]
    remap[order] = np.arange(len(order))
    labels = remap[labels]
    centres = centres[order]
    labels = _drop_far(x, labels, centres, min_cosine)
    return Clustering(labels, centres.astype(np.float32))


def _drop_far(x: np.ndarray, labels: np.ndarray, centres: np.ndarray, min_cosine: float) -> np.ndarray:
    labels = labels.copy()
    inside = labels >= 0
    if inside.any():
        cos = (x[inside] * centres[labels[inside]]).sum(1)
        idx = np.flatnonzero(inside)[cos < min_cosine]
        labels[idx] = -1
    return labels


def assign(vectors: np.ndarray, centroids: np.ndarray, min_cosine: float = MIN_COSINE) -> np.ndarray:
    """Nearest existing cluster for each vector, or -1 if none is within `min_cosine`."""
    x = _unit(vectors)
    if len(x) == 0 or len(centroids) == 0:
        return np.full(len(x), -1, np.int64)
    sims = x @ np.asarray(centroids, np.float32).T
    labels = np.argmax(sims, axis=1).astype(np.int64)
    labels[sims[np.arange(len(x)), labels] < min_cosine] = -1
    return labels


def representatives(vectors: np.ndarray, members: Sequence[int], centroid: np.ndarray) -> list[int]:
    """`members` (row indices) ordered by cosine to `centroid`, closest first; ties by index."""
    if not len(members):
        return []
    x = _unit(vectors[list(members)])
    sims = x @ np.asarray(centroid, np.float32)
    order = sorted(range(len(members)), key=lambda i: (-round(float(sims[i]), 6), members[i]))
    return [members[i] for i in order]


def words(text: str, exclude: Iterable[str] = ()) -> list[str]:
    return [key for key, _ in _terms(text, exclude) if " " not in key]


_CLAUSE = re.compile(r"[.!?;:,\n()\[\]\"“”|/]+")


def _terms(text: str, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(key, surface form) of every content word and every pair of adjacent content words in a clause."""
    ex = {e.casefold() for e in exclude}
    out: list[tuple[str, str]] = []
    for clause in _CLAUSE.split(text):
        prev: tuple[str, str] | None = None
        for m in _WORD.finditer(clause):
            surface = m.group(0).strip("'-")
            key = surface.casefold()
            if len(key) <= 2 or key in TOPIC_STOPWORDS or key in ex or "'" in key or "’" in key:   # no contractions
                prev = None
                continue
            out.append((key, surface))
            if prev:
                out.append((f"{prev[0]} {key}", f"{prev[1]} {surface}"))
            prev = (key, surface)
    return out


def keywords(texts_per_cluster: Sequence[Sequence[str]], n: int = 6, exclude: Iterable[str] = ()) -> list[list[str]]:
    """Class-based TF-IDF over words and two-word phrases: per cluster, the `n` terms most specific to it,
    without overlaps ("tidewater labs" absorbs "labs"). Terms keep their most common spelling, so names stay
    capitalized ("Tidewater Labs") and ordinary words do not. Ties are broken alphabetically."""
    exclude = tuple(exclude)
    counts: list[Counter[str]] = []
    spelling: dict[str, Counter[str]] = {}
    for texts in texts_per_cluster:
        c: Counter[str] = Counter()
        for t in texts:
            for key, surface in _terms(t, exclude):
                c[key] += 1
                spelling.setdefault(key, Counter())[surface] += 1
        counts.append(c)
    across = Counter()
    for c in counts:
        across.update(c)
    total = sum(sum(c.values()) for c in counts) or 1
    avg = total / max(len(counts), 1)
    out = []
    for c in counts:
        size = sum(c.values()) or 1
        scored = [((c[w] / size) * math.log(1 + avg / across[w]) * (1.5 if " " in w else 1.0), w)
                  for w in c if c[w] > 1 or len(c) < 40]
        chosen: list[str] = []
        used: set[str] = set()
        for score, w in sorted(scored, key=lambda sw: (-sw[0], sw[1])):
            if len(chosen) == n or score <= 0:
                break
            parts = set(w.split())
            if parts & used:
                continue
            chosen.append(w)
            used |= parts
        out.append([_spell(w, spelling[w]) for w in chosen])
    return out


def _spell(key: str, forms: Counter[str]) -> str:
    """The most common spelling, lower-cased unless the term is mostly written capitalized mid-text."""
    best = max(forms.items(), key=lambda kv: (kv[1], kv[0]))[0]
    capitalized = sum(v for f, v in forms.items() if f[:1].isupper())
    return best if capitalized * 2 > sum(forms.values()) and best[:1].isupper() else key
