"""Chat commands: ask (one question) and chat (a REPL with history). `models` lives in cli/models.py.

Every turn is logged in the person's database when it ends; Ctrl-C mid-answer logs the partial text as
"interrupted" and exits 130. When the persona model is a remote endpoint, the CLI says so on stderr
before anything is sent.
"""

from __future__ import annotations

import sys

import click

from . import Context, _emit_json, cli, out, styled


def _persona(obj: Context, model_spec: str | None, k: int | None, role: str | None = None):
    """The persona, or a role's (its instructions, model and memory scope, enforced in retrieval)."""
    r = obj.role(role) if role else None
    spec = model_spec or obj.model_spec(r)
    return obj.persona(spec, k, role=r), spec


def _print_citations(answer) -> None:
    if answer.abstained:
        if answer.raw:
            out(err=True)
            out(styled(f"(withdrawn: {answer.reason})", fg="yellow"), err=True)
            out(answer.text, multiline=True)
        if answer.passages:
            out(styled("closest memories:", dim=True))
            for p in answer.passages[:3]:
                out(f"  ({p.chunk.source}/{p.chunk.path}, {(p.chunk.date or '')[:10]})")
        return
    out()
    for c in answer.citations:
        how = "" if c["cited_by"] == "model" else " (by overlap)"
        out(styled(f"[{c['n']}] {c['source']}/{c['path']}  {(c['date'] or '')[:10]}{how}", bold=True))
        out(f"    {c['snippet'][:200]}")


def _answer_dict(answer, conversation_id: int, model: str) -> dict:
    return {"answer": answer.text, "abstained": answer.abstained, "reason": answer.reason,
            "citations": answer.citations, "timings": {k: round(v, 4) for k, v in answer.timings.items()},
            "usage": answer.usage, "conversation_id": conversation_id, "model": model,
            "passages": [p.citation("retrieval") | {"cosine": round(p.cosine, 4)} for p in answer.passages]}


def _turn(obj: Context, persona, question: str, history, conversation_id: int, as_json: bool, spec: str):
    """Ask, stream (unless JSON), log both turns, and return the Answer."""
    from ..backends.chat import Message
    from ..conversations import ConversationLog, Turn

    log = ConversationLog(obj.store)
    reply = persona.ask(question, history=history)
    log.add(conversation_id, Turn("user", question))
    try:
        if as_json:
            answer = reply.answer()
        else:
            for delta in reply:  # escaped delta by delta: a control character never spans two deltas
                out(delta, nl=False, multiline=True)
            answer = reply.answer()
            out()
    except KeyboardInterrupt:
        log.add(conversation_id, Turn("assistant", reply.partial(), status="interrupted"))
        raise
    log.add(conversation_id, Turn("assistant", answer.text, answer.citations,
                                  meta={"abstained": answer.abstained, "reason": answer.reason, "model": spec,
                                        "timings": answer.timings, "usage": answer.usage}))
    history.extend([Message("user", question), Message("assistant", answer.text)])
    return answer


@cli.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Answer, citations, timings and token counts as JSON.")
@click.option("--model", "model_spec", help="Model spec for this question (default: persona_model); "
                                            "'personal' = your trained adapter.")
@click.option("-k", "--k", "k", type=int, help="How many memories to show the model (default 4).")
@click.option("--role", help="Answer as this role (`secondself role list`): only its memories are read.")
@click.pass_obj
def ask(obj: Context, question: str, as_json: bool, model_spec: str | None, k: int | None,
        role: str | None) -> None:
    """Ask your second self one question; it answers from your memories and cites them."""
    from ..conversations import ConversationLog

    persona, spec = _persona(obj, model_spec, k, role)
    cid = ConversationLog(obj.store).start(question, spec)
    answer = _turn(obj, persona, question, [], cid, as_json, spec)
    if as_json:
        _emit_json(_answer_dict(answer, cid, spec))
    else:
        _print_citations(answer)


_HELP = "commands: /sources  /reset  /list  /continue ID  /quit"


@cli.command()
@click.option("--model", "model_spec", help="Model spec (default: persona_model); 'personal' = your "
                                            "trained adapter.")
@click.option("--continue", "continue_id", type=int, help="Continue a past conversation by id.")
@click.option("--list", "list_", is_flag=True, help="List past conversations and exit.")
@click.option("--role", help="Talk with this role (`secondself role list`): only its memories are read.")
@click.pass_obj
def chat(obj: Context, model_spec: str | None, continue_id: int | None, list_: bool, role: str | None) -> None:
    """Talk with your second self (REPL with history)."""
    from ..backends.chat import Message
    from ..conversations import ConversationLog

    log = ConversationLog(obj.store)
    if list_:
        for c in log.list():
            out(f"{c.id:>5}  {c.updated_at[:16]}  {c.turns:>3} turns  {c.title}")
        return
    persona, spec = _persona(obj, model_spec, None, role)
    history: list = []
    cid = None
    last = None

    def load(conversation_id: int) -> None:
        nonlocal cid
        turns = log.turns(conversation_id)
        history[:] = [Message(t.role, t.content) for t in turns if t.role in ("user", "assistant")
                      and t.status == "complete"]
        cid = conversation_id
        out(f"continuing conversation {cid} ({len(turns)} turns)")

    if continue_id:
        load(continue_id)
    out(_HELP, err=True)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            history.clear()
            cid = None
            out("new conversation")
        elif line == "/list":
            for c in log.list():
                out(f"{c.id:>5}  {c.updated_at[:16]}  {c.turns:>3} turns  {c.title}")
        elif line.startswith("/continue"):
            arg = line.split()[1:]
            if arg and arg[0].isdigit():
                load(int(arg[0]))
            else:
                out("usage: /continue ID")
        elif line == "/sources":
            if last is None:
                out("no answer yet")
            else:
                _print_citations(last)
        elif line.startswith("/"):
            out(_HELP)
        else:
            if cid is None:
                cid = log.start(line, spec)
            out("me> ", nl=False)
            last = _turn(obj, persona, line, history, cid, False, spec)
            if last.abstained and last.raw:
                out(styled(f"(withdrawn: {last.reason})", fg="yellow"), err=True)
                out(f"me> {last.text}", multiline=True)
    if sys.stdin.isatty():
        out("bye")
