"""Pre-fill quality on the example person: precision, recall and unsupported fields left empty.

The example person is ingested (MiniLM by default; `--embedder hashing` is quicker and gives the same
result, since pre-fill reads text and facts, not vectors), layer 1 is built the way `secondself build` does
with the embedded teacher (deterministic facts, 0 teacher calls), and the three example forms
(examples/maya/forms: JSON Schema, HTML, plain list; the same 38 fields) are filled in three ways in the same
run: layer-1 facts only (the baseline), the memories' own text only (no layer 1), and the full pipeline.
Each value is compared with examples/maya/forms/gold.json (normalized: case, accents, whitespace,
punctuation; phone numbers by digits; lists as sets; `accept` lists other correct writings).

    precision   correct filled / filled                      (goal >= 0.9)
    recall      correct filled / fields the memories support (gold value not null)
    empty       unsupported fields left empty / unsupported  (goal: all)

    python bench/prefill.py                      # MiniLM, ~1-2 min on 2 cores (mostly embedding)
    python bench/prefill.py --embedder hashing   # a few seconds
    python bench/prefill.py --at 2025-06-20      # as of a day (the gold is for today: only a demo)
    python bench/prefill.py --person-dir examples/heldout   # another person: corpus/, forms/ (a *.schema.json,
                                                 # a *.html, a *.txt, gold.json), optional about_me.md
    python bench/prefill.py --model qwen2.5-coder-1.5b      # adds the arm "full + model": a chat model reads
                                                 # values from prose for fields the readers left without support
    python bench/prefill.py --forms-dir bench/data/prefill-maya-unknown --model qwen2.5-coder-1.5b
                                                 # the development form of fields with no known concept

With --model, a prompt asked twice (the same field in two forms) is answered once: greedy decoding gives the
same reply, so this only saves time. The model's calls and seconds are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MAYA, fmt_ratio, log, ratio, table  # noqa: E402

from secondself.backends.chat import MeteredModel  # noqa: E402
from secondself.evaluation import gold_key, gold_matches  # noqa: E402

FORMS = ["onboarding.schema.json", "onboarding.html", "fields.txt"]
ARMS = {"facts only": {"use_memories": False}, "memories only": {"use_facts": False}, "full": {}}


def score(result: dict, gold: dict) -> dict:
    filled = correct = supported = unsupported = left_empty = 0
    rows, missing = [], []
    for f in result["fields"]:
        key = gold_key(f["field"], gold)
        if key is None:
            continue
        g = gold[key]
        if g["value"] is None:
            unsupported += 1
            left_empty += f["value"] is None
        else:
            supported += 1
        if f["value"] is not None:
            filled += 1
            good = g["value"] is not None and gold_matches(f["value"], g)
            correct += good
            mark = "ok" if good else "WRONG" if g["value"] is not None else "WRONG (unsupported)"
        else:
            mark = "empty ok" if g["value"] is None else "missed"
            if g["value"] is not None:
                missing.append(key)
        rows.append((key, f, g, mark))
    return {"filled": filled, "correct": correct, "supported": supported, "unsupported": unsupported,
            "left_empty": left_empty, "precision": round(correct / filled, 3) if filled else None,
            "recall": round(correct / supported, 3) if supported else None, "missing": missing, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedder", default="minilm", help="minilm (default) | hashing | a model directory")
    ap.add_argument("--at", help="answer as of this day (YYYY-MM-DD); default today")
    ap.add_argument("--json", action="store_true", help="JSON results on stdout, tables on stderr")
    ap.add_argument("--person-dir", type=Path, default=MAYA,
                    help="the example person's folder (default examples/maya): corpus/, forms/, about_me.md")
    ap.add_argument("--person-name", help="person_name for ingest and pre-fill; default gold.json's 'person'")
    ap.add_argument("--forms-dir", type=Path, help="forms and gold.json from this folder (default PERSON_DIR/forms)")
    ap.add_argument("--model", help="a chat model spec (e.g. qwen2.5-coder-1.5b): adds the arm 'full + model'")
    ap.add_argument("--memo", type=Path, help="keep the model's replies in this JSON file across runs (development: "
                                              "a prompt already answered is not asked again)")
    args = ap.parse_args()
    out = sys.stderr if args.json else sys.stdout
    person_dir = args.person_dir.resolve()
    forms_dir = (args.forms_dir or person_dir / "forms").resolve()
    forms = _forms(forms_dir)
    arms = dict(ARMS) | ({"full + model": {}} if args.model else {})

    from secondself.config import load_settings
    from secondself.ingest.pipeline import ingest
    from secondself.prefill import prefill
    from secondself.runtime import Runtime

    gold_doc = json.loads((forms_dir / "gold.json").read_text(encoding="utf-8"))
    gold = gold_doc["fields"]
    person = args.person_name or gold_doc.get("person") or "Maya"
    about = person_dir / "about_me.md"
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(load_settings(tmp, {"embedder": args.embedder, "person_name": person, "teacher_model": "fake"}))
        t0 = time.perf_counter()
        log(f"ingesting the example person ({person_dir.name}, person_name {person!r}) with {args.embedder}…")
        ingest(rt.store, rt.embedder, [person_dir / "corpus"], source_name=person_dir.name.lower(), person_name=person)
        t_ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        # as `secondself build` with the embedded teacher: deterministic facts and text, no teacher calls
        report, _, _ = rt.build_profile("fake", slots=False, prose=False,
                                        about=about.read_text(encoding="utf-8") if about.is_file() else "")
        t_build = time.perf_counter() - t0
        results: dict[str, dict[str, dict]] = {}
        seconds: dict[str, list[float]] = {}
        model = _Memo(MeteredModel(rt.chat_model(args.model)), args.memo) if args.model else None
        for arm, options in arms.items():
            for form in forms:
                text = (forms_dir / form).read_text(encoding="utf-8")
                t0 = time.perf_counter()
                extra = {"model": model} if arm == "full + model" else {}
                r = prefill(rt, text, at=args.at, **options, **extra).to_dict()
                seconds.setdefault(arm, []).append(time.perf_counter() - t0)
                results.setdefault(arm, {})[form] = r
        rt.close()
        if model is not None:
            model.save()

    print(f"ingest {t_ingest:.1f}s ({args.embedder}), layer-1 build {t_build:.1f}s "
          f"({report.teacher.get('calls', 0)} teacher calls), as of {results['full'][forms[0]]['at']}", file=out)
    if model is not None:
        print(f"model {args.model}: {model.model.snapshot()} ({model.hits} prompts answered from the memo)", file=out)
    best = "full + model" if model is not None else "full"
    scores = {arm: {form: score(r, gold) for form, r in forms.items()} for arm, forms in results.items()}
    for form in forms:
        print(f"\n== {form}: {best}, field by field", file=out)
        rows = []
        for key, f, g, mark in scores[best][form]["rows"]:
            src = f["sources"][0]["path"] if f["sources"] else f["reason"][:48]
            value = ", ".join(map(str, f["value"])) if isinstance(f["value"], list) else f["value"]
            rows.append([key, _short(value), f["confidence"], _short(g["value"] if not isinstance(g["value"], list)
                                                                      else ", ".join(g["value"])), mark, _short(src, 48)])
        print(table(["field", "value", "conf", "gold", "", "first source / reason"], rows), file=out)

    print("\n== summary (baseline: layer-1 facts only)", file=out)
    summary_rows = []
    for form in forms:
        for arm in arms:
            s = scores[arm][form]
            summary_rows.append([form, arm, f"{s['correct']}/{s['filled']}", s["precision"], s["recall"],
                                 f"{s['left_empty']}/{s['unsupported']}"])
    print(table(["form", "arm", "correct/filled", "precision", "recall", "unsupported empty"], summary_rows), file=out)
    tot = {arm: _total(scores[arm]) for arm in arms}
    for arm in arms:
        t = tot[arm]
        print(f"all forms, {arm:<13}: precision {t['precision']}, recall {t['recall']}, unsupported left empty "
              f"{t['left_empty']}/{t['unsupported']}, {sum(seconds[arm]) / len(seconds[arm]) * 1000:.0f} ms per form",
              file=out)
    full, base = tot[best], tot["facts only"]
    print(f"{best} / facts only: recall {fmt_ratio(ratio(full['recall'] or 0, base['recall'] or 0))}, precision "
          f"{fmt_ratio(ratio(full['precision'] or 0, base['precision'] or 0))}", file=out)
    goal = (full["precision"] or 0) >= 0.9 and full["left_empty"] == full["unsupported"]
    print(f"goal (precision >= 0.9 and every unsupported field empty): {'met' if goal else 'NOT met'}", file=out)
    if args.json:
        print(json.dumps({"embedder": args.embedder, "model": args.model, "at": results["full"][forms[0]]["at"],
                          "person_dir": str(person_dir),
                          "scores": {arm: {form: {k: v for k, v in s.items() if k != "rows"} for form, s in forms.items()}
                                     for arm, forms in scores.items()},
                          "totals": tot, "goal_met": goal, "results": results[best]}, ensure_ascii=False, indent=2))


def _forms(folder: Path) -> list[str]:
    """The forms of a person: Maya's fixed names, else the first *.schema.json, *.html and *.txt there are."""
    if all((folder / f).is_file() for f in FORMS):
        return list(FORMS)
    found = [sorted(folder.glob(pattern)) for pattern in ("*.schema.json", "*.html", "*.txt")]
    if not any(found):
        raise SystemExit(f"{folder}: expected a *.schema.json, a *.html or a *.txt form next to gold.json")
    return [paths[0].name for paths in found if paths]


class _Memo:
    """A chat model that answers a prompt it was already asked from memory (greedy replies repeat)."""

    def __init__(self, model: MeteredModel, path: Path | None = None) -> None:
        self.model, self.hits, self.path = model, 0, path
        self._seen: dict[str, str] = json.loads(path.read_text("utf-8")) if path and path.is_file() else {}
        self.name, self.where = model.name, model.where
        self.constrains_output = model.constrains_output

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self._seen, ensure_ascii=False, indent=0), "utf-8")

    @property
    def context_window(self) -> int:
        return self.model.context_window

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def stream(self, messages, sampling):
        key = json.dumps([self.name, [[m.role, m.content] for m in messages], repr(sampling)], ensure_ascii=False)
        if key in self._seen:
            self.hits += 1
            return iter([self._seen[key]])
        return self._record(key, self.model.stream(messages, sampling))

    def _record(self, key, deltas):
        parts = []
        for d in deltas:
            parts.append(d)
            yield d
        self._seen[key] = "".join(parts)


def _total(per_form: dict[str, dict]) -> dict:
    t = {k: sum(s[k] for s in per_form.values()) for k in ("filled", "correct", "supported", "unsupported", "left_empty")}
    t["precision"] = round(t["correct"] / t["filled"], 3) if t["filled"] else None
    t["recall"] = round(t["correct"] / t["supported"], 3) if t["supported"] else None
    return t


def _short(value: object, limit: int = 34) -> str:
    s = "" if value is None else " ".join(str(value).split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


if __name__ == "__main__":
    main()
