"""Bridge prose on the example person: how often a model's rewrite (enhance) and feedback (critique) pass the
checks that keep them honest (`bridge.prose`: nothing unselected added, every detail and correction kept),
so that the model speaks rather than the template.

The example person is ingested (hashing embedder: the bridge's selection reads text and layer-1 facts) and
layer 1 is built as `secondself build` does with the embedded teacher. Then each request below is enhanced
and each (request, answer) pair critiqued with --model; a request whose selection discloses nothing (or an
answer with no point to make) asks no model and is not counted.

    python bench/bridge.py --model qwen2.5-coder-1.5b              # greedy; a few minutes on 2 cores
    python bench/bridge.py --model qwen2.5-coder-0.5b --limit 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MAYA, log, table  # noqa: E402

REQUESTS = [
    "Book a restaurant for Friday.",
    "Plan a week of dinners for me.",
    "Suggest a weekend trip I could take next month.",
    "Recommend a piece of music for me to practise this winter.",
    "Find me a climbing gym near where I live.",
]
CRITIQUES = [
    ("Book a restaurant for Friday.", "Book Churrasqueira Gaúcha, a steakhouse in Porto, for Friday at 20:00."),
    ("Plan a week of dinners for me.", "Monday: grilled salmon. Tuesday: beef stew. Wednesday: peanut noodles. "
                                       "Thursday: chicken curry. Friday: pizza."),
    ("Suggest a weekend trip I could take next month.", "Take the train from Porto to Braga for the weekend and "
                                                        "stay near the cathedral."),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the writer's model spec (e.g. qwen2.5-coder-1.5b)")
    ap.add_argument("--limit", type=int, help="at most this many requests and critiques each")
    ap.add_argument("--json", action="store_true", help="JSON results on stdout, tables on stderr")
    args = ap.parse_args()
    out = sys.stderr if args.json else sys.stdout

    from secondself import bridge
    from secondself.backends.chat import MeteredModel
    from secondself.config import load_settings
    from secondself.ingest.pipeline import ingest
    from secondself.runtime import Runtime

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(load_settings(tmp, {"embedder": "hashing", "person_name": "Maya", "teacher_model": "fake",
                                         "persona_model": "fake"}))
        log("ingesting the example person and building layer 1…")
        ingest(rt.store, rt.embedder, [MAYA / "corpus"], source_name="maya", person_name="Maya")
        rt.build_profile("fake", slots=False, prose=False, about=(MAYA / "about_me.md").read_text("utf-8"))
        metered = MeteredModel(rt.chat_model(args.model))
        rt.use_model(args.model, metered)
        for request in REQUESTS[:args.limit]:
            t0 = time.perf_counter()
            e = bridge.enhance(rt, request, model=args.model, record=False)
            asked = bool(e.disclosed)
            results.append({"op": "enhance", "request": request, "asked": asked, "kept": e.model == args.model,
                            "text": e.text, "note": e.note, "seconds": round(time.perf_counter() - t0, 1)})
        for request, answer in CRITIQUES[:args.limit]:
            t0 = time.perf_counter()
            c = bridge.critique(rt, request, answer, model=args.model, record=False)
            results.append({"op": "critique", "request": request, "asked": bool(c.points),
                            "kept": c.model == args.model, "text": c.text, "note": c.note,
                            "seconds": round(time.perf_counter() - t0, 1)})
        rt.close()
    for r in results:
        verdict = "model" if r["kept"] else ("template: " + r["note"] if r["asked"] else "nothing to ask")
        rows.append([r["op"], r["request"][:40], verdict[:90], r["seconds"]])
        print(f"\n[{r['op']}] {r['request']}\n  -> {r['text']}\n  ({verdict})", file=out)
    print("\n" + table(["op", "request", "who spoke", "s"], rows), file=out)
    for op in ("enhance", "critique"):
        asked = [r for r in results if r["op"] == op and r["asked"]]
        kept = sum(r["kept"] for r in asked)
        print(f"{op}: the model's text passed the checks {kept}/{len(asked)}", file=out)
    print(f"model {args.model}: {metered.snapshot()}", file=out)
    if args.json:
        print(json.dumps({"model": args.model, "results": results, "usage": metered.snapshot()}, ensure_ascii=False,
                         indent=2))


if __name__ == "__main__":
    main()
