"""Bridge commands: a request enhanced with only the personal details it needs, an outside expert's answer,
the person's critique of it, and the log of every run (`secondself.bridge`).

Notices about a remote expert (exactly what is sent) go to stderr before anything is sent; `--dry-run` shows
the enhanced request and sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from . import Context, _emit_json, cli, out, styled

_MODEL_HELP = ("Model that may rewrite the text fluently; its text is checked and replaced by the template's if it "
               "adds anything not selected ('template' for none; default: your personal model once trained).")


def _policy_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--max-items", type=click.IntRange(0, 20), default=5, show_default=True,
                     help="At most this many personal details.")(f)
    f = click.option("--never-share", "never_share", multiple=True, metavar="TERM|source:NAME|tag:NAME",
                     help="Never disclose a detail containing TERM, or anything from a source or tagged sources "
                          "(repeatable).")(f)
    f = click.option("--tag", "tags", multiple=True, help="Disclose only memories from sources with this tag "
                                                          "(repeatable).")(f)
    f = click.option("--source", "sources", multiple=True, help="Disclose only memories from this source "
                                                                "(repeatable).")(f)
    return f


def _policy(sources: tuple[str, ...], tags: tuple[str, ...], never_share: tuple[str, ...], max_items: int):
    from ..bridge import Policy

    return Policy(sources, tags, never_share, max_items)


def _where(item: dict[str, Any]) -> str:
    chunks = item["chunks"]
    first = f"{chunks[0]['source']}/{chunks[0]['path']}" if chunks else "no memory"
    return first + (f" +{len(chunks) - 1}" if len(chunks) > 1 else "")


def _print_details(disclosed: list[dict[str, Any]], withheld: list[dict[str, Any]], label: str = "disclosed") -> None:
    if not disclosed:
        out(styled(f"{label}: nothing personal", dim=True))
    else:
        out(styled(f"{label} ({len(disclosed)}):", bold=True))
        for n, item in enumerate(disclosed, 1):
            out(f"  {n}. {item['text']}")
            out(styled(f"     {item['kind']}, {item['reason']} — {_where(item)}", dim=True))
    if withheld:
        out(styled(f"withheld by your policy ({len(withheld)}):", bold=True))
        for item in withheld:
            out(f"  - {item['text']}  ({item['why']})")


def _print_step(step: dict[str, Any]) -> None:
    name, model = step["step"], step.get("model") or ""
    out(styled(f"── {name.replace('_', ', round ')} ({model}) ──", bold=True))
    if step.get("error"):
        out(styled(f"failed: {step['error']}", fg="red"))
        return
    if step.get("skipped"):
        out(styled(step["skipped"], fg="yellow"))
        return
    out(step["output"], multiline=True)
    if step.get("note"):
        out(styled(f"({step['note']})", fg="yellow"))
    if name == "enhance":
        _print_details(step["disclosed"], step.get("withheld", []))
    elif name.startswith("critique"):
        _print_points(step["points"], step.get("withheld", []))
    out()


def _print_points(points: list[dict[str, Any]], withheld: list[dict[str, Any]]) -> None:
    for p in points:
        out(styled(f"  [{p['kind']}] {p['detail']['reason']} — {_where(p['detail'])}", dim=True))
    for item in withheld:
        out(f"  withheld by your policy: {item['text']}  ({item['why']})")


@cli.group()
def bridge() -> None:
    """Your second self between you and an outside expert model: enhance, ask, critique (minimal disclosure)."""


@bridge.command("enhance")
@click.argument("request")
@_policy_options
@click.option("--model", "model_spec", help=_MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="The enhanced request and its disclosures as JSON.")
@click.pass_obj
def enhance_cmd(obj: Context, request: str, sources, tags, never_share, max_items: int, model_spec: str | None,
                as_json: bool) -> None:
    """Rewrite REQUEST with only the personal details it needs, and list exactly which were disclosed."""
    from ..bridge import enhance

    result = enhance(obj, request, _policy(sources, tags, never_share, max_items), model=model_spec)
    data = result.to_dict()
    if as_json:
        _emit_json(data)
        return
    out(result.text, multiline=True)
    if result.note:
        out(styled(f"({result.note})", fg="yellow"))
    out()
    _print_details(data["disclosed"], data["withheld"])
    out(styled(f"logged as bridge run {result.run_id}", dim=True))


@bridge.command("critique")
@click.argument("request")
@click.option("--answer", help="The expert's answer.")
@click.option("--answer-file", type=click.File("r", encoding="utf-8"), help="Read the answer from a file ('-': stdin).")
@_policy_options
@click.option("--model", "model_spec", help=_MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="The critique and its points as JSON.")
@click.pass_obj
def critique_cmd(obj: Context, request: str, answer: str | None, answer_file, sources, tags, never_share,
                 max_items: int, model_spec: str | None, as_json: bool) -> None:
    """What an expert's answer to REQUEST got wrong or missed about you, in your voice."""
    from ..bridge import critique

    if (answer is None) == (answer_file is None):
        raise click.UsageError("give the answer with exactly one of --answer or --answer-file")
    text = answer if answer is not None else answer_file.read()
    result = critique(obj, request, text, _policy(sources, tags, never_share, max_items), model=model_spec)
    data = result.to_dict()
    if as_json:
        _emit_json(data)
        return
    out(result.text, multiline=True)
    if result.note:
        out(styled(f"({result.note})", fg="yellow"))
    _print_points(data["points"], data["withheld"])
    out(styled(f"logged as bridge run {result.run_id}", dim=True))


@bridge.command("ask")
@click.argument("request")
@click.option("--expert", required=True, metavar="URL|MODEL",
              help="An OpenAI-compatible endpoint URL (http://host:port/v1) or a model spec (openai:MODEL@URL, ...).")
@click.option("--expert-model", help="The model to ask at the expert URL (default: the first one it lists).")
@click.option("--rounds", type=click.IntRange(1, 2), default=1, show_default=True,
              help="2: send the critique back to the expert and critique its revision.")
@click.option("--dry-run", is_flag=True, help="Show the enhanced request and what it discloses; send nothing.")
@_policy_options
@click.option("--model", "model_spec", help=_MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="The whole run, every step, as JSON.")
@click.pass_obj
def ask_cmd(obj: Context, request: str, expert: str, expert_model: str | None, rounds: int, dry_run: bool,
            sources, tags, never_share, max_items: int, model_spec: str | None, as_json: bool) -> None:
    """enhance → expert → critique → final (each step shown and logged)."""
    from ..bridge import ask

    run = ask(obj, request, expert, _policy(sources, tags, never_share, max_items), rounds, expert_model=expert_model,
              model=model_spec, dry_run=dry_run, on_step=None if as_json else _print_step)
    if as_json:
        _emit_json(run.to_dict())
    elif dry_run:
        out(styled(f"dry run: nothing was sent to {expert}; logged as bridge run {run.id}", dim=True))
    else:
        out(styled(f"logged as bridge run {run.id} (`secondself bridge log {run.id}`)", dim=True))


@bridge.command("log")
@click.argument("run_id", required=False, type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="As JSON (one run: every step).")
@click.pass_obj
def log_cmd(obj: Context, run_id: int | None, limit: int, as_json: bool) -> None:
    """The latest bridge runs, or every step of run RUN_ID."""
    from ..bridge import get_run, list_runs

    if run_id is None:
        rows = list_runs(obj.store, limit)
        if as_json:
            _emit_json({"data": rows})
            return
        if not rows:
            out("no bridge runs yet")
        for r in rows:
            out(f"{r['id']:>5}  {r['created_at'][:16]}  {r['kind']:<8} {r['status']:<8} {r['request'][:70]}")
        return
    run = get_run(obj.store, run_id)
    if as_json:
        _emit_json(run.to_dict())
        return
    out(styled(f"run {run.id}: {run.kind}, {run.status}, {run.created_at}", bold=True))
    out(f"request: {run.request}", multiline=True)
    out()
    for step in run.steps:
        _print_step(step)
