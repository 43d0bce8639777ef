"""Layer-0 commands: ingest, search, reindex, sources, forget, status."""

from __future__ import annotations

import sys

import click

from . import EXIT_FILES_FAILED, Context, _emit_json, cli, escape, out, styled
from .progress import Bars


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--source-name", help="Name the source (one path only). Default: the folder or file name.")
@click.option("--prune", is_flag=True, help="Remove files (and sources) that disappeared from disk.")
@click.option("--watch", "watch_", is_flag=True, help="Keep syncing as files change (Ctrl-C to stop).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="List every file, not only failures and changes.")
@click.pass_obj
def ingest(obj: Context, paths: tuple[str, ...], source_name: str | None, prune: bool, watch_: bool,
           as_json: bool, verbose: bool) -> None:
    """Ingest files and folders (re-scans all known sources when no PATHS are given).

    Re-running is cheap: unchanged files are skipped, changed ones replaced. Exit code 1 if any file failed.
    """
    from ..ingest.pipeline import ingest as run_ingest

    def once(prune_now: bool) -> int:
        bars = Bars({"ingest": ("ingest", "file")}, quiet=as_json)
        try:
            report = run_ingest(obj.store, obj.embedder, paths, source_name=source_name, prune=prune_now,
                                person_name=obj.settings.person_name, chunk_words=obj.settings.chunk_words,
                                on_progress=bars)
        finally:
            bars.close()
        _print_ingest(report, as_json, verbose)
        return EXIT_FILES_FAILED if report.failed else 0

    code = once(prune)
    if not watch_:
        sys.exit(code)
    from pathlib import Path

    from ..ingest.watch import watch

    targets = [Path(p).resolve() for p in paths] or [Path(r) for r in obj.store.source_roots().values()]
    out(f"watching {len(targets)} path(s); Ctrl-C to stop", err=True)
    watch(targets, lambda: once(True))


def _print_ingest(report, as_json: bool, verbose: bool) -> None:
    if as_json:
        _emit_json({"summary": report.summary(), "chunks_written": report.chunks_written,
                    "seconds": round(report.seconds, 3), "embed_seconds": round(report.embed_seconds, 3),
                    "files": [o.__dict__ for o in report.outcomes]})
        return
    quiet = {"unchanged"} if verbose else {"unchanged", "added", "updated"}
    for o in report.outcomes:
        if o.status not in quiet:
            reason = f": {o.reason}" if o.reason else ""
            out(f"  {o.status:<9} {o.source}/{o.path}{reason}", err=o.status == "failed")
    s = report.summary()
    parts = [f"{v} {k}" for k, v in s.items() if v]
    out(f"{', '.join(parts) or 'nothing to do'}; {report.chunks_written} chunks written in {report.seconds:.1f}s")
    if report.failed:
        out(f"{len(report.failed)} file(s) could not be read (listed above); the rest were ingested. "
            "Fix or remove them and run ingest again.", err=True)


@cli.command()
@click.argument("query")
@click.option("-k", "--k", "k", default=5, show_default=True, help="Number of results.")
@click.option("--source", "sources", multiple=True, help="Only these sources (repeatable).")
@click.option("--since", help="Only memories on or after this date (YYYY-MM-DD).")
@click.option("--until", help="Only memories on or before this date (YYYY-MM-DD).")
@click.option("--speaker", help="Only chunks where this person speaks or wrote.")
@click.option("--mode", type=click.Choice(["hybrid", "keyword", "vector"]), default="hybrid", show_default=True)
@click.option("--role", help="Search only what this role may read (`secondself role list`).")
@click.option("--json", "as_json", is_flag=True, help="Stable JSON output (see README).")
@click.pass_obj
def search(obj: Context, query: str, k: int, sources: tuple[str, ...], since: str | None, until: str | None,
           speaker: str | None, mode: str, role: str | None, as_json: bool) -> None:
    """Search memories: keyword + vector, fused. Prints cited passages."""
    from ..memory.search import Searcher, hit_to_dict
    from ..types import SearchFilters

    searcher = Searcher(obj.store, obj.embedder)
    if role:
        from ..memory.scope import ScopedSearcher

        searcher = ScopedSearcher(searcher, obj.role(role).scope)
    _reembed_if_stale(obj, quiet=as_json)
    hits = searcher.search(query, k=k, filters=SearchFilters(tuple(sources), since, until, speaker), mode=mode)
    if as_json:
        _emit_json({"query": query, "mode": mode, "results": [hit_to_dict(h) for h in hits]})
        return
    if not hits:
        out("no matching memories")
    for i, h in enumerate(hits, 1):
        c = h.chunk
        where = " › ".join(p for p in (c.title, c.heading) if p)
        who = f" — {', '.join(c.speakers)}" if c.speakers else ""
        out(styled(f"[{i}] {c.source}/{c.path}", bold=True), f"  {(c.date or '')[:10]}{who}")
        if where:
            out(f"    {where}")
        out(f"    {h.snippet}")
        out()


def _reembed_if_stale(obj: Context, quiet: bool) -> None:
    """After an embedding-model switch, embed what the new model lacks (with a progress bar)."""
    bars = Bars({"embed": ("embed", "chunk")}, quiet=quiet)
    try:
        obj.reembed_if_stale(on_progress=bars)
    finally:
        bars.close()


@cli.command()
@click.pass_obj
def reindex(obj: Context) -> None:
    """Embed every chunk that lacks a vector from the configured embedding model."""
    _reembed_if_stale(obj, quiet=False)
    out(f"all {obj.store.stats()['chunks']} chunks have {obj.embedder.name} vectors")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def sources(obj: Context, as_json: bool) -> None:
    """List sources with document/chunk counts and last ingest time."""
    rows = obj.store.sources()
    if as_json:
        _emit_json([r.__dict__ for r in rows])
        return
    if not rows:
        out("no sources yet: run `secondself ingest PATH`")
    for r in rows:
        failed = f", {r.failed_files} failed" if r.failed_files else ""
        out(f"{escape(r.name):<20} {r.documents:>6} docs {r.chunks:>7} chunks{failed}  "
            f"last ingest {r.last_ingest_at or 'never'}  ({r.root})")


@cli.command()
@click.argument("source")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def forget(obj: Context, source: str, yes: bool) -> None:
    """Delete a source and everything derived from it."""
    obj.store.source_id(source)  # raises a clear error for an unknown name before asking
    if not yes and sys.stdin.isatty():
        click.confirm(f"Forget source '{escape(source)}' and everything derived from it?", abort=True)
    counts = obj.store.delete_source(source)
    out(f"forgot {source}: {counts['files']} files, {counts['chunks']} chunks and their vectors")
    from ..memory.versions import current_version

    if current_version(obj.store) is not None:
        out("layer 1 still mentions these memories until the next `secondself build`; old profile versions "
            "keep them until `secondself profile purge`")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: Context, as_json: bool) -> None:
    """Counts, disk use, embedding model, and what is stale."""
    from ..status import memory_status

    st = memory_status(obj.store, obj.settings)
    if as_json:
        _emit_json(st)
        return
    out(f"person      {st['person']}  ({st['database']}, {st['db_mb']} MB)")
    out(f"memories    {st['sources']} sources, {st['documents']} documents, {st['chunks']} chunks")
    out(f"embedder    {st['embedder']}  vectors: {st['vectors']}")
    stale = st["stale"]
    if not any(stale.values()):
        out("stale       nothing: memory is up to date")
        return
    if stale["missing_vectors"]:
        out(f"stale       {stale['missing_vectors']} chunks lack {st['embedder']} vectors → secondself reindex")
    for key, hint in (("changed_files", "secondself ingest"), ("new_files", "secondself ingest"),
                      ("missing_files", "secondself ingest --prune"), ("failed_files", "fix, then ingest")):
        if stale[key]:
            out(f"stale       {len(stale[key])} {key.replace('_', ' ')} → {hint}")
            for p in stale[key][:10]:
                out(f"              {p}")


