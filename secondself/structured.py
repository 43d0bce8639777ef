"""Structured output from any chat model: validated JSON, or fields filled one at a time.

Small local models rarely write valid JSON (SmolLM2-135M failed every time in a trial), so there are
two strategies, and callers never receive half-parsed data from either:

- `generate_json`: ask for JSON, extract and repair it (code fences, prose around it, trailing commas,
  single quotes), validate against a JSON Schema, and on failure retry with the validation error shown to
  the model. After `attempts` tries, raise `StructuredOutputError` carrying every attempt.
- `fill_fields`: template-guided generation. The structure is ours: for each field the model only
  continues one line ("Name of the topic: ") and stops at the newline; each value is then coerced and
  validated by the field's type (enum values snap to the closest option, numbers and dates are parsed).
  A 135M model can do this; it is also cheaper for any model.

`structured()` picks: JSON first when the model is strong enough to be worth trying, else fields.

Models whose engine constrains sampling to a JSON Schema (`constrains_output`: llama.cpp) get the schema
with every request (`Sampling.json_schema`): their JSON always parses and has the schema's shape, so for
them JSON is worth trying whatever their size, and a choice or number field can only be answered with one
of its options or a number. Values are still validated: a grammar does not check every schema keyword.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from difflib import get_close_matches
from typing import Any

from .backends.chat import ChatModel, Message, Sampling, complete
from .errors import StructuredOutputError

__all__ = ["generate_json", "fill_fields", "Field", "extract_json", "structured", "constrains_output"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text`, repaired for common small-model slips. Raises ValueError."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        start = min((i for i in (cand.find("{"), cand.find("[")) if i >= 0), default=-1)
        if start < 0:
            continue
        body = _balanced(cand, start)
        for fix in (lambda s: s, _repair):
            try:
                return json.loads(fix(body))
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object found in the output")


def _balanced(text: str, start: int) -> str:
    """From `start`, the text up to the bracket that closes the first one (or all of it if unclosed)."""
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            esc = ch == "\\" and not esc
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return text[start:]


def _repair(s: str) -> str:
    s = re.sub(r",\s*([}\]])", r"\1", s)                      # trailing commas
    if '"' not in s:
        s = s.replace("'", '"')                               # single-quoted JSON
    s = re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:", r'\1"\2":', s)  # unquoted keys
    opened = s.count("{") - s.count("}")
    return s + "}" * max(opened, 0)                           # a cut-off final brace


def constrains_output(model: ChatModel) -> bool:
    """Whether `model` enforces `Sampling.json_schema` while sampling (others ignore it)."""
    return bool(getattr(model, "constrains_output", False))


def _validate(value: Any, schema: dict) -> str | None:
    import jsonschema

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "the top level"
        return f"at {where}: {e.message}"
    return None


def generate_json(model: ChatModel, messages: Sequence[Message], schema: dict, *, attempts: int = 3,
                  sampling: Sampling | None = None, what: str = "JSON") -> Any:
    """JSON from the model that validates against `schema`, or StructuredOutputError.

    The schema is sent as `Sampling.json_schema` too: a model that `constrains_output` cannot write
    malformed JSON; the others ignore it and are repaired and retried as before.
    """
    sampling = replace(sampling or Sampling(temperature=0.0, max_tokens=512), json_schema=schema)
    convo = list(messages)
    convo[-1] = Message(convo[-1].role, convo[-1].content + "\n\nAnswer with JSON only, matching this schema:\n"
                        + json.dumps(schema, ensure_ascii=False))
    tried: list[tuple[str, str]] = []
    for _ in range(attempts):
        raw = complete(model, convo, sampling).text()
        try:
            value = extract_json(raw)
            error = _validate(value, schema)
        except ValueError as e:
            error = str(e)
        if error is None:
            return value
        tried.append((raw, error))
        convo += [Message("assistant", raw),
                  Message("user", f"That was not valid: {error}. Reply with corrected JSON only.")]
    raise StructuredOutputError(what, tried)


@dataclass(frozen=True)
class Field:
    """One value to fill. `kind`: text | integer | number | date | choice | list (comma-separated)."""

    name: str
    prompt: str                       # the line the model continues, e.g. "A short name for this topic:"
    kind: str = "text"
    choices: tuple[str, ...] = ()
    max_words: int = 30
    required: bool = True
    starts: str = ""                  # a JSON value's first word where the engine constrains output ("Maya")


def _coerce(field: Field, raw: str) -> Any:
    from .text.dates import parse_date

    value = raw.strip().strip("\"'`*").strip()
    if not value or value.lower() in ("n/a", "none", "unknown", "-"):
        raise ValueError("empty value")
    if field.kind == "text":
        words = value.split()
        return " ".join(words[:field.max_words]).rstrip(",;:")
    if field.kind == "integer":
        m = re.search(r"-?\d+", value)
        if not m:
            raise ValueError(f"not a whole number: {value!r}")
        return int(m.group(0))
    if field.kind == "number":
        m = re.search(r"-?\d+(?:\.\d+)?", value)
        if not m:
            raise ValueError(f"not a number: {value!r}")
        return float(m.group(0))
    if field.kind == "date":
        d = parse_date(value)
        if d is None:
            raise ValueError(f"not a date: {value!r}")
        return d.date().isoformat()
    if field.kind == "choice":
        lowered = {c.lower(): c for c in field.choices}
        if value.lower() in lowered:
            return lowered[value.lower()]
        # small models answer in a sentence ("This note is about music, ..."): take the option it names first
        named = [(m.start(), c) for lc, c in lowered.items()
                 if (m := re.search(rf"\b{re.escape(lc)}\b", value.lower()))]
        if named:
            return min(named)[1]
        close = get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
        if not close:
            starts = [c for lc, c in lowered.items() if value.lower().startswith(lc) or lc.startswith(value.lower())]
            if not starts:
                raise ValueError(f"{value!r} is not one of {', '.join(field.choices)}")
            return starts[0]
        return lowered[close[0]]
    if field.kind == "list":
        items = [i.strip(" .") for i in re.split(r"[,;]", value) if i.strip(" .")]
        if not items:
            raise ValueError("empty list")
        return items[:field.max_words]
    raise ValueError(f"unknown field kind {field.kind!r}")


def fill_fields(model: ChatModel, instructions: str, fields: Sequence[Field], *, attempts: int = 2,
                sampling: Sampling | None = None,
                on_field: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Fill each field with one short, single-line generation; values are coerced and validated.

    Earlier answers are shown to the model for later fields. A required field that fails every attempt
    raises StructuredOutputError; an optional one is left out of the result.
    """
    base = sampling or Sampling(temperature=0.0, max_tokens=48, stop=("\n",))
    out: dict[str, Any] = {}
    constrained = constrains_output(model)
    for field in fields:
        tried: list[tuple[str, str]] = []
        # an option or a number can be forced while sampling; free text and dates are left to _coerce
        constrain = _field_schema(field) if constrained and field.kind in ("choice", "integer", "number") else None
        for attempt in range(attempts):
            filled = "".join(f"{f.prompt} {_show(out[f.name])}\n" for f in fields if f.name in out)
            hint = f" (one of: {', '.join(field.choices)})" if field.choices else ""
            prompt = f"{instructions}\n\n{filled}{field.prompt}{hint}"
            # a short field gets a short budget: a value needs about two tokens per word, and small
            # models that miss the newline otherwise ramble until max_tokens (seconds per field on a CPU)
            budget = min(base.max_tokens, 4 + 2 * field.max_words)
            s = Sampling(temperature=base.temperature if attempt == 0 else 0.7, max_tokens=budget, stop=base.stop,
                         seed=None if attempt == 0 else attempt, json_schema=constrain)
            raw = complete(model, [Message("user", prompt)], s).text()
            raw = raw.strip().splitlines()[0] if raw.strip() else ""
            try:
                out[field.name] = _coerce(field, raw)
                break
            except ValueError as e:
                tried.append((raw, str(e)))
        else:
            if field.required:
                raise StructuredOutputError(f"field {field.name!r}", tried)
            continue
        if on_field:
            on_field(field.name, out[field.name])
    return out


def _show(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def structured(model: ChatModel, instructions: str, fields: Sequence[Field], *,
               prefer_json: bool | None = None) -> dict:
    """Fields via JSON when `prefer_json` (strong models), falling back to field-by-field filling.

    `prefer_json=None`: JSON when the model constrains its output to the schema (so even a small model's
    JSON parses), else fields.
    """
    if prefer_json is None:
        prefer_json = constrains_output(model)
    if prefer_json:
        schema = {"type": "object", "required": [f.name for f in fields if f.required],
                  "properties": {f.name: _field_schema(f) for f in fields}}
        try:
            value = generate_json(model, [Message("user", instructions)], schema, attempts=2)
            return {f.name: _coerce(f, _show(value[f.name])) for f in fields if f.name in value}
        except (StructuredOutputError, ValueError):
            pass  # a model that cannot do JSON can usually still fill fields
    return fill_fields(model, instructions, fields)


def _field_schema(f: Field) -> dict:
    if f.kind == "choice":
        return {"type": "string", "enum": list(f.choices)}
    if f.kind == "list":
        return {"type": "array", "items": {"type": "string"}}
    return {"type": {"integer": "integer", "number": "number"}.get(f.kind, "string")}
