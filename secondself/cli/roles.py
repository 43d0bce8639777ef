"""Role commands: role create/list/show/edit/delete, and tag add/remove/list (labels on sources for scopes)."""

from __future__ import annotations

import click

from . import Context, _emit_json, cli, escape, out

_SCOPE_HELP = {
    "sources": "Sources the role may read, comma-separated (repeatable). With --tags: either.",
    "tags": "Source tags the role may read (see `secondself tag`), comma-separated (repeatable).",
    "since": "Only memories dated on or after this day (YYYY-MM-DD); undated memories are then out of scope.",
    "until": "Only memories dated on or before this day (YYYY-MM-DD).",
    "model": "Model spec for this role (embedded, a local path, openai:MODEL@URL, fake:...); default: the "
             "persona model.",
}


def _names(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """('work,cv', 'notes') → ('work', 'cv', 'notes'); None when the option was not given."""
    if values is None:
        return None
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _print_role(role, as_json: bool) -> None:
    if as_json:
        _emit_json(role.to_dict())
        return
    out(f"{role.name}  (model id {role.model_id})")
    out(f"  scope         {role.scope.describe()}")
    out(f"  model         {role.model or 'the persona model'}")
    out(f"  instructions  {role.instructions or '(none)'}")


@cli.group()
def role() -> None:
    """Roles: personas with their own instructions, memory scope and model (API model `secondself:NAME`)."""


@role.command("create")
@click.argument("name")
@click.option("--instructions", default="", help="What this role is for and how it should answer.")
@click.option("--sources", multiple=True, help=_SCOPE_HELP["sources"])
@click.option("--tags", multiple=True, help=_SCOPE_HELP["tags"])
@click.option("--since", help=_SCOPE_HELP["since"])
@click.option("--until", help=_SCOPE_HELP["until"])
@click.option("--model", help=_SCOPE_HELP["model"])
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def role_create(obj: Context, name: str, instructions: str, sources: tuple[str, ...], tags: tuple[str, ...],
                since: str | None, until: str | None, model: str | None, as_json: bool) -> None:
    """Create a role. Without --sources/--tags/--since/--until it may read every memory."""
    from ..memory.scope import Scope
    from ..roles import create_role

    scope = Scope(_names(sources) or (), _names(tags) or (), since, until)
    made = create_role(obj.store, name, instructions, scope, model)
    known = set(obj.store.source_roots())
    for missing in [s for s in scope.sources if s not in known]:
        out(f"note: no source named {missing!r} yet; the role will read it once it is ingested", err=True)
    _print_role(made, as_json)


@role.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def role_list(obj: Context, as_json: bool) -> None:
    """Roles with their scope and model."""
    from ..roles import list_roles

    rows = list_roles(obj.store)
    if as_json:
        _emit_json([r.to_dict() for r in rows])
        return
    if not rows:
        out("no roles yet: `secondself role create NAME --instructions ... --sources ...`")
    for r in rows:
        out(f"{escape(r.name):<20} {escape(r.model or 'persona model'):<22} {r.scope.describe()}")


@role.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def role_show(obj: Context, name: str, as_json: bool) -> None:
    """One role in full."""
    from ..roles import get_role

    _print_role(get_role(obj.store, name), as_json)


@role.command("edit")
@click.argument("name")
@click.option("--instructions", default=None, help="New instructions.")
@click.option("--sources", multiple=True, default=None, help=_SCOPE_HELP["sources"] + " '' clears.")
@click.option("--tags", multiple=True, default=None, help=_SCOPE_HELP["tags"] + " '' clears.")
@click.option("--since", default=None, help=_SCOPE_HELP["since"] + " '' clears.")
@click.option("--until", default=None, help=_SCOPE_HELP["until"] + " '' clears.")
@click.option("--model", default=None, help=_SCOPE_HELP["model"] + " '' goes back to the persona model.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def role_edit(obj: Context, name: str, instructions: str | None, sources: tuple[str, ...], tags: tuple[str, ...],
              since: str | None, until: str | None, model: str | None, as_json: bool) -> None:
    """Change a role; what is not given stays as it is."""
    from ..memory.scope import Scope
    from ..roles import get_role, update_role

    old = get_role(obj.store, name).scope
    new_sources, new_tags = _names(sources or None), _names(tags or None)
    scope = Scope(old.sources if new_sources is None else new_sources, old.tags if new_tags is None else new_tags,
                  old.since if since is None else since or None, old.until if until is None else until or None)
    _print_role(update_role(obj.store, name, instructions=instructions, scope=scope, model=model), as_json)


@role.command("delete")
@click.argument("name")
@click.pass_obj
def role_delete(obj: Context, name: str) -> None:
    """Delete a role (refused while tokens bound to it are active)."""
    from ..roles import delete_role

    delete_role(obj.store, name)
    out(f"role {name!r} deleted")


@cli.group()
def tag() -> None:
    """Tags on sources ('work', 'private'): a role whose scope names a tag may read the sources carrying it."""


@tag.command("add")
@click.argument("source")
@click.argument("tags", nargs=-1, required=True)
@click.pass_obj
def tag_add(obj: Context, source: str, tags: tuple[str, ...]) -> None:
    """Tag SOURCE with TAGS."""
    from ..memory.scope import source_tags, tag_source

    for t in tags:
        tag_source(obj.store, source, t)
    out(f"{source}: {', '.join(source_tags(obj.store).get(source, ()))}")


@tag.command("remove")
@click.argument("source")
@click.argument("tags", nargs=-1, required=True)
@click.pass_obj
def tag_remove(obj: Context, source: str, tags: tuple[str, ...]) -> None:
    """Remove TAGS from SOURCE."""
    from ..memory.scope import source_tags, untag_source

    for t in tags:
        if not untag_source(obj.store, source, t):
            out(f"note: {source!r} was not tagged {t!r}", err=True)
    out(f"{source}: {', '.join(source_tags(obj.store).get(source, ())) or '(no tags)'}")


@tag.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tag_list(obj: Context, as_json: bool) -> None:
    """Every source's tags."""
    from ..memory.scope import source_tags

    tags = source_tags(obj.store)
    if as_json:
        _emit_json({k: list(v) for k, v in tags.items()})
        return
    if not tags:
        out("no tags yet: `secondself tag add SOURCE TAG`")
    for source, names in tags.items():
        out(f"{escape(source):<20} {', '.join(names)}")
