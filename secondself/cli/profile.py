"""Layer-1 commands: build, profile (show, versions, diff, rollback, edit, pin, unpin, forget), facts.

The person's corrections (`profile edit`, `pin`, `forget`) are stored apart from generated text and win
in every later build; each one also saves a new version at once, so it shows up in `versions`/`diff`.
"""

from __future__ import annotations

import click

from . import Context, _emit_json, cli, out, styled
from .progress import Bars


@cli.command()
@click.option("--full", is_flag=True, help="Recluster and rename everything instead of updating.")
@click.option("--teacher", "teacher_spec", help="Teacher model spec for this build (default: teacher_model).")
@click.option("--prose/--no-prose", default=None,
              help="Let the teacher write the biography and status in its own words (kept only if grounded). "
                   "Default: on for models that write prose well (qwen2.5-coder-1.5b, endpoints, other local "
                   "models), off for qwen2.5-coder-0.5b and the embedded 135M model (`secondself models`).")
@click.option("--teacher-slots/--no-teacher-slots", "slots", default=None,
              help="Ask the teacher to name topics and describe shades. Default: on, except for the embedded "
                   "135M model, whose answers failed validation in every measured case (bench/layer1.py); "
                   "deterministic names and descriptions are used instead.")
@click.option("--teacher-facts", is_flag=True, help="Also extract facts with the teacher (one call per chunk).")
@click.option("--about", "about_file", type=click.Path(exists=True, dir_okay=False),
              help="Your own 'about me' text (kept for later builds).")
@click.option("--seed", type=int, default=0, show_default=True, help="Clustering seed.")
@click.option("--topics", "k", type=int, help="Number of topics (default: about sqrt(chunks)).")
@click.option("--json", "as_json", is_flag=True, help="The build report as JSON.")
@click.pass_obj
def build(obj: Context, full: bool, teacher_spec: str | None, prose: bool | None, slots: bool | None,
          teacher_facts: bool,
          about_file: str | None, seed: int, k: int | None, as_json: bool) -> None:
    """Build or update layer 1 (topics, facts, shades, biography, status) as a new version. Resumable."""
    from pathlib import Path

    about = Path(about_file).read_text(encoding="utf-8") if about_file else None
    bars = Bars({"embed": ("embed", "chunk"), "topics": ("naming topics", "topic"),
                 "facts": ("reading facts", "chunk"), "shades": ("describing shades", "shade")}, quiet=as_json)
    try:
        report, options, teacher = obj.build_profile(teacher_spec, full=full, seed=seed, topics=k,
                                                     teacher_facts=teacher_facts, slots=slots, prose=prose,
                                                     about=about, on_progress=bars)
    finally:
        bars.close()
    if as_json:
        _emit_json(report.to_dict())
        return
    if report.resumed:
        out(f"resuming: {report.resumed}")
    for s in report.steps:
        calls = f"  ({s.teacher_calls} teacher calls)" if s.teacher_calls else ""
        out(f"  {s.name:<10} {s.detail}  [{s.seconds:.1f}s]{calls}")
    if report.up_to_date:
        out(f"layer 1 is up to date (version {report.version}); `build --full` rebuilds anyway")
        return
    t = report.teacher
    out(f"version {report.version} saved. teacher {teacher.name}: {t.get('calls', 0)} calls, "
        f"{t.get('prompt_tokens', 0)} prompt + {t.get('completion_tokens', 0)} reply tokens, "
        f"{t.get('seconds', 0):.0f}s")
    for line in _slot_lines(report.slots):
        out(line)
    if not options.slots:
        out("  (the teacher was not asked to name topics or describe shades: off by default for the embedded "
            "model; --teacher-slots asks it anyway)")
    elif not options.prose:
        out("  (the biography and status are templates: off by default for this teacher; --prose asks it)")
    if report.changes:
        out(f"changes from the previous version ({len(report.changes)}):")
        for line in report.changes[:15]:
            out(f"  {line}")
        if len(report.changes) > 15:
            out(f"  … `secondself profile diff {report.version - 1} {report.version}` shows all")


def _slot_lines(slots: dict) -> list[str]:
    """'layer-1 slots written in this build: 52 of 62 by the model (84%), 10 by fallbacks', and per kind."""
    total = slots.get("total", 0)
    if not total:
        return ["layer-1 slots written in this build: none (the earlier builds' text was kept)"]
    lines = [f"layer-1 slots written in this build: {slots['teacher']} of {total} by the model "
             f"({slots['teacher'] / total:.0%}), {slots['fallback']} by fallbacks"]
    kinds = [f"{kind} {c['teacher']}/{c['teacher'] + c['fallback']}" for kind, c in slots.get("by_kind", {}).items()]
    if kinds:
        lines.append("  by the model, per kind: " + ", ".join(kinds))
    return lines


def _chunk_refs(obj: Context, ids) -> str:
    chunks = obj.store.chunks(ids)
    refs = [f"{c.source}/{c.path}" for c in (chunks.get(i) for i in ids) if c]
    gone = len(ids) - len(refs)
    return ", ".join(dict.fromkeys(refs)) + (f" (+{gone} deleted)" if gone else "")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="The whole profile as JSON.")
@click.option("--version", "version", type=int, help="Show this version instead of the current one.")
@click.pass_context
def profile(ctx: click.Context, as_json: bool, version: int | None) -> None:
    """Show the profile: biography, status, shades with timelines, topics. Subcommands manage versions."""
    if ctx.invoked_subcommand is not None:
        return
    from ..memory.versions import load_version

    obj: Context = ctx.obj
    p = load_version(obj.store, version)
    if as_json:
        _emit_json(p.to_dict())
        return
    def section(title: str, text: str, edited: bool = False) -> None:
        out()
        out(styled(title, bold=True), " (your words)" if edited else "")
        out(text, multiline=True)

    out(styled(f"{p.person} — profile version {p.version}, built {p.built_at[:16]}", bold=True))
    edited = set(p.edited)
    section("Biography", p.biography, "biography" in edited)
    section("To you", p.biography_second, "biography_second" in edited)
    section(f"Recently (as of {p.status.as_of})", p.status.recent)
    section("Earlier", p.status.earlier)
    out()
    out(styled(f"Shades ({len(p.shades)})", bold=True))
    for s in p.shades:
        out(styled(f"• {s.name}", bold=True), f" — {s.role}" if s.role else "", f": {s.description}")
        for e in s.timeline:
            out(f"    {e.date}  {e.text}  [{', '.join(map(str, e.sources))}]")
    out()
    out(styled(f"Topics ({len(p.topics)})", bold=True))
    for t in p.topics:
        out(f"  {t.id:<4} {t.name} ({len(t.chunks)} chunks, {t.first_date} – {t.last_date}): {', '.join(t.keywords)}")
    if p.unclustered:
        out(f"  {len(p.unclustered)} chunks fit no topic: {', '.join(map(str, p.unclustered[:20]))}")
    out()
    out(f"{len(p.facts)} facts, {len(p.entities)} people: `secondself facts` lists them")


@profile.command("versions")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def versions_cmd(obj: Context, as_json: bool) -> None:
    """Every version of the profile: builds, edits and rollbacks."""
    from ..memory.versions import list_versions

    rows = list_versions(obj.store)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        out("no versions yet: run `secondself build`")
    for r in rows:
        mark = "*" if r["current"] else " "
        out(f"{mark} {r['version']:>4}  {r['created_at'][:19]}  {r['kind']:<8}  {r['summary']}")


@profile.command("diff")
@click.argument("v1", type=int)
@click.argument("v2", type=int, required=False)
@click.pass_obj
def diff_cmd(obj: Context, v1: int, v2: int | None) -> None:
    """What changed from version V1 to V2 (default: the current version)."""
    from ..memory.versions import diff, load_version

    a, b = load_version(obj.store, v1), load_version(obj.store, v2)
    lines = diff(a, b)
    out(f"version {a.version} -> {b.version}: " + (f"{len(lines)} changes" if lines else "no changes"))
    for line in lines:
        out(line)


@profile.command("rollback")
@click.argument("version", type=int)
@click.pass_obj
def rollback_cmd(obj: Context, version: int) -> None:
    """Make VERSION current again (saved as a new version; nothing is deleted)."""
    from ..memory.versions import rollback

    p = rollback(obj.store, version)
    out(f"version {p.version} now holds the content of version {version}")


@profile.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge_cmd(obj: Context, yes: bool) -> None:
    """Delete every old version, keeping the current one (e.g. after `forget`: old versions may still
    quote forgotten memories). Run `build` first so the current version no longer does."""
    from ..memory.versions import purge_history

    if not yes:
        click.confirm("delete every profile version except the current one?", abort=True)
    out(f"deleted {purge_history(obj.store)} old version(s)")


@profile.command("edit")
@click.argument("target")
@click.option("--text", help="The new text (otherwise your $EDITOR opens).")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False), help="Read the new text from a file.")
@click.option("--reset", is_flag=True, help="Drop your text; the next build writes this section again.")
@click.option("--object", "object_", help="For a fact: the corrected object.")
@click.option("--from", "valid_from", help="For a fact: since when it is true (YYYY-MM-DD, or '' for unknown).")
@click.option("--to", "valid_to", help="For a fact: until when it was true (YYYY-MM-DD, or '' for still true).")
@click.pass_obj
def edit_cmd(obj: Context, target: str, text: str | None, file_: str | None, reset: bool, object_: str | None,
             valid_from: str | None, valid_to: str | None) -> None:
    """Correct the profile. TARGET is a section (biography, biography_second, status_recent,
    status_earlier) or a fact id. Your version wins in every later build."""
    from pathlib import Path

    from ..memory import versions as v

    if target in v.SECTIONS:
        if reset:
            removed = v.remove_override(obj.store, "section", target)
            out(f"{target}: your text removed; the next `secondself build` writes it again" if removed
                else f"{target} had no text of yours")
            return
        current = v.load_version(obj.store)
        if file_:
            text = Path(file_).read_text(encoding="utf-8")
        if text is None:
            old = current.status.recent if target == "status_recent" else current.status.earlier \
                if target == "status_earlier" else getattr(current, target)
            text = click.edit(old)
            if text is None:
                out("no change")
                return
        p = v.edit_section(obj.store, target, text)
        out(f"{target} saved as your text (version {p.version}); later builds keep it")
        return
    fact = v.find_fact(v.load_version(obj.store), target)
    changes = {k: (val or None) for k, val in (("object", object_), ("valid_from", valid_from),
                                               ("valid_to", valid_to)) if val is not None}
    if not changes:
        raise click.UsageError("for a fact, give --object, --from and/or --to")
    for key in ("valid_from", "valid_to"):
        if changes.get(key):
            _check_day(changes[key])
    edited, p = v.edit_fact(obj.store, fact.id, **changes)
    out(f"fact {fact.id} replaced by your version [{edited.id}] (version {p.version}); later builds keep it")


def _check_day(value: str) -> None:
    from datetime import date

    from ..errors import ProfileError

    try:
        date.fromisoformat(value)
    except ValueError:
        raise ProfileError(f"{value!r} is not a date: use YYYY-MM-DD") from None


def _fact_override(obj: Context, fact_id: str, kind: str) -> None:
    from ..memory import versions as v

    fact, p = v.mark_fact(obj.store, fact_id, kind)
    verb = "pinned" if kind == "pin" else "forgot"
    out(f"{verb} [{fact.id}] {fact.subject} {fact.predicate} {fact.object} (version {p.version})")


@profile.command("pin")
@click.argument("fact_id")
@click.pass_obj
def pin_cmd(obj: Context, fact_id: str) -> None:
    """Keep a fact exactly as it is in every later build."""
    _fact_override(obj, fact_id, "pin")


@profile.command("forget")
@click.argument("fact_id")
@click.pass_obj
def forget_cmd(obj: Context, fact_id: str) -> None:
    """Drop a fact from this and every later build."""
    _fact_override(obj, fact_id, "forget")


@profile.command("unpin")
@click.argument("fact_id")
@click.pass_obj
def unpin_cmd(obj: Context, fact_id: str) -> None:
    """Undo pin, forget or an edit of a fact; the next build decides it again from your memories."""
    from ..memory import versions as v

    removed = v.clear_fact(obj.store, fact_id)
    out(f"removed {removed} correction(s) for {fact_id}; the next `secondself build` applies it"
        if removed else f"no pin, forget or edit for {fact_id}")


@cli.command()
@click.option("--about", "about", help="Only facts about this person (any of their names).")
@click.option("--at", "at", help="Only what was true on this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--version", type=int, help="Facts of this profile version (default: current).")
@click.pass_obj
def facts(obj: Context, about: str | None, at: str | None, as_json: bool, version: int | None) -> None:
    """Dated facts with their sources; --at answers what was true at a date."""
    from ..memory import facts as factlib
    from ..memory.versions import fact_dict, load_version

    p = load_version(obj.store, version)
    items = list(p.facts)
    if about:
        items = factlib.facts_about(items, p.entities, about)
    if at:
        _check_day(at)
        items = factlib.facts_at(items, at)
    if as_json:
        chunks = obj.store.chunks({c for f in items for c in f.sources})
        _emit_json([fact_dict(f) | {"source_refs": [{"chunk": c, "source": chunks[c].source, "path": chunks[c].path,
                                                     "date": chunks[c].date} for c in f.sources if c in chunks]}
                    for f in items])
        return
    if not items:
        out("no facts match")
    for f in items:
        span = f"{f.valid_from or '…'} – {f.valid_to or 'now'}"
        flags = "".join(f" [{x}]" for x, on in (("pinned", f.pinned), (f.origin, f.origin != "rules")) if on)
        out(styled(f"[{f.id}] {f.subject} {f.predicate} {f.object}", bold=True), f"  ({span}){flags}")
        if f.evidence:
            out(f"    “{f.evidence}”")
        if f.sources:
            out(f"    from {_chunk_refs(obj, list(f.sources))}")
