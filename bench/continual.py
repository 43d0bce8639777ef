"""The time budget of layer 2, end to end through the CLI: a full `secondself train`, then a continued one after
five new notes.

What it measures
    For an example person (`--person`, default maya) in a fresh home (`SECONDSELF_HOME` in a temporary
    folder, the embedded model): the corpus is ingested *without* its last `--new` files (sorted by path),
    layer 1 is built (`build --about`), and then
    1. `secondself train --full` — the default recipe from scratch, timed end to end (synthesis, the base's
       answers to the generic prompts, fine-tuning, evaluation, registration); goal <= 15 min on 2 idle cores;
    2. the held-back files are ingested and layer 1 rebuilt (not timed: that is layers 0-1), then
       `secondself train` — which continues the current adapter on what changed plus a replay of old items —
       timed the same way; goal <= 25% of (1).
    Each command's own report is kept: steps, threads, held-out recall of both adapters, and `recall_old`
    (the continued adapter on the facts its parent was trained on) beside the parent's own answers to the
    same questions: are old facts kept?

Baseline (same run): the full run (1) is the baseline of the continued run (2): "continued / full" is the
ratio. Load average before each step is printed: the budget is about idle cores, so a loaded machine says so.

    python bench/continual.py [--person maya] [--new 5] [--threads N] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, dump_json, fmt_ratio, log, ratio, table  # noqa: E402

CLI = [sys.executable, "-m", "secondself"]


def person_name(person_dir: Path) -> str:
    from answers import person_name as name

    return name(person_dir)


def cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run one CLI command; (seconds, stdout). A failure stops the benchmark with the command's stderr."""
    t0 = time.perf_counter()
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"`secondself {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def train(env: dict[str, str], *flags: str) -> dict[str, Any]:
    load = os.getloadavg()[0]
    log(f"secondself train {' '.join(flags)} (load average {load:.1f}) ...")
    seconds, out = cli(env, "train", "--json", *flags)
    meta = json.loads(out)
    t, ev = meta.get("train", {}), meta.get("eval", {})
    personal, base = ev.get("scores", {}).get("personal", {}), ev.get("scores", {}).get("base", {})
    row = {"seconds": round(seconds, 1), "load_average": round(load, 2), "version": meta.get("version"),
           "mode": meta.get("mode"), "steps": t.get("steps"), "train_s": t.get("seconds"),
           "threads": t.get("threads"), "bf16_products": t.get("bf16_products"),
           "new_items": meta.get("new_items"), "replayed": meta.get("replayed"),
           "recall_base": base.get("recall"), "recall": personal.get("recall"),
           "recall_old": personal.get("recall_old"), "refusal": personal.get("refusal"),
           "recall_old_parent": ev.get("summary", {}).get("recall_old_parent"),
           "summary": ev.get("summary", {})}
    log(f"  {seconds:.0f} s, {row['steps']} steps, recall {row['recall_base']} -> {row['recall']}"
        + (f", recall_old {row['recall_old']} (parent {row['recall_old_parent']}, same questions)"
           if row["recall_old"] is not None else ""))
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--person", default="maya", help="example person folder name")
    ap.add_argument("--new", type=int, default=5, help="files held back, then added before the continued run")
    ap.add_argument("--threads", type=int, default=None, help="pin training threads (SECONDSELF_THREADS)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="copy the home (store, runs, adapters) here at the end, to study the runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print
    pdir = REPO / "examples" / args.person
    files = sorted(p for p in (pdir / "corpus").rglob("*") if p.is_file())
    new, old = files[-args.new:], files[:-args.new]
    result: dict[str, Any] = {"benchmark": "continual", "person": args.person, "new_files": [
        str(p.relative_to(pdir)) for p in new]}
    with tempfile.TemporaryDirectory() as tmp:
        home, stage = Path(tmp) / "home", Path(tmp) / "corpus"
        env = {**os.environ, "SECONDSELF_HOME": str(home), "SECONDSELF_PERSON_NAME": person_name(pdir),
               "HF_HUB_OFFLINE": "1"}
        if args.threads:
            env["SECONDSELF_THREADS"] = str(args.threads)
        for p in old:
            target = stage / p.relative_to(pdir / "corpus")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.read_bytes())
        about = ["--about", str(pdir / "about_me.md")] if (pdir / "about_me.md").is_file() else []
        log(f"[{args.person}] ingest {len(old)} files and build layer 1 ...")
        cli(env, "ingest", str(stage), "--source-name", args.person)
        cli(env, "build", *about)
        result["full"] = train(env, "--full")
        for p in new:
            target = stage / p.relative_to(pdir / "corpus")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.read_bytes())
        log(f"[{args.person}] ingest {len(new)} new files and rebuild layer 1 ...")
        cli(env, "ingest", str(stage), "--source-name", args.person)
        cli(env, "build", *about)
        result["continued"] = train(env)
        if args.keep:
            shutil.copytree(home, args.keep, symlinks=True)
    full, cont = result["full"], result["continued"]
    result["continued_vs_full"] = ratio(cont["seconds"], full["seconds"])
    result["goal_full_met"] = full["seconds"] <= 15 * 60
    result["goal_continued_met"] = bool(result["continued_vs_full"] is not None and result["continued_vs_full"] <= 0.25)
    rows = [[name, r["version"], r["mode"], f"{r['seconds']:.0f}", r["train_s"], r["steps"],
             "/".join(map(str, r["threads"] or [])), f"{r['load_average']:.1f}",
             f"{r['recall_base']}->{r['recall']}", r["recall_old"], r["recall_old_parent"], r["refusal"],
             r["summary"].get("retention_loss"), r["summary"].get("generic_leaks")]
            for name, r in (("full (baseline)", full), ("continued", cont))]
    out(table(["run", "adapter", "mode", "wall s", "train s", "steps", "threads", "load", "recall",
               "recall_old", "parent", "refusal", "retention", "leaks"], rows))
    out(f"\nnew files: {', '.join(result['new_files'])}")
    out(f"full run {full['seconds'] / 60:.1f} min (goal <= 15 on 2 idle cores: "
        f"{'met' if result['goal_full_met'] else 'NOT met'}); continued / full: "
        f"{fmt_ratio(result['continued_vs_full'])} (goal <= 0.25: "
        f"{'met' if result['goal_continued_met'] else 'NOT met'})")
    if args.json:
        dump_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
