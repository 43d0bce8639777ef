"""Layer-1 build cost: from scratch vs incremental after 5 new documents (the issue's goal: <= 25%).

Same process, same memory, same teacher: the example person is ingested without 5 documents, layer 1
is built from scratch (the baseline), the 5 documents are ingested, and layer 1 is built again. For each
build it prints wall time, teacher calls, prompt and reply tokens, and slots filled by the teacher vs
deterministic fallbacks; then the incremental/scratch ratio of each.

    python bench/layer1.py                          # MiniLM + a scripted teacher that answers every slot
    python bench/layer1.py --teacher embedded --slots   # the embedded 135M asked for every slot (minutes)
    python bench/layer1.py --teacher embedded       # the CLI default for it: no slot calls, deterministic text
    python bench/layer1.py --teacher openai:MODEL@http://127.0.0.1:11434/v1 --prose
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", default="scripted", help="scripted | embedded | any model spec")
    ap.add_argument("--slots", action=argparse.BooleanOptionalAction, default=None,
                    help="ask the teacher for topic names and shade descriptions (default: as the CLI)")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--prose", action="store_true", help="let the teacher write prose (strong models)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

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
