"""Serving commands: serve (HTTP API + web app + MCP at /mcp), mcp (stdio or HTTP), token (create, list, revoke).

Private by default: 127.0.0.1, and no other address until a token exists. Tokens are printed once, when
created, and stored only as hashes.
"""

from __future__ import annotations

import click

from . import Context, _emit_json, cli, escape, out


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs a token (`secondself token create`).")
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--cors-origin", "cors", multiple=True, help="Allow browser pages from this origin (repeatable).")
@click.option("--max-upload-mb", default=25, show_default=True, type=int, help="Largest file accepted.")
@click.option("--rate-limit", default=120.0, show_default=True, type=float,
              help="Requests a minute per token (0 = unlimited).")
@click.option("--max-waiting", default=8, show_default=True, type=int,
              help="Requests that may wait for a busy model; more get 503 at once.")
@click.option("--train-base", help="Default base model for training started from the API/web app.")
@click.pass_obj
def serve(obj: Context, host: str, port: int, cors: tuple[str, ...], max_upload_mb: int, rate_limit: float,
          max_waiting: int, train_base: str | None) -> None:
    """Serve the OpenAI-compatible API, the web app and MCP (at /mcp) for this person."""
    from ..backends.registry import parse_spec
    from ..serve.app import ServeOptions, check_bind, create_app
    from ..serve.server import run
    from ..serve.tokens import any_tokens

    check_bind(host, obj)
    options = ServeOptions(host=host, port=port, cors_origins=cors, max_upload_bytes=max_upload_mb * 2**20,
                           rate_per_minute=rate_limit, max_waiting=max_waiting, train_base=train_base)
    app = create_app(obj, options)
    state = app.state.secondself
    for role, spec in (("persona", obj.settings.persona_model), ("teacher", obj.settings.teacher_model)):
        parsed = parse_spec(spec)
        if parsed.remote:
            state.notices.append(f"the {role} model is remote ({parsed.base_url}): questions and retrieved "
                                 "memories are sent there")
    for notice in state.notices:
        out(f"note: {notice}", err=True, multiline=True)
    shown = f"[{host}]" if ":" in host else host
    if any_tokens(obj.store):
        out(f"secondself serving {obj.settings.person!r} on http://{shown}:{port}  (tokens required; open the "
            f"web app as http://{shown}:{port}/#token=<token>)", err=True)
    else:
        out(f"secondself serving {obj.settings.person!r} on http://{shown}:{port}  (no tokens: only this machine "
            "can connect, and every local program may use it; `secondself token create` locks it)", err=True)
    out(f"  OpenAI API: http://{shown}:{port}/v1   MCP: http://{shown}:{port}/mcp   Ctrl-C stops", err=True)
    run(app, host, port)


@cli.command("mcp")
@click.option("--http", "http", is_flag=True, help="Streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8766, show_default=True, type=int)
@click.pass_obj
def mcp_cmd(obj: Context, http: bool, host: str, port: int) -> None:
    """Run the MCP server: search_memory, read_profile, list_sources, list_roles, ask, add_memory, prefill,
    bridge_enhance, bridge_critique."""
    from ..serve.app import check_bind

    if not http:
        from ..serve.mcp import run_stdio

        run_stdio(obj)
        return
    from ..serve.mcp_http import run_http

    check_bind(host, obj)
    out(f"MCP (streamable HTTP) on http://{host}:{port}/mcp  Ctrl-C stops", err=True)
    run_http(obj, host, port)


@cli.group()
def token() -> None:
    """API tokens: create (shown once), list, revoke."""


@token.command("create")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["chat", "read", "write", "admin"]),
              help="chat | read | write (implies read) | admin (everything). Repeatable.")
@click.option("--name", help="A name to recognise it by (default: token-N).")
@click.option("--role", help="Confine the token to this role: its model id only, its memory scope everywhere "
                             "(chat and read scopes only).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def token_create(obj: Context, scopes: tuple[str, ...], name: str | None, role: str | None, as_json: bool) -> None:
    """Create a token. Its secret is printed now and never again."""
    from ..serve import tokens

    name = name or f"token-{len(tokens.list_tokens(obj.store, include_revoked=True)) + 1}"
    info, secret = tokens.create(obj.store, name, list(scopes), role=role)
    if as_json:
        _emit_json(info.to_dict() | {"token": secret})
        return
    out(secret)
    bound = f", confined to the role {info.role!r}" if info.role else ""
    out(f"token {info.name!r} ({', '.join(info.scopes)}{bound}) created; the secret above is shown only once "
        "— store it now", err=True)


@token.command("list")
@click.option("--all", "all_", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def token_list(obj: Context, all_: bool, as_json: bool) -> None:
    """Tokens by name, scope and last use (never the secrets)."""
    from ..serve import tokens

    rows = tokens.list_tokens(obj.store, include_revoked=all_)
    if as_json:
        _emit_json([t.to_dict() for t in rows])
        return
    if not rows:
        out("no tokens: the server accepts only this machine, without a token")
    for t in rows:
        state = f"revoked {t.revoked_at[:16]}" if t.revoked_at else f"last used {(t.last_used_at or 'never')[:16]}"
        role = f"  role {t.role}" if t.role else ""
        out(f"{escape(t.name):<20} {' '.join(t.scopes):<22} {t.prefix}…  created {t.created_at[:16]}  {state}{role}")


@token.command("revoke")
@click.argument("name")
@click.pass_obj
def token_revoke(obj: Context, name: str) -> None:
    """Revoke a token at once."""
    from ..serve import tokens

    tokens.revoke(obj.store, name)
    out(f"token {name!r} revoked")
