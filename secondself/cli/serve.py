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
@click.option("--all-persons", is_flag=True, help="Serve every person of the home (or store); each token acts "
                                                  "for its own person, and the admin token "
                                                  "(`token create --admin`) creates and removes persons.")
@click.pass_obj
def serve(obj: Context, host: str, port: int, cors: tuple[str, ...], max_upload_mb: int, rate_limit: float,
          max_waiting: int, train_base: str | None, all_persons: bool) -> None:
    """Serve the OpenAI-compatible API, the web app and MCP (at /mcp) for this person."""
    from ..backends.registry import parse_spec
    from ..serve.app import ServeOptions, check_bind, create_app
    from ..serve.server import run
    from ..serve.tokens import any_tokens

    options = ServeOptions(host=host, port=port, cors_origins=cors, max_upload_bytes=max_upload_mb * 2**20,
                           rate_per_minute=rate_limit, max_waiting=max_waiting, train_base=train_base)
    if all_persons:
        _serve_all(obj, options)
        return
    check_bind(host, obj)
    app = create_app(obj, options)
    state = app.state.secondself
    for role, spec in (("persona", obj.settings.persona_model), ("teacher", obj.settings.teacher_model),
                       ("personal", obj.settings.personal_endpoint)):
        if not spec:  # personal_endpoint unset: the personal model runs here
            continue
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


def _serve_all(obj: Context, options) -> None:
    from ..serve import admin_tokens
    from ..serve.app_persons import create_persons_app
    from ..serve.persons import Persons
    from ..serve.server import run

    persons = Persons(obj.settings, options, notify=lambda message: out(message, err=True, multiline=True))
    app = create_persons_app(persons)
    names = persons.names()
    limit = _raise_open_files()
    if limit is not None and len(names) * 8 > limit:
        out(f"note: each person in use keeps ~7 files open (their database connections) and this process may open "
            f"{limit}: raise `ulimit -n` before serving {len(names)} persons at once", err=True)
    shown = f"[{options.host}]" if ":" in options.host else options.host
    admin = "an admin token" if admin_tokens.list_tokens(obj.settings.home) else "no admin token yet"
    out(f"secondself serving {len(names)} person(s) on http://{shown}:{options.port}  (every request needs a "
        f"person's token; {admin}: `secondself token create --admin`)", err=True)
    out(f"  OpenAI API: http://{shown}:{options.port}/v1   MCP: http://{shown}:{options.port}/mcp   "
        f"admin: /admin/persons   Ctrl-C stops", err=True)
    run(app, options.host, options.port)


def _raise_open_files() -> int | None:
    """Raise this process's limit of open files to the most it may have (each person's database connections
    hold ~7); returns the limit, or None where there is no such limit (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    target = max(soft, 65536) if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
@click.option("--scope", "scopes", multiple=True,
              type=click.Choice(["chat", "read", "write", "admin"]),
              help="chat | read | write (implies read) | admin (everything). Repeatable; required for a "
                   "person's token.")
@click.option("--name", help="A name to recognise it by (default: token-N).")
@click.option("--role", help="Confine the token to this role: its model id only, its memory scope everywhere "
                             "(chat and read scopes only).")
@click.option("--admin", "server_admin", is_flag=True,
              help="The server's admin token (serve --all-persons): creates and removes persons, nothing else.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def token_create(obj: Context, scopes: tuple[str, ...], name: str | None, role: str | None, server_admin: bool,
                 as_json: bool) -> None:
    """Create a token. Its secret is printed now and never again."""
    from ..errors import ConfigError
    from ..serve import tokens

    if server_admin:
        if scopes or role:
            raise ConfigError("an admin token has no scopes or role: it creates and removes persons, nothing else")
        _admin_create(obj, name, as_json)
        return
    if not scopes:
        raise ConfigError("choose what the token may do: --scope chat|read|write|admin (repeatable)")
    name = name or f"token-{len(tokens.list_tokens(obj.store, include_revoked=True)) + 1}"
    info, secret = tokens.create(obj.store, name, list(scopes), role=role)
    if as_json:
        _emit_json(info.to_dict() | {"token": secret})
        return
    out(secret)
    bound = f", confined to the role {info.role!r}" if info.role else ""
    out(f"token {info.name!r} ({', '.join(info.scopes)}{bound}) created; the secret above is shown only once "
        "— store it now", err=True)


def _admin_create(obj: Context, name: str | None, as_json: bool) -> None:
    from ..serve import admin_tokens

    home = obj.settings.home
    name = name or f"admin-{len(admin_tokens.list_tokens(home, include_revoked=True)) + 1}"
    info, secret = admin_tokens.create(home, name)
    if as_json:
        _emit_json(info.to_dict() | {"token": secret})
        return
    out(secret)
    out(f"admin token {info.name!r} created (serve --all-persons: POST/DELETE /admin/persons); the secret above is "
        "shown only once — store it now", err=True)


@token.command("list")
@click.option("--all", "all_", is_flag=True, help="Include revoked tokens.")
@click.option("--admin", "server_admin", is_flag=True, help="The server's admin tokens instead of the person's.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def token_list(obj: Context, all_: bool, server_admin: bool, as_json: bool) -> None:
    """Tokens by name, scope and last use (never the secrets)."""
    from ..serve import admin_tokens, tokens

    if server_admin:
        admins = admin_tokens.list_tokens(obj.settings.home, include_revoked=all_)
        if as_json:
            _emit_json([t.to_dict() for t in admins])
            return
        for a in admins:
            state = f"revoked {a.revoked_at[:16]}" if a.revoked_at else "active"
            out(f"{escape(a.name):<20} {a.prefix}…  created {a.created_at[:16]}  {state}")
        return
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
@click.option("--admin", "server_admin", is_flag=True, help="Revoke one of the server's admin tokens.")
@click.pass_obj
def token_revoke(obj: Context, name: str, server_admin: bool) -> None:
    """Revoke a token at once."""
    from ..serve import admin_tokens, tokens

    if server_admin:
        admin_tokens.revoke(obj.settings.home, name)
        out(f"admin token {name!r} revoked")
        return
    tokens.revoke(obj.store, name)
    out(f"token {name!r} revoked")
