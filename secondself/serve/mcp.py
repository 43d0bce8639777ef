"""The MCP server: the person's memories as tools for any MCP client (Claude Desktop, IDE agents, ...).

Built on the official SDK (`mcp` 2.x, `MCPServer`). Nine tools, each needing one token scope (tokens.py):
    search_memory  read    hybrid search over the raw memories, with provenance
    read_profile   read    the current layer-1 profile, or one section of it
    list_sources   read    the ingested sources with their counts
    ask            chat    a question answered by the second self, with citations
    add_memory     write   save a note (uploads/mcp/) and ingest it at once
    list_roles     chat or read   the roles (personas with their own scope) the other tools can act as
    prefill        read    fill a form (JSON Schema, field list, HTML) from memory, with sources
    bridge_enhance chat    a request plus only the personal details it needs (minimal disclosure)
    bridge_critique chat   what an expert's answer got wrong or missed about the person

Roles (roles.py): search_memory, read_profile, list_sources and ask take an optional `role` and then see only
what its scope may read (memory/scope.py). A token bound to a role always acts as it: the gate puts the role
next to the scopes, a different `role` is refused, and add_memory is refused.

Transports and who may do what:
- stdio (`run_stdio`): the client launched this process as the same user, so every tool is allowed.
- Streamable HTTP (mcp_http.py: `mcp_asgi_app`, `http_app`, `run_http`): a gate in front of the SDK's ASGI app checks
  `Authorization: Bearer <token>` on every request (401 otherwise) and puts the token's scopes into the
  ASGI scope; a tool reads them back from the HTTP request the SDK hands it and refuses with a tool error
  when a scope is missing. Without a token the gate follows `require_token` (see `mcp_asgi_app`).
  The SDK's transport security rejects foreign `Host`/`Origin` headers (DNS rebinding).

Mounting it in another ASGI app: see mcp_http.py.

Errors: a SecondSelfError becomes a tool error carrying its message; anything else becomes the SDK's generic
"Error executing tool ..." (details stay in the server log), so no secret or traceback reaches a client.
Store and model work runs in the SDK's worker threads under `runtime.lock`.

The SDK is imported only inside functions, so `secondself --help` stays instant. This module deliberately
does not use `from __future__ import annotations`: the SDK finds the `Context` parameter of a tool by
resolving its annotations against this module's globals, where `Context` (imported lazily) is absent.
"""

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict  # pydantic needs this TypedDict on Python < 3.12

from .. import __version__
from ..errors import ConfigError, RoleForbiddenError, SecondSelfError
from ..runtime import Runtime
from . import tokens as token_store
from .limits import Gates

__all__ = ["build_mcp", "run_stdio", "SCOPES_KEY", "ROLE_KEY", "SECTIONS"]

log = logging.getLogger("secondself.mcp")

#: The ASGI scope key under which the HTTP gate leaves the caller's token scopes for the tools.
SCOPES_KEY = "secondself.scopes"
#: ... and the role the caller's token is bound to (absent: none).
ROLE_KEY = "secondself.role"
#: The sections `read_profile` can return on their own.
SECTIONS = ("biography", "status", "shades", "facts", "people")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

_INSTRUCTIONS = """\
This server is {person} second self: their own notes, documents, mail and chats, stored on their machine,
and a profile built from them. Use search_memory to find what they wrote or said (every result names its
source, file and date), read_profile for who they are and what they are doing now, ask to have the second
self answer in their voice with citations, and add_memory to save something they want remembered.
list_roles shows the person's roles (e.g. an interviewer that may read only work notes): pass `role` to
act as one. Memories are private: quote only what the task needs."""


class MemoryHit(TypedDict):
    chunk_id: int
    source: str
    path: str
    title: str
    date: str | None
    speakers: list[str]
    snippet: str
    score: float


class SourceCount(TypedDict):
    name: str
    documents: int
    chunks: int
    files: int
    failed_files: int
    last_ingest_at: str | None


class AskResult(TypedDict):
    answer: str
    citations: list[dict[str, Any]]
    abstained: bool
    reason: str


class RoleInfo(TypedDict):
    name: str
    model_id: str
    instructions: str
    scope: str


class AddedMemory(TypedDict):
    path: str
    source: str
    chunks_added: int


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Our typed errors become tool errors the agent can read; everything else stays a crash (logged)."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except SecondSelfError as e:
        raise ToolError(str(e)) from e


def _request_scopes(ctx: Any) -> tuple[str, ...]:
    """The scopes the HTTP gate granted this call; none when the call did not come through the gate."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None) or {}
    return tuple(scope.get(SCOPES_KEY) or ())


def _request_role(ctx: Any) -> str | None:
    """The role the caller's token is bound to, as the HTTP gate recorded it."""
    scope = getattr(ctx.request_context.request, "scope", None) or {}
    return scope.get(ROLE_KEY)


_ROLE_HELP = ("Act as this role (a name from list_roles): see only the memories its scope may read. Omit for the "
              "whole person; a token bound to a role always acts as it.")


def build_mcp(runtime: Runtime, *, stdio: bool = False, gates: Gates | None = None):
    """The MCP server (an `mcp.server.mcpserver.MCPServer`) for `runtime`'s person.

    `gates`: the model gates to queue at before generating (the main server passes its own, so HTTP chats and
    MCP `ask` share one line per model); a fresh set otherwise.

    `stdio=True`: every call may use every tool (the client started this process as the same user).
    Otherwise each call's scopes come from the HTTP request, as put there by `mcp_asgi_app`'s gate, and a
    call without them is refused — so a server built for HTTP fails closed if it is served without the gate.
    """
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations
    from pydantic import Field

    from ..backends.registry import parse_spec

    rt = runtime
    gates = gates if gates is not None else Gates()
    name = rt.settings.person_name
    server = MCPServer("secondself", title=f"{name}'s second self" if name else "a second self",
                       version=__version__, log_level="WARNING",
                       instructions=_INSTRUCTIONS.format(person=f"{name}'s" if name else "a person's"))
    reading = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    try:  # a remote persona model sees the question and the memories retrieved for it
        remote_persona = parse_spec(rt.settings.persona_model).remote
    except ConfigError:  # a bad spec fails in `ask`, with its message, not here for every tool
        remote_persona = False

    def need(ctx: Context, scope: str) -> None:
        granted = token_store.SCOPES if stdio else _request_scopes(ctx)
        if not token_store.grants(granted, scope):
            has = f" (it has: {', '.join(granted)})" if granted else ""
            raise ToolError(f"this token lacks the '{scope}' scope{has}")

    def bound_role(ctx: Context) -> str | None:
        return None if stdio else _request_role(ctx)

    def acting(ctx: Context, requested: str | None):
        """The Role this call acts as (the token's, else the one asked for), or None: the whole person."""
        from ..roles import role_for

        with _tool_errors(), rt.lock:
            return role_for(rt.store, bound_role(ctx), requested)

    @server.tool(annotations=reading)
    def search_memory(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, description="What to look for, in plain words: a topic, a "
                                                              "name, a question, a phrase they may have used.")],
        k: Annotated[int, Field(ge=1, le=50, description="How many passages to return.")] = 5,
        source: Annotated[str | None, Field(description="Only this source (a name from list_sources).")] = None,
        role: Annotated[str | None, Field(description=_ROLE_HELP)] = None,
    ) -> list[MemoryHit]:
        """Search the person's memories (notes, documents, mail, chats) by meaning and by keyword.

        Returns the best-matching passages, best first, each with its provenance: source, file path (`#key`
        for one message or conversation inside a file), document title, date, who speaks, a snippet and a
        relevance score. Cite the source and date when you use one. Needs the 'read' scope."""
        from ..memory.scope import ScopedSearcher
        from ..types import SearchFilters

        need(ctx, "read")
        acts = acting(ctx, role)
        with _tool_errors(), rt.lock:
            if source and acts is None:
                rt.store.source_id(source)  # an unknown name is an error, not 0 hits (a role just finds nothing)
            rt.reembed_if_stale()
            searcher = ScopedSearcher(rt.searcher, acts.scope) if acts else rt.searcher
            hits = searcher.search(query, k=k, filters=SearchFilters(sources=(source,) if source else ()))
        return [MemoryHit(chunk_id=h.chunk.id, source=h.chunk.source, path=h.chunk.path, title=h.chunk.title,
                          date=h.chunk.date, speakers=list(h.chunk.speakers), snippet=h.snippet,
                          score=round(h.score, 6)) for h in hits]

    @server.tool(annotations=reading)
    def read_profile(
        ctx: Context,
        section: Annotated[Literal["biography", "status", "shades", "facts", "people"] | None,
                           Field(description="Only this section; omit for the whole profile.")] = None,
        role: Annotated[str | None, Field(description=_ROLE_HELP)] = None,
    ) -> dict[str, Any]:
        """Read the person's profile, condensed from all their memories: a biography; their status (what they
        are doing recently, and earlier); shades (their interests and roles, each with a dated timeline);
        dated facts (subject, predicate, object, valid from/to, source chunk ids); and the people they
        mention. Cheaper than searching when you need who they are or what is current. As a role: only what
        was derived from memories inside its scope (no biography or status). Needs 'read'."""
        from ..memory.scope import scoped_profile
        from ..memory.versions import load_version

        need(ctx, "read")
        acts = acting(ctx, role)
        with _tool_errors(), rt.lock:
            profile = load_version(rt.store)
            if acts is not None:
                profile = scoped_profile(profile, acts.scope, rt.store)
        return _profile_dict(profile, section)

    @server.tool(annotations=reading)
    def list_sources(
        ctx: Context,
        role: Annotated[str | None, Field(description=_ROLE_HELP)] = None,
    ) -> list[SourceCount]:
        """List the sources of memories (each ingested folder, file or export) with how many documents,
        chunks and files each holds, how many files failed to read, and when it was last ingested. Use the
        names to narrow search_memory. As a role: only the sources it may read. Needs the 'read' scope."""
        need(ctx, "read")
        acts = acting(ctx, role)
        with _tool_errors(), rt.lock:
            rows = rt.store.sources()
            readable = acts.scope.readable_sources(rt.store) if acts else None
        return [SourceCount(name=r.name, documents=r.documents, chunks=r.chunks, files=r.files,
                            failed_files=r.failed_files, last_ingest_at=r.last_ingest_at) for r in rows
                if readable is None or r.name in readable]

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=remote_persona))
    def ask(
        ctx: Context,
        question: Annotated[str, Field(min_length=1, description="A question for the person, asked as you "
                                                                 "would ask them (\"Where did you live in "
                                                                 "2023?\").")],
        role: Annotated[str | None, Field(description=_ROLE_HELP + " Its instructions and model apply.")] = None,
    ) -> AskResult:
        """Ask the person's second self a question. It answers in the first person from their memories and
        cites the passages it used; when the memories do not say, it abstains ("I don't know — my memories
        don't say.") instead of guessing, with `abstained` true and the `reason`. Slower than search_memory
        (a model writes the answer). As a role: its instructions, its model and only the memories it may
        read. Needs the 'chat' scope."""
        need(ctx, "chat")
        acts = acting(ctx, role)
        spec = rt.model_spec(acts)
        with _tool_errors():
            gate = gates(spec)
            with gate.turn():  # Busy (the model's line is full) becomes a tool error with its message
                with rt.lock:  # retrieval only: the store lock is not held while the model writes
                    reply = rt.persona(spec, role=acts).ask(question)
                answer = reply.answer()
        return AskResult(answer=answer.text, citations=answer.citations, abstained=answer.abstained,
                         reason=answer.reason)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                             open_world_hint=False))
    def add_memory(
        ctx: Context,
        text: Annotated[str, Field(min_length=1, max_length=1_000_000,
                                   description="The memory, in the person's words where possible "
                                               "(Markdown is fine).")],
        title: Annotated[str | None, Field(max_length=200, description="A short title.")] = None,
    ) -> AddedMemory:
        """Save a new memory for the person: a dated note in the 'mcp' source, searchable as soon as this
        returns. Save only what the person asked you to remember. Needs the 'write' scope."""
        from ..ingest.pipeline import ingest
        from .uploads import save_note, upload_source

        need(ctx, "write")
        if bound_role(ctx) is not None:  # such tokens hold no write scope; refuse even if one ever did
            raise ToolError(str(RoleForbiddenError(f"this token is confined to the role {bound_role(ctx)!r}, "
                                                   "which cannot add memories")))
        with _tool_errors(), rt.lock:
            # 'mcp-2', ... when one of the person's folders is called 'mcp' (never re-point a folder source)
            source = upload_source(rt.store.source_roots(), rt.settings.person_dir, None, "mcp")
            path = save_note(rt.settings.person_dir, text, title, source=source)
            report = ingest(rt.store, rt.embedder, [path.parent], source_name=source,
                            person_name=rt.settings.person_name, chunk_words=rt.settings.chunk_words)
        mine = [o for o in report.outcomes if o.path.rsplit("/", 1)[-1] == path.name]
        if any(o.status == "failed" for o in mine):
            raise ToolError(f"the note was saved as {path.name} but could not be ingested: {mine[0].reason}")
        return AddedMemory(path=path.name, source=source, chunks_added=sum(o.chunks for o in mine))

    @server.tool(annotations=reading)
    def list_roles(ctx: Context) -> list[RoleInfo]:
        """List the person's roles: personas of the second self with their own instructions, model and memory
        scope (e.g. an 'interviewer' that may read only work notes and the CV). Pass a role's name as `role` to
        search_memory, read_profile, list_sources or ask to act as it. A token bound to a role sees only its
        own. Needs the 'chat' or 'read' scope."""
        from ..roles import list_roles as all_roles

        granted = token_store.SCOPES if stdio else _request_scopes(ctx)
        if not (token_store.grants(granted, "chat") or token_store.grants(granted, "read")):
            need(ctx, "read")
        bound = bound_role(ctx)
        with _tool_errors(), rt.lock:
            rows = all_roles(rt.store)
        return [RoleInfo(name=r.name, model_id=r.model_id, instructions=r.instructions, scope=r.scope.describe())
                for r in rows if bound is None or r.name == bound]

    def policy(sources: list[str] | None, never_share: list[str] | None):
        from ..bridge import Policy

        return Policy(sources=tuple(sources or ()), never_share=tuple(never_share or ()))

    def unbound(ctx: Context, tool: str) -> None:
        if bound_role(ctx):  # the bridge reads the whole person; a role-bound token must not reach it
            raise ToolError(f"{tool} is not available to a token bound to a role")

    sharing = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    only_sources = Field(description="Disclose only memories from these sources (names from list_sources).")
    never = Field(description="Never disclose anything containing these terms; 'source:NAME' or 'tag:NAME' "
                              "excludes a whole source.")

    @server.tool(annotations=sharing)
    def bridge_enhance(
        ctx: Context,
        request: Annotated[str, Field(min_length=1, max_length=4000, description="The request the person wants "
                                                                                 "to send to an expert model.")],
        sources: Annotated[list[str] | None, only_sources] = None,
        never_share: Annotated[list[str] | None, never] = None,
    ) -> dict[str, Any]:
        """Enrich a request with ONLY the personal details it needs (minimal disclosure), before it goes to an
        expert model or service: e.g. "book a restaurant for Friday" gains where they live and what they do not
        eat, never their salary. Returns the enhanced request, each disclosed detail with its source memories,
        and what was withheld and why. Needs the 'chat' scope."""
        from ..bridge import enhance

        need(ctx, "chat")
        unbound(ctx, "bridge_enhance")
        with _tool_errors():
            return enhance(rt, request, policy(sources, never_share),
                           turn=lambda spec: gates(spec).turn()).to_dict()

    @server.tool(annotations=sharing)
    def bridge_critique(
        ctx: Context,
        request: Annotated[str, Field(min_length=1, max_length=4000, description="What the person asked.")],
        answer: Annotated[str, Field(min_length=1, max_length=100_000, description="The expert's answer.")],
        sources: Annotated[list[str] | None, only_sources] = None,
        never_share: Annotated[list[str] | None, never] = None,
    ) -> dict[str, Any]:
        """Judge an expert's answer on the person's behalf, in their voice: what it got wrong about them (it
        assumes something that has ended, or contradicts a preference such as a diet) and what it missed.
        Returns the points with the memories behind them. Needs the 'chat' scope."""
        from ..bridge import critique

        need(ctx, "chat")
        unbound(ctx, "bridge_critique")
        with _tool_errors():
            return critique(rt, request, answer, policy(sources, never_share),
                            turn=lambda spec: gates(spec).turn()).to_dict()

    @server.tool(annotations=reading)
    def prefill(
        ctx: Context,
        form: Annotated[str, Field(min_length=1, max_length=500_000, description="The form: a JSON Schema (as "
                                   "JSON text), a list of field names (one per line), or an HTML form.")],
        at: Annotated[str | None, Field(description="Answer as of this date (YYYY-MM-DD); default: now.")] = None,
    ) -> dict[str, Any]:
        """Pre-fill a form from the person's memories: a value per field with its source memories and a
        confidence. Fields the memories do not support stay empty with the reason; nothing is guessed. Dates,
        phone numbers and emails are normalized and every value is checked against the field's schema. Facts
        true now win over past ones. Needs the 'read' scope; not available to a token bound to a role."""
        from ..prefill import prefill as fill

        need(ctx, "read")
        unbound(ctx, "prefill")
        with _tool_errors(), rt.lock:
            return fill(rt, form, at=at).to_dict()

    return server


def _profile_dict(profile: Any, section: str | None) -> dict[str, Any]:
    """The agent-facing view of a Profile: the parts a reader needs, without clustering internals."""
    from ..memory.versions import fact_dict

    parts: dict[str, Any] = {
        "biography": profile.biography,
        "status": asdict(profile.status),
        "shades": [{k: v for k, v in asdict(s).items() if k != "topics"} for s in profile.shades],
        "facts": [fact_dict(f) for f in profile.facts],
        "people": [{"name": e.name, "kind": e.kind, "aliases": list(e.aliases), "relation": e.relation,
                    "mentions": e.mentions} for e in profile.entities],
    }
    head = {"person": profile.person, "version": profile.version, "built_at": profile.built_at}
    return head | ({section: parts[section]} if section else parts)


# -- HTTP ---------------------------------------------------------------------------------------------

def run_stdio(runtime: Runtime) -> None:
    """Serve MCP over stdin/stdout until the client closes the pipe (the SDK diverts stray prints)."""
    try:
        build_mcp(runtime, stdio=True).run("stdio")
    finally:
        runtime.close()
