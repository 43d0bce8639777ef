"""Answer quality as the person would see it: right answers, refusals and seconds per answer, per person and model.

For each example person (default: all three; `--person-dir` picks) the corpus is ingested into a temporary home
(MiniLM by default, `--embedder hashing` for a quick run), layer 1 is built only with `--build` (off by default, so
the persona answers from memories alone), and every question of `<person>/questions.jsonl` is asked through
`Runtime.persona(spec).ask(question)`, the code path of `secondself ask`, once per `--model` (repeatable; the
first is the baseline). The models answer question by question in turn, from the same store and retrieval.

Scoring needs no judge (secondself/answer_scoring.py): an answer is right when it contains a gold variant after
normalisation (case, accents, punctuation, dates and numbers in one form) and the persona did not abstain; a
refusal is the persona's abstained flag or an "I don't know"-type answer. Reported per person and model:

    right       right / answerable questions              (goal >= 80% on the persons not developed on)
    refused     refused / unanswerable questions          (goal >= 80% on the persons not developed on)
    by g/m/c    who refused the unanswerable ones: the retrieval gate (before the model), the model itself ("I don't
                know"), or the support check withdrawing a draft (an invented or copied answer: a refusal by luck)
    false IDK   refused / answerable questions
    ctx has     answerable questions whose shown memories contain a gold variant (the retrieval's ceiling;
                relative-date golds are resolved dates, so they are rarely written in the memories)
    s/answer    mean wall seconds of ask() + answer(), the model's load excluded (it is timed apart)
    s/generated the same over the answers the model was called for (the retrieval gate answers the rest at once)
    per kind    right / n for fact, other-person, relative-date, multi-hop; refused / n for unanswerable

    python bench/answers.py                                   # all three people, MiniLM, the embedded model
    python bench/answers.py --embedder hashing --limit 10     # quick: 10 questions per person, every kind
    python bench/answers.py --model embedded --model qwen2.5-coder-1.5b -v   # old vs new default, per question
    python bench/answers.py --person-dir examples/blind --build --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, log, table  # noqa: E402

from secondself.answer_scoring import KINDS, contains_answer, is_abstention, load_answer_questions  # noqa: E402

PERSONS = [REPO / "examples" / name for name in ("maya", "heldout", "blind")]
NOT_DEVELOPED_ON = ("heldout", "blind")  # written blind: the goal is measured on these
GOAL = 0.8


def select(questions: list, limit: int, kinds: list[str] | None) -> list:
    """The questions of `kinds` (all by default); with a limit, taken round-robin over the kinds so that every
    kind is represented."""
    qs = [q for q in questions if not kinds or q.kind in kinds]
    if not limit or limit >= len(qs):
        return qs
    queues = {k: [q for q in qs if q.kind == k] for k in KINDS}
    picked: list = []
    while len(picked) < limit:
        for k in KINDS:
            if queues[k] and len(picked) < limit:
                picked.append(queues[k].pop(0))
    order = {q.id: i for i, q in enumerate(qs)}
    return sorted(picked, key=lambda q: order[q.id])


def person_name(person_dir: Path) -> str:
    """The name the person's corpus uses for them: forms/gold.json's "person", else facts.json's given name."""
    for path, keys in ((person_dir / "forms" / "gold.json", ("person",)),
                       (person_dir / "facts.json", ("person", "given_name"))):
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8"))
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value:
                return value
    return person_dir.name.capitalize()


def score(q, answer, seconds: float) -> dict:
    refused = is_abstention(answer.text, answer.abstained)
    right = q.answerable and not answer.abstained and contains_answer(answer.text, q.answers)
    shown = " ".join(p.text for p in answer.passages)
    return {"id": q.id, "kind": q.kind, "question": q.question, "gold": list(q.answers), "answer": answer.text,
            "abstained": answer.abstained, "reason": answer.reason, "withdrawn": answer.raw,
            "right": right, "refused": refused,
            "ctx_has": q.answerable and contains_answer(shown, q.answers),
            "cited": [f"{c['path']}" for c in answer.citations], "seconds": round(seconds, 3),
            "model_called": "first_token_s" in answer.timings}  # the gate answers without the model


def summarize(rows: list[dict]) -> dict:
    ans = [r for r in rows if r["gold"]]
    una = [r for r in rows if not r["gold"]]
    kinds = {}
    for k in KINDS:
        of_kind = [r for r in rows if r["kind"] == k]
        if of_kind:
            good = sum(r["refused"] if k == "unanswerable" else r["right"] for r in of_kind)
            kinds[k] = {"good": good, "n": len(of_kind)}
    secs = [r["seconds"] for r in rows]
    generated = [r["seconds"] for r in rows if r["model_called"]]
    return {"answerable": len(ans), "right": sum(r["right"] for r in ans),
            "right_rate": _rate(sum(r["right"] for r in ans), len(ans)),
            "unanswerable": len(una), "refused": sum(r["refused"] for r in una),
            "refused_rate": _rate(sum(r["refused"] for r in una), len(una)),
            "false_idk": sum(r["refused"] for r in ans), "ctx_has": sum(r["ctx_has"] for r in ans),
            "refused_by": {by: sum(_refused_by(r) == by for r in una) for by in ("gate", "model", "check")},
            "kinds": kinds, "seconds_mean": round(statistics.fmean(secs), 3) if secs else None,
            "seconds_median": round(statistics.median(secs), 3) if secs else None,
            "seconds_generated": round(statistics.fmean(generated), 3) if generated else None,
            "model_calls": len(generated)}


def _refused_by(r: dict) -> str:
    """"gate" (not asked), "model" (it said it does not know), "check" (its draft was withdrawn), "" (no refusal)."""
    if not r["refused"]:
        return ""
    if not r["abstained"] or (r["model_called"] and not r["withdrawn"]):
        return "model"
    return "check" if r["model_called"] else "gate"


def _rate(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def run_person(person_dir: Path, questions: list, specs: list[str], models: dict, args) -> dict:
    from secondself.config import load_settings
    from secondself.ingest.pipeline import ingest
    from secondself.runtime import Runtime

    name = args.person_name or person_name(person_dir)
    out: dict = {"dir": str(person_dir), "person_name": name, "questions": len(questions)}
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(load_settings(tmp, {"embedder": args.embedder, "person_name": name}))
        t0 = time.perf_counter()
        log(f"[{person_dir.name}] ingesting {person_dir / 'corpus'} as {name!r} with {args.embedder}…")
        report = ingest(rt.store, rt.embedder, [person_dir / "corpus"], source_name=person_dir.name,
                        person_name=name, chunk_words=rt.settings.chunk_words)
        out["ingest"] = {"seconds": round(time.perf_counter() - t0, 1), "chunks": report.chunks_written}
        if args.build:
            about = person_dir / "about_me.md"
            t0 = time.perf_counter()
            log(f"[{person_dir.name}] building layer 1 (teacher {args.teacher or rt.settings.teacher_model})…")
            build, _, _ = rt.build_profile(args.teacher, about=about.read_text(encoding="utf-8")
                                           if about.is_file() else None)
            out["build"] = {"seconds": round(time.perf_counter() - t0, 1), "version": build.version,
                            "teacher_calls": build.teacher.get("calls", 0), "slots": build.slots}
        for spec in specs:
            rt.use_model(spec, models[spec])
        personas = {spec: rt.persona(spec) for spec in specs}
        rows: dict[str, list[dict]] = {spec: [] for spec in specs}
        for i, q in enumerate(questions, 1):
            for spec in specs:  # interleaved, so that a slow phase of a shared machine hits every model alike
                t0 = time.perf_counter()
                answer = personas[spec].ask(q.question).answer()
                rows[spec].append(score(q, answer, time.perf_counter() - t0))
            marks = ", ".join(f"{spec}: {_mark(rows[spec][-1])}" for spec in specs)
            log(f"[{person_dir.name}] {i}/{len(questions)} {q.id} {marks}")
        rt.close()
    out["models"] = {spec: {**summarize(rows[spec]), "rows": rows[spec]} for spec in specs}
    return out


def _mark(r: dict) -> str:
    if r["gold"]:
        return "ok" if r["right"] else "IDK" if r["refused"] else "wrong"
    return "refused" if r["refused"] else "ANSWERED"


def load_models(specs: list[str], models_dir: Path) -> tuple[dict, dict[str, float]]:
    """Each model built once for all persons and loaded before anything is timed (a 1-token warm-up)."""
    from secondself.backends.chat import Message, Sampling, complete
    from secondself.backends.registry import make_chat_model

    models, load_s = {}, {}
    for spec in specs:
        t0 = time.perf_counter()
        log(f"loading {spec}…")
        models[spec] = make_chat_model(spec, models_dir)
        complete(models[spec], [Message("user", "Hello")], Sampling(max_tokens=1)).text()
        load_s[spec] = round(time.perf_counter() - t0, 1)
    return models, load_s


def report(result: dict, verbose: bool, out) -> None:
    specs = result["models"]
    base = specs[0]
    for person, p in result["persons"].items():
        ingest = p["ingest"]
        build = p.get("build")
        print(f"\n== {person} ({p['person_name']}): {p['questions']} questions; ingest {ingest['seconds']}s, "
              f"{ingest['chunks']} chunks; " + (f"layer 1 built ({build['teacher_calls']} teacher calls)"
                                               if build else "no layer 1 (--build not given)"), file=out)
        rows = []
        for spec in specs:
            s = p["models"][spec]
            kinds = "  ".join(f"{k} {v['good']}/{v['n']}" for k, v in s["kinds"].items())
            rows.append([spec, f"{s['right']}/{s['answerable']} ({_pct(s['right_rate'])})",
                         f"{s['refused']}/{s['unanswerable']} ({_pct(s['refused_rate'])})",
                         "/".join(str(s["refused_by"][k]) for k in ("gate", "model", "check")),
                         f"{s['false_idk']}/{s['answerable']}", f"{s['ctx_has']}/{s['answerable']}",
                         f"{s['seconds_mean']:.2f}", _secs(s["seconds_generated"]), kinds])
        print(table(["model", "right", "refused", "by g/m/c", "false IDK", "ctx has", "s/answer", "s/generated",
                     "per kind"], rows), file=out)
        if verbose:
            for spec in specs:
                print(f"\n-- {person}, {spec}, question by question (gold | answer, or why it abstained)", file=out)
                for r in p["models"][spec]["rows"]:
                    said = r["answer"] if not r["abstained"] else f"({r['reason']}) {r['withdrawn']}"
                    print(f"{r['id']:<4} {r['kind']:<13} {_mark(r):<8} {r['seconds']:>6.1f}s  {r['question']}\n"
                          f"{'':<34}{' | '.join(r['gold']) or '-'}  ->  {_short(said, 120)}", file=out)
    print(f"\n== summary (baseline: {base}; model load excluded: "
          + ", ".join(f"{s} {t}s" for s, t in result["load_seconds"].items()) + ")", file=out)
    rows = []
    for person, p in result["persons"].items():
        b = p["models"][base]
        for spec in specs:
            s = p["models"][spec]
            ratio = s["seconds_mean"] / b["seconds_mean"] if b["seconds_mean"] else None
            rows.append([person, spec, _pct(s["right_rate"]), _pct(s["refused_rate"]), f"{s['seconds_mean']:.2f}",
                         "-" if spec == base else f"{ratio:.2f}x" if ratio else "n/a"])
    print(table(["person", "model", "right", "refused", "s/answer", "time vs base"], rows), file=out)
    for spec, goal in result["goal"].items():
        print(f"goal (>= {GOAL:.0%} right and >= {GOAL:.0%} refused on {', '.join(goal['persons']) or 'none run'}), "
              f"{spec}: {'met' if goal['met'] else 'NOT met'}", file=out)


def _secs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _short(value: object, limit: int) -> str:
    s = " ".join(str(value).split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--person-dir", type=Path, action="append",
                    help="a person folder with corpus/ and questions.jsonl (repeatable; default: all three examples)")
    ap.add_argument("--person-name", help="the person's name for ingest (default: from forms/gold.json or facts.json)")
    ap.add_argument("--model", action="append", help="a model spec, as for `secondself ask --model` (repeatable; the "
                                                     "first is the baseline; default: embedded)")
    ap.add_argument("--embedder", default="minilm", help="minilm (default) | hashing | a model directory")
    ap.add_argument("--build", action="store_true", help="build layer 1 before asking (off by default)")
    ap.add_argument("--teacher", help="the teacher for --build (default: the settings' teacher_model)")
    ap.add_argument("--models-dir", type=Path, help="where models are cached (default: your secondself home's)")
    ap.add_argument("--limit", type=int, default=0, help="at most N questions per person, every kind represented")
    ap.add_argument("--kind", action="append", choices=KINDS, help="only questions of this kind (repeatable)")
    ap.add_argument("--json", action="store_true", help="JSON results on stdout, tables on stderr")
    ap.add_argument("-v", "--verbose", action="store_true", help="a question-by-question table per person and model")
    args = ap.parse_args()
    out = sys.stderr if args.json else sys.stdout

    from secondself.config import load_settings
    from secondself.errors import SecondSelfError

    specs = list(dict.fromkeys(args.model or ["embedded"]))
    dirs = [d.resolve() for d in (args.person_dir or PERSONS)]
    try:
        sets = {d: select(load_answer_questions(d / "questions.jsonl"), args.limit, args.kind) for d in dirs}
        models, load_s = load_models(specs, args.models_dir or load_settings().models_dir)
        persons = {d.name: run_person(d, sets[d], specs, models, args) for d in dirs}
    except SecondSelfError as e:
        raise SystemExit(f"error: {e}") from e
    held = [name for name in persons if name in NOT_DEVELOPED_ON]
    goal = {spec: {"persons": held, "met": bool(held) and all(
        (persons[n]["models"][spec]["right_rate"] or 0) >= GOAL and (persons[n]["models"][spec]["refused_rate"] or 0)
        >= GOAL for n in held)} for spec in specs}
    result = {"embedder": args.embedder, "build": args.build, "models": specs, "load_seconds": load_s,
              "limit": args.limit, "persons": persons, "goal": goal}
    report(result, args.verbose, out)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
