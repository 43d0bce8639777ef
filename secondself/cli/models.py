"""Model commands: `models` (the ladder, what is installed, assembled and verified, and where each configured
model runs) and `models use NAME` (choose the persona and teacher model, saved in settings.toml).

Listing hashes and loads nothing; `models use` prepares the weights it names (assembles and verifies a
catalog model once) so a bad choice fails here and the first question does not wait for it.
"""

from __future__ import annotations

import os

import click

from . import Context, _emit_json, cli, escape, out

_ROLES = {"persona": ("persona_model", "SECONDSELF_PERSONA_MODEL"),
          "teacher": ("teacher_model", "SECONDSELF_TEACHER_MODEL")}


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _state(st) -> str:
    if st.problem:
        return "broken install"
    if not st.installed and not st.assembled:
        return "not installed"
    if st.verified:
        return "verified"
    if st.assembled:
        return "installed; verified on first use"
    return "installed; assembled and verified on first use"


def _catalog_rows(obj: Context) -> list[dict]:
    from ..backends import catalog

    s = obj.settings
    def _catalog_name(spec: str) -> str:   # "auto" is the catalog model it stands for
        return catalog.best_installed().name if spec.strip().lower() == "auto" else spec

    rows = []
    for entry in catalog.CATALOG:
        st = catalog.status(entry, s.models_dir)
        names = {entry.name, *entry.aliases}
        rows.append({
            "name": entry.name, "aliases": list(entry.aliases), "model": entry.title,
            "size_bytes": entry.size, "context_window": entry.context_window, "quantization": entry.quantization,
            "sha256": entry.sha256, "licence": entry.licence, "extra": entry.extra,
            "installed": st.installed, "assembled": st.assembled, "verified": st.verified, "state": _state(st),
            "path": str(st.path) if st.path else None, "problem": st.problem,
            "install": "" if st.installed or st.assembled else entry.install_hint,
            "where": "in-process, this machine (llama.cpp)",
            "used_as": [role for role, (key, _) in _ROLES.items() if _catalog_name(getattr(s, key)) in names],
        })
    return rows


def _personal(obj: Context) -> tuple[str, str] | None:
    """(adapter version, where it runs) for the selected personal model; None before one is trained."""
    from ..train import adapters as registry

    if not obj.settings.store_url and not obj.settings.db_path.is_file():  # no SQLite file: nothing trained
        return None
    info = registry.current(obj.store, obj.settings.person_dir)
    if info is None:
        return None
    if obj.settings.personal_endpoint:
        from ..backends.registry import parse_spec
        from ..backends.vllm_lora import adapter_name

        endpoint = parse_spec(obj.settings.personal_endpoint)
        where = "REMOTE: your questions and memories are sent there" if endpoint.remote else "this machine"
        return info.version, (f"{info.base} + adapter {info.version} as model "
                              f"{adapter_name(obj.settings.person, info.version, info.path)!r} on the vLLM server "
                              f"{endpoint.base_url} (personal_endpoint) — {where}")
    engine, why = registry.personal_engine(info, obj.settings.models_dir)
    return info.version, f"{info.base} + adapter {info.version} ({engine}: {why}) — in-process, this machine"


def _ollama() -> dict:
    from ..backends import ollama_store

    root = ollama_store.store_dir()
    return {"store": str(root), "models": ollama_store.list_models(root)}


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Everything below as JSON.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The model ladder and where each configured model runs. Loads and hashes nothing.

    `secondself models use NAME` chooses the persona and teacher model."""
    if ctx.invoked_subcommand is not None:
        return
    from ..backends.embedders import embedder_name
    from ..backends.registry import parse_spec

    obj: Context = ctx.obj
    s = obj.settings
    configured = {
        "persona": (s.persona_model, parse_spec(s.persona_model).describe()),
        "teacher": (s.teacher_model, parse_spec(s.teacher_model).describe()),
        "embedding": (s.embedder, f"{embedder_name(s.embedder)} — in-process, this machine"),
    }
    if (personal := _personal(obj)) is not None:
        configured["personal"] = personal
    rows, ollama = _catalog_rows(obj), _ollama()
    if as_json:
        _emit_json({**{k: {"spec": v[0], "where": v[1]} for k, v in configured.items()},
                    "catalog": rows, "ollama": ollama})
        return
    for role, (spec, where) in configured.items():
        out(f"{role:<10} {escape(spec):<24} {where}")
    if any(parse_spec(spec).remote for spec in (s.persona_model, s.teacher_model)):
        out(f"API key read from ${s.api_key_env} at call time (never stored)")
    out()
    out("catalog (run in-process by llama.cpp; choose with `secondself models use NAME`):")
    for r in rows:
        used = f"  <- {', '.join(r['used_as'])}" if r["used_as"] else ""
        alias = f" (= {', '.join(r['aliases'])})" if r["aliases"] else ""
        out(f"  {r['name'] + alias:<30} {r['model']:<28} {_size(r['size_bytes']):>8}  "
            f"{r['context_window']:>6} ctx  {r['state']}{used}")
        if r["problem"]:
            out(f"      {r['problem']}")
        elif r["install"]:
            out(f"      {r['install']}")
        elif r["assembled"]:
            out(f"      {r['path']}")
    if ollama["models"]:
        out()
        out(f"in Ollama's store ({ollama['store']}; use as ollama:NAME):")
        for name in ollama["models"]:
            out(f"  ollama:{name}")


@models.command("use")
@click.argument("name")
@click.option("--only", type=click.Choice(sorted(_ROLES)), help="Set only the persona or only the teacher model.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def use(obj: Context, name: str, only: str | None, as_json: bool) -> None:
    """Answer (persona) and build (teacher) with model NAME: a catalog name, ollama:NAME[:TAG], a .gguf file,
    a model directory, or openai:MODEL@URL. Local weights are prepared and checked now; saved in settings.toml."""
    from ..backends.registry import parse_spec
    from ..config import save_settings

    spec = parse_spec(name)
    path = None
    if spec.kind in ("embedded", "local"):
        note = {"catalog": "assembled if needed and verified, once", "ollama": "verified against its digest, once"}
        if not as_json and spec.source in note:
            out(f"preparing {spec.title} ({note[spec.source]}) ...", err=True)
        path = spec.local_path(obj.settings.models_dir)
    roles = [only] if only else list(_ROLES)
    written = save_settings(obj.settings.home, {_ROLES[r][0]: name.strip() for r in roles})
    overridden = [var for r in roles if os.environ.get(var := _ROLES[r][1])]
    if as_json:
        _emit_json({"spec": name.strip(), "roles": roles, "where": spec.describe(),
                    "path": str(path) if path else None, "settings_file": str(written),
                    "overridden_by_environment": overridden})
        return
    out(f"{' and '.join(roles)} model: {name.strip()} — {spec.describe()}")
    if path is not None:
        out(f"weights: {path}" + (" (SHA-256 verified)" if spec.source in ("catalog", "ollama") else ""))
    if spec.remote:
        out(f"note: {spec.base_url} is remote: your questions and memories will be sent there", err=True)
    out(f"saved in {written}")
    for var in overridden:
        out(f"note: {var} is set in this environment and overrides the file", err=True)
