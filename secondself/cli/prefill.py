"""`secondself prefill FORM`: fill a form (JSON Schema, field list or HTML) from your memories."""

from __future__ import annotations

import sys

import click

from . import Context, _emit_json, cli, escape, out, styled


@cli.command()
@click.argument("form", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--at", "at", help="Answer as of this date (YYYY-MM-DD; default today).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Leave a field empty when its value is less certain than this.")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON (values, sources, reasons).")
@click.option("--model", "model_spec", help="A model that reads values from your notes' prose for fields nothing "
              "else fills (checked: verbatim in a cited note and valid for the field). Default: your persona "
              "model when it is a local model other than the embedded one.")
@click.option("--no-model", is_flag=True, help="Use no model: only labelled lines, patterns and layer-1 facts.")
@click.pass_obj
def prefill(obj: Context, form: str, at: str | None, min_confidence: float, as_json: bool, model_spec: str | None,
            no_model: bool) -> None:
    """Pre-fill FORM from your memories ('-' reads it from stdin).

    FORM is a JSON Schema, a list of field names (one a line, comma-separated, or a JSON array) or an HTML
    form. Each field gets a value found in your memories, with its sources and a confidence, or stays empty
    with the reason: nothing is guessed. Values valid now win over past ones (see --at).
    """
    from pathlib import Path

    from ..errors import ConfigError
    from ..prefill import prefill as run

    try:
        text = sys.stdin.read() if form == "-" else Path(form).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the form {form}: {e}") from None
    result = run(obj, text, at=at, min_confidence=min_confidence, model=_model(obj, model_spec, no_model))
    if as_json:
        _emit_json(result.to_dict())
        return
    _print(result)


def _model(obj: Context, spec: str | None, no_model: bool):
    from ..backends.registry import parse_spec
    from ..errors import ConfigError

    if no_model:
        if spec:
            raise ConfigError("--model and --no-model exclude each other")
        return None
    if spec is None:
        spec = obj.settings.persona_model
        if parse_spec(spec).kind != "local":      # the embedded model cannot read values; a fake has nothing to say
            return None
    return obj.chat_model(spec, purpose="persona")


def _print(result) -> None:
    fields = result.fields
    labels = [escape(f.label or f.field) for f in fields]  # escaped first, so the columns line up
    width = min(34, max(map(len, labels)))
    out(f"{result.filled} of {len(fields)} fields filled from the memories of {result.person}, "
        f"as of {result.at} ({result.form_kind.replace('_', ' ')})")
    for f, label in zip(fields, labels, strict=True):
        name = label[:width].ljust(width)
        if f.value is None:
            out(f"  {name}  ", styled("—", dim=True), styled(f"  {f.reason}", dim=True))
            continue
        value = ", ".join(map(str, f.value)) if isinstance(f.value, list) else str(f.value)
        out(f"  {name}  ", styled(value, bold=True), f"  ({f.confidence:.2f})")
        for s in f.sources[:3]:
            out(styled(f"  {'':{width}}    [{s['chunk']}] {s['source']}:{s['path']}"
                       f"{'  ' + s['date'] if s['date'] else ''}", dim=True))
        if len(f.sources) > 3:
            out(styled(f"  {'':{width}}    … {len(f.sources) - 3} more", dim=True))
