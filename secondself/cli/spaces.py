"""Space commands: a discussion between your roles and other second selves (`secondself.spaces`).

`space run` works in the foreground and prints each turn as it is stored; before anything is sent to a remote
participant, a notice on stderr says where the transcript goes. Tokens are never printed (`#***`).
"""

from __future__ import annotations

from typing import Any

import click

from . import Context, _emit_json, cli, out, styled


def _print_turn(space: Any, turn: Any) -> None:
    d = turn.to_dict()
    where = "opening" if turn.round == 0 else "summary" if turn.round > space.rounds else f"round {turn.round}"
    out(styled(f"── {d['label']} · {where} ──", bold=True))
    if turn.status == "skipped":
        out(styled(f"skipped: {turn.error}", fg="yellow"))
    else:
        out(turn.content, multiline=True)
        cites = turn.meta.get("citations") or []
        for c in cites:
            out(styled(f"  [{c.get('n')}] {c.get('source')}/{c.get('path')}"
                       f"{', ' + str(c['date'])[:10] if c.get('date') else ''}", dim=True))
    out()


def _print_header(space: Any) -> None:
    d = space.to_dict(turns=False)
    out(styled(f"space {d['id']}: {d['topic']}", bold=True))
    out(f"status: {d['status']} ({d['progress']})" if d["progress"] != d["status"] else f"status: {d['status']}")
    out(f"host: {d['host']['ref']}; rounds: {d['rounds']}; timeout: {d['timeout']:g} s")
    out("participants: " + ", ".join(p["ref"] for p in d["participants"]))
    rules = [f"never share: {', '.join(d['never_share'])}"] if d["never_share"] else []
    rules.append("citations shared with remote participants" if d["share_citations"] else "citations not shared")
    out("; ".join(rules))


@cli.group()
def space() -> None:
    """Discussions between your roles and other second selves: create, run, show."""


@space.command("create")
@click.argument("topic")
@click.option("--participant", "participants", multiple=True, required=True, metavar="REF",
              help="self, role:NAME, or another second self: http://host:8765/v1#env:VAR (its token in $VAR; "
                   "#TOKEN works too but lands in your shell history). ?model=secondself:ROLE picks its role, "
                   "?name=N names it. Repeatable.")
@click.option("--host", "host", default="self", show_default=True, metavar="self|role:NAME",
              help="Who opens and sums up.")
@click.option("--rounds", type=click.IntRange(1, 10), default=2, show_default=True)
@click.option("--never-share", "never_share", multiple=True, metavar="TERM|source:NAME|tag:NAME",
              help="Withheld from what remote participants are sent: a term, or every turn citing a source or "
                   "tagged sources (repeatable).")
@click.option("--share-citations/--no-share-citations", default=False, show_default=True,
              help="Send remote participants the memories your roles cited (title, date, snippet).")
@click.option("--timeout", type=click.FloatRange(1, 600), default=60.0, show_default=True,
              help="Seconds a remote participant has for each turn before it is skipped.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def create_cmd(obj: Context, topic: str, participants: tuple[str, ...], host: str, rounds: int,
               never_share: tuple[str, ...], share_citations: bool, timeout: float, as_json: bool) -> None:
    """Create a space about TOPIC (run it with `secondself space run ID`)."""
    from ..spaces import create_space

    created = create_space(obj.store, topic, list(participants), host=host, rounds=rounds, never_share=never_share,
                           share_citations=share_citations, timeout=timeout)
    if as_json:
        _emit_json(created.to_dict())
        return
    _print_header(created)
    out(styled(f"created space {created.id}: `secondself space run {created.id}`", dim=True))


@space.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_cmd(obj: Context, as_json: bool) -> None:
    """Every space, newest first."""
    from ..spaces import list_spaces

    rows = list_spaces(obj.store)
    if as_json:
        _emit_json({"data": rows})
        return
    if not rows:
        out("no spaces yet: `secondself space create TOPIC --participant ...`")
    for r in rows:
        out(f"{r['id']:>5}  {r['created_at'][:16]}  {r['status']:<8} {len(r['participants'])} participant(s)  "
            f"{r['topic'][:60]}")


@space.command("show")
@click.argument("space_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The space and its transcript as JSON.")
@click.pass_obj
def show_cmd(obj: Context, space_id: int, as_json: bool) -> None:
    """A space, its transcript and its summary."""
    from ..spaces import get_space

    found = get_space(obj.store, space_id)
    if as_json:
        _emit_json(found.to_dict())
        return
    _print_header(found)
    out()
    for turn in found.turns:
        _print_turn(found, turn)
    if found.status == "failed" and found.summary:
        out(styled(found.summary, fg="red", multiline=True))


@space.command("run")
@click.argument("space_id", type=int)
@click.option("--restart", is_flag=True, help="Replace the transcript of a finished space and run it again.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished space as JSON (no per-turn output).")
@click.pass_obj
def run_cmd(obj: Context, space_id: int, restart: bool, as_json: bool) -> None:
    """Run space SPACE_ID: opening, rounds, summary; each turn printed as it is stored. An unfinished space
    continues where it stopped."""
    from ..spaces import run_space

    done = run_space(obj, space_id, restart=restart, on_turn=None if as_json else _print_turn)
    if as_json:
        _emit_json(done.to_dict())
    elif done.status == "failed":
        out(styled(f"space {done.id} failed: {done.summary}", fg="red", multiline=True), err=True)
    else:
        skipped = sum(t.status == "skipped" for t in done.turns)
        out(styled(f"space {done.id} {done.status}" + (f"; {skipped} turn(s) skipped" if skipped else "")
                   + f" (`secondself space show {done.id}`)", dim=True))
    if done.status == "failed":
        raise SystemExit(1)


@space.command("delete")
@click.argument("space_id", type=int)
@click.pass_obj
def delete_cmd(obj: Context, space_id: int) -> None:
    """Delete a space, its transcript and its stored tokens."""
    from ..spaces import delete_space

    delete_space(obj.store, space_id)
    out(f"deleted space {space_id}")
