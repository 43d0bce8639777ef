"""The layer-1 build: layer-0 chunks in, one new profile version out, in named, resumable steps.

    load → topics → facts → shades → biography → status → save

Every expensive output (a topic's name, a chunk's observations, a shade's role, the biography) is stored
in `build_cache` as soon as it is validated, keyed by a hash of what it was made from. That one mechanism
gives both properties the issue asks for:
- resumable: a step that fails (endpoint down, Ctrl-C) leaves what it finished in the cache, the run is
  recorded as failed with its step and cause, and the next `build` redoes only the rest;
- incremental: new memories change the keys of only what they touch — their own chunks' facts, the topics
  they join (renamed only when a topic's members changed by more than a quarter), the biography if the
  facts or shades it is made from changed — so the teacher is called for those alone.
The version is written last, in one transaction: a failed build never leaves a half-written profile.
Topics are deterministic for a seed: the same memories always give the same clusters.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..backends.chat import ChatModel, MeteredModel
from ..errors import BuildError, SecondSelfError
from ..progress import OnProgress, Progress
from ..store import Store, now_iso
from ..types import Chunk, Profile, Topic
from . import facts as factlib
from .profile import (
    Slots,
    biography,
    describe_shade,
    make_shade,
    name_topic,
    narrate_status,
    status,
    status_parts,
)
from .topics import MIN_COSINE, assign, cluster, keywords, representatives
from .versions import apply_overrides, current_version, load_version, overrides, save_version

__all__ = ["BuildOptions", "BuildReport", "StepReport", "build", "runs", "chunk_key", "STEPS"]

STEPS = ("load", "topics", "facts", "shades", "biography", "status", "save")


@dataclass(frozen=True)
class BuildOptions:
    seed: int = field(default=0, metadata={"help": "clustering seed: same memories + seed = same topics"})
    full: bool = field(default=False, metadata={"help": "recluster from scratch (clusters that come out the "
                                                        "same keep their names)"})
    slots: bool = field(default=True, metadata={"help": "ask the teacher to name topics and describe shades "
                                                          "(off: deterministic names and descriptions only)"})
    prose: bool = field(default=False, metadata={"help": "let the teacher write JSON and prose (strong models)"})
    teacher_facts: bool = field(default=False, metadata={"help": "also extract facts with the teacher, per chunk"})
    k: int | None = field(default=None, metadata={"help": "number of topics (default: about sqrt(chunks))"})
    min_topic: int = field(default=3, metadata={"help": "smaller clusters are dissolved"})
    shade_min: int = field(default=5, metadata={"help": "chunks a topic needs to become a shade"})
    rename_below: float = field(default=0.75, metadata={"help": "rename a topic when this little of it is "
                                                                "what it was named from (Jaccard)"})
    recluster_share: float = field(default=0.15, metadata={"help": "recluster when this share of chunks "
                                                                   "fits no topic"})

    def fingerprint(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "full"}


@dataclass
class StepReport:
    name: str
    detail: str = ""
    seconds: float = 0.0
    teacher_calls: int = 0


@dataclass
class BuildReport:
    run: int
    version: int | None = None
    up_to_date: bool = False
    resumed: str | None = None              # "run 3 failed at 'shades': ..." when this build resumes one
    steps: list[StepReport] = field(default_factory=list)
    teacher: dict = field(default_factory=dict)
    slots: dict = field(default_factory=dict)
    chunks: int = 0
    new_chunks: int = 0
    removed_chunks: int = 0
    unclustered: int = 0
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def chunk_key(c: Chunk) -> str:
    """What a chunk's derived data depends on: its text, date and speakers (not its id, which changes
    when a file is re-ingested)."""
    return hashlib.sha1(f"{c.date}|{'|'.join(c.speakers)}|{c.text}".encode()).hexdigest()[:16]


def _hash(value: object) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def _prompts_version() -> str:
    """Changes when the layer-1 prompts change, so text written from older prompts is written again."""
    from ..prompts import literal

    return _hash([literal(p) for p in ("layer1_system", "topic", "shade", "biography", "biography_second",
                                       "status_recent", "status_earlier")])


class _Cache:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, step: str, key: str) -> object | None:
        row = self.store.db.execute("SELECT value FROM build_cache WHERE step = ? AND key = ?", (step, key)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, step: str, key: str, value: object) -> None:
        with self.store.transaction() as db:
            self._put(db, step, key, value)

    def put_many(self, step: str, items: dict[str, object]) -> None:
        with self.store.transaction() as db:
            for key, value in items.items():
                self._put(db, step, key, value)

    @staticmethod
    def _put(db, step: str, key: str, value: object) -> None:
        db.execute("INSERT INTO build_cache (step, key, value, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (step, key) "
                   "DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                   (step, key, json.dumps(value, ensure_ascii=False), now_iso()))

    def keys(self, step: str) -> set[str]:
        return {r[0] for r in self.store.db.execute("SELECT key FROM build_cache WHERE step = ?", (step,))}

    def drop(self, step: str, keys: set[str]) -> None:
        with self.store.transaction() as db:
            db.executemany("DELETE FROM build_cache WHERE step = ? AND key = ?", [(step, k) for k in keys])


def runs(store: Store, limit: int = 20) -> list[dict]:
    return [{"run": r[0], "started_at": r[1], "finished_at": r[2], "status": r[3], "step": r[4], "error": r[5],
             "stats": json.loads(r[6]), "version": r[7]}
            for r in store.db.execute("SELECT id, started_at, finished_at, status, step, error, stats, version "
                                      "FROM build_runs ORDER BY id DESC LIMIT ?", (limit,))]


class _Run:
    """The build_runs row of this build: which step it is in, and how it ended."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.transaction() as db:
            self.id = int(db.execute("INSERT INTO build_runs (started_at, status, step) "
                                     "VALUES (?, 'running', 'load') RETURNING id", (now_iso(),)).fetchone()[0])
        self.step = "load"

    def enter(self, step: str) -> None:
        self.step = step
        with self.store.transaction() as db:
            db.execute("UPDATE build_runs SET step = ? WHERE id = ?", (step, self.id))

    def end(self, status: str, *, error: str | None = None, stats: dict | None = None,
            version: int | None = None) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE build_runs SET finished_at = ?, status = ?, error = ?, stats = ?, version = ? "
                       "WHERE id = ?", (now_iso(), status, error, json.dumps(stats or {}, default=str),
                                        version, self.id))


def build(store: Store, embedder_name: str, teacher: ChatModel | None, person: str,
          options: BuildOptions | None = None, *, about: str = "",
          on_progress: OnProgress | None = None) -> BuildReport:
    """Build (or update) layer 1 and save it as a new version. Raises BuildError naming the failed step.
    `on_progress` gets Progress("topics" | "facts" | "shades", done, total) as each item is made."""
    options = options or BuildOptions()
    meter = MeteredModel(teacher) if teacher is not None else None
    last = runs(store, 1)
    run = _Run(store)
    report = BuildReport(run=run.id)
    if last and last[0]["status"] in ("failed", "running"):
        report.resumed = f"run {last[0]['run']} stopped at '{last[0]['step']}'" + (
            f": {last[0]['error']}" if last[0]["error"] else " (interrupted)")
    try:
        return _Builder(store, embedder_name, meter, person, options, about, run, report,
                        on_progress or (lambda *a: None)).run()
    except BuildError as e:
        run.end("failed", error=str(e.cause))
        raise
    except SecondSelfError as e:
        run.end("failed", error=str(e))
        raise BuildError(run.step, e) from e
    except KeyboardInterrupt:
        run.end("failed", error="interrupted")
        raise


class _Builder:
    def __init__(self, store: Store, embedder_name: str, meter: MeteredModel | None, person: str,
                 options: BuildOptions, about: str, run: _Run, report: BuildReport, progress: OnProgress) -> None:
        self.store, self.embedder_name, self.meter, self.person = store, embedder_name, meter, person
        self.options, self.about, self.run_row, self.report, self.progress = options, about, run, report, progress
        self.cache = _Cache(store)
        self.slots = Slots()
        self.slot_model = meter if options.slots else None

    # -- driver ----------------------------------------------------------------------------------------------
    def run(self) -> BuildReport:
        for name in STEPS:
            self.run_row.enter(name)
            calls = self.meter.calls if self.meter else 0
            t0 = time.perf_counter()
            detail = getattr(self, f"step_{name}")()
            self.report.steps.append(StepReport(name, detail or "", round(time.perf_counter() - t0, 2),
                                                (self.meter.calls if self.meter else 0) - calls))
            if self.report.up_to_date:
                break
        self.report.teacher = self.meter.snapshot() if self.meter else {"calls": 0}
        self.report.slots = self.slots.report()
        self.run_row.end("up-to-date" if self.report.up_to_date else "done", version=self.report.version,
                         stats={"teacher": self.report.teacher, "slots": self.report.slots,
                                "steps": [asdict(s) for s in self.report.steps]})
        return self.report

    # -- steps ---------------------------------------------------------------------------------------------------
    def step_load(self) -> str:
        # a date that is only a file's modification time says when the file was copied, not when its
        # content happened: such chunks still form topics and facts, but place nothing on a timeline
        weak = self.store.undated_chunks()
        self.chunks = {c.id: (replace(c, date=None) if c.id in weak else c) for c in self.store.all_chunks()}
        ids, matrix, _, _ = self.store.load_vectors(self.embedder_name)
        missing = len(self.chunks) - len(ids)
        if missing:
            raise BuildError("load", f"{missing} chunks have no vector from {self.embedder_name}; run "
                                     "`secondself reindex` first")
        self.ids = [int(i) for i in ids]
        self.matrix = matrix
        self.row = {cid: i for i, cid in enumerate(self.ids)}
        self.key = {cid: chunk_key(c) for cid, c in self.chunks.items()}
        self.by_key: dict[str, int] = {}
        for cid in self.ids:
            self.by_key.setdefault(self.key[cid], cid)
        self.overrides = overrides(self.store)
        fingerprint = _hash({"chunks": sorted(self.by_key), "options": self.options.fingerprint(),
                             "about": self.about, "overrides": self.overrides,
                             "teacher": self.meter.name if self.meter else None, "embedder": self.embedder_name})
        self.fingerprint = fingerprint
        self.report.chunks = len(self.chunks)
        done = self.cache.get("build", "fingerprint")
        if (not self.options.full and done == fingerprint and current_version(self.store) is not None
                and self.report.resumed is None):
            self.report.up_to_date = True
            self.report.version = current_version(self.store)
            return "nothing changed since the last build"
        return f"{len(self.chunks)} chunks"

    def step_topics(self) -> str:
        # names are reused only if they were made the same way (same teacher, slots and prose settings)
        how = {"teacher": self.meter.name if self.meter else None, "slots": self.options.slots,
               "prose": self.options.prose, "prompts": _prompts_version()}
        previous = self.cache.get("topics", "state")
        if previous and previous.get("how") != how:
            for t in previous["topics"]:
                t["name"], t["named"] = None, []
        state = None if self.options.full else previous
        present = set(self.by_key)
        if state:
            known = {k for t in state["topics"] for k in t["members"]} | set(state["unclustered"])
            self.report.new_chunks = len(present - known)
            self.report.removed_chunks = len(known - present)
            state = self._update(state, present - known, present)
        if state is None:
            state = self._recluster(previous)
        state["how"] = how
        # keywords and order are recomputed (cheap, deterministic); names only where membership moved
        texts = [[self.chunks[self.by_key[k]].text for k in t["members"]] for t in state["topics"]]
        kws = keywords(texts, exclude=[self.person, *self.person.split()])
        renamed = 0
        for i, (t, kw) in enumerate(zip(state["topics"], kws, strict=True)):
            rows = [self.row[self.by_key[k]] for k in t["members"]]
            centroid = np.asarray(t["centroid"], np.float32)
            t["members"] = [self.key[self.ids[r]] for r in representatives(self.matrix, rows, centroid)]
            t["keywords"] = kw
            if t.get("name") is None or _jaccard(t["named"], t["members"]) < self.options.rename_below:
                members = [self.chunks[self.by_key[k]] for k in t["members"]]
                t["name"], t["summary"] = name_topic(self.slot_model, self.person, kw, members[:4], self.slots,
                                                     prose=self.options.prose, members=members)
                t["named"] = list(t["members"])
                renamed += 1
                self.cache.put("topics", "state", state)       # each name is kept as soon as it exists
            self.progress(Progress("topics", i + 1, len(state["topics"])))
        self.cache.put("topics", "state", state)
        self.topic_state = state
        self.topics = [self._topic(t) for t in state["topics"]]
        self.unclustered = sorted(self.by_key[k] for k in state["unclustered"])
        self.report.unclustered = len(self.unclustered)
        return (f"{len(self.topics)} topics ({renamed} named now), {len(self.unclustered)} chunks fit no topic"
                + (f"; {self.report.new_chunks} new, {self.report.removed_chunks} removed chunks"
                   if self.report.new_chunks or self.report.removed_chunks else ""))

    def _recluster(self, previous: dict | None) -> dict:
        result = cluster(self.matrix, seed=self.options.seed, k=self.options.k, min_size=self.options.min_topic)
        topics = []
        old = previous["topics"] if previous else []
        for j, centroid in enumerate(result.centroids):
            members = [self.key[self.ids[r]] for r in np.flatnonzero(result.labels == j)]
            t = {"id": f"t{j + 1}", "centroid": centroid.tolist(), "members": members, "named": [], "name": None,
                 "summary": ""}
            match = max(old, key=lambda o: _jaccard(o["named"], members), default=None)
            if match and match["name"] and _jaccard(match["named"], members) >= self.options.rename_below:
                t.update(name=match["name"], summary=match["summary"], named=match["named"])  # unchanged cluster
            topics.append(t)
        unclustered = [self.key[self.ids[r]] for r in np.flatnonzero(result.labels < 0)]
        return {"topics": topics, "unclustered": unclustered}

    def _update(self, state: dict, new: set[str], present: set[str]) -> dict | None:
        """Incremental: drop vanished chunks, put new ones in the nearest topic. None = recluster instead."""
        for t in state["topics"]:
            t["members"] = [k for k in t["members"] if k in present]
        state["unclustered"] = [k for k in state["unclustered"] if k in present]
        if new:
            keys = sorted(new)
            labels = assign(self.matrix[[self.row[self.by_key[k]] for k in keys]],
                            np.asarray([t["centroid"] for t in state["topics"]], np.float32), MIN_COSINE)
            for k, label in zip(keys, labels, strict=True):
                (state["topics"][label]["members"] if label >= 0 else state["unclustered"]).append(k)
        small = [t for t in state["topics"] if len(t["members"]) < self.options.min_topic]
        for t in small:
            state["unclustered"] += t["members"]
        state["topics"] = [t for t in state["topics"] if len(t["members"]) >= self.options.min_topic]
        if not state["topics"] or len(state["unclustered"]) > self.options.recluster_share * max(len(present), 1):
            return None
        return state

    def _topic(self, t: dict) -> Topic:
        dates = sorted(d for d in (self.chunks[self.by_key[k]].date for k in t["members"]) if d)
        return Topic(id=t["id"], name=t["name"], summary=t["summary"], keywords=tuple(t["keywords"]),
                     chunks=tuple(self.by_key[k] for k in t["members"]),
                     first_date=dates[0][:10] if dates else None, last_date=dates[-1][:10] if dates else None)

    def step_facts(self) -> str:
        step = "facts+teacher" if self.options.teacher_facts else "facts"
        done = self.cache.keys(step)
        todo = [k for k in self.by_key if k not in done]
        pending: dict[str, object] = {}
        for i, k in enumerate(todo):
            chunk = self.chunks[self.by_key[k]]
            obs = factlib.extract_observations(chunk, self.person)
            if self.options.teacher_facts and self.meter is not None:
                obs += factlib.teacher_observations(self.meter, chunk, self.person)
            pending[k] = [_obs_dict(o) for o in obs]
            if len(pending) >= 25 or self.meter is not None and self.options.teacher_facts:
                self.cache.put_many(step, pending)
                pending = {}
            self.progress(Progress("facts", i + 1, len(todo)))
        if pending:
            self.cache.put_many(step, pending)
        stale = self.cache.keys(step) - set(self.by_key)     # derived from memories that were deleted
        if stale:
            self.cache.drop(step, stale)
        observations = []
        for k, cid in self.by_key.items():
            for d in self.cache.get(step, k) or []:
                observations.append(factlib.Observation(**{**d, "chunk_id": cid}))
        self.facts = factlib.resolve(observations)
        self.entities = factlib.extract_entities(self.chunks.values(), self.person)
        return (f"{len(observations)} observations from {len(self.by_key)} chunks ({len(todo)} read now) → "
                f"{len(self.facts)} facts, {len(self.entities)} people")

    def step_shades(self) -> str:
        self.shades = []
        eligible = [t for t in self.topics if len(t.chunks) >= self.options.shade_min
                    and len({self.chunks[c].date[:10] for c in t.chunks if self.chunks[c].date}) >= 2]
        made = 0
        for i, t in enumerate(eligible):
            state = next(s for s in self.topic_state["topics"] if s["id"] == t.id)
            key = _hash({"topic": t.id, "name": t.name, "named": state["named"], "prose": self.options.prose,
                         "slots": self.options.slots, "prompts": _prompts_version()})
            got = self.cache.get("shade", key)
            if got is None:
                members = [self.chunks[c] for c in t.chunks]
                role, desc = describe_shade(self.slot_model, self.person, t, members[:4], self.slots,
                                            prose=self.options.prose, members=members)
                got = {"role": role, "description": desc}
                self.cache.put("shade", key, got)
                made += 1
            self.shades.append(make_shade(t, got["role"], got["description"], [self.chunks[c] for c in t.chunks]))
            self.progress(Progress("shades", i + 1, len(eligible)))
        return f"{len(self.shades)} shades ({made} described now)"

    def step_biography(self) -> str:
        dates = [c.date[:10] for c in self.chunks.values() if c.date]
        self.as_of = max(dates) if dates else None
        facts = apply_overrides(_empty(self.person, self.facts), self.overrides).facts   # pinned/edited facts count
        key = _hash({"facts": [asdict(f) | {"sources": []} for f in facts],
                     "shades": [(s.name, s.role, s.description) for s in self.shades], "about": self.about,
                     "as_of": self.as_of, "prose": self.options.prose, "prompts": _prompts_version(),
                     "teacher": self.meter.name if self.meter else None})
        got = self.cache.get("biography", key)
        if got is None:
            third, second = biography(self.meter, self.person, facts, self.shades, self.about, self.as_of,
                                      self.slots, prose=self.options.prose)
            got = {"third": third, "second": second}
            self.cache.put("biography", key, got)
            made = "written now"
        else:
            made = "unchanged"
        self.bio = (got["third"], got["second"])
        self.final_facts = facts
        return f"{len(self.bio[0].split())} words, {made}"

    def step_status(self) -> str:
        dates = {cid: c.date[:10] for cid, c in self.chunks.items() if c.date}
        parts = status_parts(self.person, self.final_facts, self.shades, self.topics, dates, self.as_of)
        template = status(self.person, self.final_facts, self.shades, self.topics, dates, self.as_of)
        key = _hash({"parts": asdict(parts) if parts else None, "prose": self.options.prose,
                     "prompts": _prompts_version(), "teacher": self.meter.name if self.meter else None})
        got = self.cache.get("status", key)
        if got is None:
            told = narrate_status(self.meter, self.person, parts, template, self.slots, prose=self.options.prose)
            got = {"recent": told.recent, "earlier": told.earlier}
            self.cache.put("status", key, got)
        self.status = replace(template, recent=got["recent"], earlier=got["earlier"])
        return f"as of {self.as_of}"

    def step_save(self) -> str:
        profile = Profile(version=0, built_at=now_iso(), person=self.person, biography=self.bio[0],
                          biography_second=self.bio[1], status=self.status, shades=tuple(self.shades),
                          topics=tuple(self.topics), facts=tuple(self.facts), entities=tuple(self.entities),
                          unclustered=tuple(self.unclustered))
        profile = apply_overrides(profile, self.overrides)
        previous = current_version(self.store)
        if previous is not None:
            from .versions import diff

            self.report.changes = diff(load_version(self.store, previous), profile)
        summary = (f"{len(profile.topics)} topics, {len(profile.shades)} shades, {len(profile.facts)} facts"
                   + (f"; {self.report.new_chunks} new chunks" if self.report.new_chunks else ""))
        saved = save_version(self.store, profile, kind="build", summary=summary,
                             stats={"run": self.report.run, "teacher_calls": self.meter.calls if self.meter else 0})
        self.cache.put("build", "fingerprint", self.fingerprint)
        self.report.version = saved.version
        return f"version {saved.version}: {summary}"


def _empty(person: str, facts) -> Profile:
    from ..types import Status

    return Profile(0, "", person, "", "", Status(None, "", ""), facts=tuple(facts))


def _obs_dict(o: object) -> dict:
    d = asdict(o)
    d.pop("chunk_id", None)
    return d


def _jaccard(a: list[str], b: list[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0
