"""Layer-1 build cost: from scratch vs incremental after 5 new documents (the issue's goal: <= 25%); with
--share, how much of layer 1 each teacher writes (slots by the model vs fallbacks) on the example persons.

Same process, same memory, same teacher: the example person is ingested without 5 documents, layer 1
is built from scratch (the baseline), the 5 documents are ingested, and layer 1 is built again. For each
build it prints wall time, teacher calls, prompt and reply tokens, and slots filled by the teacher vs
deterministic fallbacks; then the incremental/scratch ratio of each.

    python bench/layer1.py                          # MiniLM + a scripted teacher that answers every slot
    python bench/layer1.py --teacher embedded --slots   # the embedded 135M asked for every slot (minutes)
    python bench/layer1.py --teacher embedded       # the CLI default for it: no slot calls, deterministic text
    python bench/layer1.py --teacher openai:MODEL@http://127.0.0.1:11434/v1 --prose

--share builds each example person once per teacher, from the same ingested memory and through the code path
of `secondself build` (Runtime.build_profile, so each model gets its own defaults: `ModelSpec.layer1`), with the
embedded 135M model (its CLI default: templates only) as the baseline in the same run. Per person and teacher
it prints the slots written by the model / all slots, per kind, teacher calls and the build's wall time with its
ratio to the baseline's (the machine's load is printed too: times on a shared CPU are noisy):

    python bench/layer1.py --share --teacher qwen2.5-coder-1.5b --teacher qwen2.5-coder-0.5b
    python bench/layer1.py --share --teacher qwen2.5-coder-1.5b --person heldout --person blind --embedder hashing
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HELD_BACK = ["journal/2025-12-06.md", "journal/2025-12-13.md", "journal/2025-12-24.md", "journal/2025-12-31.md",
             "notes/2025-12-26-gift-ideas.txt"]


PERSONS = ("maya", "heldout", "blind")


def _load() -> str:
    import os

    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def share(args: argparse.Namespace) -> None:
    """Slots written by each teacher vs the embedded baseline, per example person (see the module doc)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from answers import person_name

    from secondself.config import load_settings
    from secondself.ingest.pipeline import ingest
    from secondself.runtime import Runtime

    teachers = ["embedded", *[t for t in args.teacher or () if t != "embedded"]]
    results: dict = {"embedder": args.embedder, "persons": {}}
    for person in args.person or PERSONS:
        folder = ROOT / "examples" / person
        name = person_name(folder)
        about = (folder / "about_me.md").read_text(encoding="utf-8") if (folder / "about_me.md").is_file() else None
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            settings = {"embedder": args.embedder, "person_name": name, "person": person}
            seed = Runtime(load_settings(Path(tmp) / "ingested", settings))
            ingest(seed.store, seed.embedder, [folder / "corpus"], source_name=person, person_name=name,
                   chunk_words=seed.settings.chunk_words)
            db = seed.settings.db_path
            seed.close()
            for spec in teachers:
                loaded = load_settings(Path(tmp) / spec.replace(":", "_").replace("/", "_"), settings)
                loaded.db_path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(db, loaded.db_path)              # the same memories, no layer 1 yet
                rt = Runtime(loaded)
                print(f"[{person}] building with {spec} (load {_load()})…", file=sys.stderr, flush=True)
                t0, load0 = time.perf_counter(), _load()
                report, options, _ = rt.build_profile(spec, about=about)
                rows[spec] = {"seconds": round(time.perf_counter() - t0, 1), "load": f"{load0} → {_load()}",
                              "slots": report.slots, "calls": report.teacher.get("calls", 0),
                              "teacher_seconds": report.teacher.get("seconds", 0),
                              "options": {"slots": options.slots, "prose": options.prose}}
                rt.close()
        base = rows["embedded"]
        for r in rows.values():
            r["seconds_ratio"] = round(r["seconds"] / base["seconds"], 1) if base["seconds"] else None
            r["more_slots_than_baseline"] = r["slots"]["teacher"] - base["slots"]["teacher"]
        results["persons"][person] = {"person_name": name, "teachers": rows}
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    print(f"embedder {args.embedder}; baseline: embedded (templates only); load = 1/5/15-min load average")
    print(f"{'person':<9} {'teacher':<20} {'by model':>9} {'share':>6} {'calls':>6} {'seconds':>8} {'× base':>7}  load")
    for person, p in results["persons"].items():
        for spec, r in p["teachers"].items():
            s = r["slots"]
            print(f"{person:<9} {spec:<20} {s['teacher']:>4}/{s['total']:<4} {s['teacher'] / max(s['total'], 1):>6.0%} "
                  f"{r['calls']:>6} {r['seconds']:>8} {r['seconds_ratio'] or '-':>7}  {r['load']}")
            kinds = ", ".join(f"{k} {c['teacher']}/{c['teacher'] + c['fallback']}" for k, c in s["by_kind"].items())
            print(f"{'':<31}{kinds}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", action="append",
                    help="scripted | embedded | any model spec (default: scripted; with --share, repeatable)")
    ap.add_argument("--share", action="store_true", help="slots by the model per teacher and person (see above)")
    ap.add_argument("--person", action="append", choices=PERSONS, help="with --share (default: all three)")
    ap.add_argument("--slots", action=argparse.BooleanOptionalAction, default=None,
                    help="ask the teacher for topic names and shade descriptions (default: as the CLI)")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--prose", action="store_true", help="let the teacher write prose (strong models)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.share:
        share(args)
        return
    args.teacher = (args.teacher or ["scripted"])[-1]

    from secondself.backends.embedders import make_embedder
    from secondself.backends.registry import make_chat_model
    from secondself.config import load_settings
    from secondself.ingest.pipeline import ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.store import Store

    corpus = ROOT / "examples" / "maya" / "corpus"
    about = (ROOT / "examples" / "maya" / "about_me.md").read_text(encoding="utf-8")
    settings = load_settings(None, {})
    embedder = make_embedder(args.embedder)
    from secondself.backends.registry import parse_spec
    from secondself.memory.fakes import slot_teacher

    if args.teacher == "scripted":
        teacher, slots = slot_teacher(), True
    else:
        teacher = make_chat_model(args.teacher, settings.models_dir, settings.api_key_env)
        slots = parse_spec(args.teacher).kind != "embedded"
    slots = slots if args.slots is None else args.slots
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        partial = Path(tmp) / "corpus"
        shutil.copytree(corpus, partial)
        for rel in HELD_BACK:
            (partial / rel).unlink()
        with Store(Path(tmp) / "m.sqlite3") as store:
            ingest(store, embedder, [partial], source_name="maya", person_name="Maya")
            for label, folder in (("scratch", None), ("incremental", corpus)):
                if folder:
                    ingest(store, embedder, [folder], source_name="maya", person_name="Maya")
                t0 = time.perf_counter()
                r = build(store, embedder.name, teacher, "Maya", BuildOptions(prose=args.prose, slots=slots), about=about)
                wall = round(time.perf_counter() - t0, 2)
                rows[label] = {**r.teacher, "teacher_seconds": r.teacher.get("seconds", 0), "seconds": wall,
                               "slots_teacher": r.slots["teacher"], "slots_fallback": r.slots["fallback"],
                               "chunks": r.chunks, "new_chunks": r.new_chunks, "version": r.version}
    s, i = rows["scratch"], rows["incremental"]
    ratio = {k: round(i[k] / s[k], 3) if s[k] else None
             for k in ("seconds", "calls", "prompt_tokens", "completion_tokens")}
    if args.json:
        print(json.dumps({"teacher": args.teacher, "slots": slots, "embedder": embedder.name, **rows, "ratio": ratio}, indent=2))
        return
    print(f"teacher {args.teacher}, embedder {embedder.name}, slots={slots}, prose={args.prose}")
    print(f"{'build':<12} {'chunks':>6} {'new':>4} {'seconds':>8} {'calls':>6} {'prompt tok':>10} {'reply tok':>9} "
          f"{'slots teacher/fallback':>23}")
    for label, r in rows.items():
        print(f"{label:<12} {r['chunks']:>6} {r['new_chunks']:>4} {r['seconds']:>8} {r['calls']:>6} "
              f"{r['prompt_tokens']:>10} {r['completion_tokens']:>9} {r['slots_teacher']:>11}/{r['slots_fallback']}")
    print(f"incremental / scratch: calls {ratio['calls']}, prompt tokens {ratio['prompt_tokens']}, "
          f"seconds {ratio['seconds']}  (goal: calls <= 0.25)")


if __name__ == "__main__":
    main()
