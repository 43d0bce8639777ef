"""Forms in, fields out: a JSON Schema, a plain list of field names, or an HTML form, detected automatically.

Every kind becomes the same `FormField`s: a name (the key of the answer), a human label, a description, the
HTML autocomplete token, and a JSON Schema for the value (HTML input types, `pattern`, `maxlength`,
`<select>` options and radio groups are translated into it), so that values are validated one way.
Anything that cannot be read raises `ConfigError` with what to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["FormField", "Form", "parse_form", "MAX_FIELDS"]

MAX_FIELDS = 500
_MAX_NAME = 200
_SKIP_INPUTS = {"hidden", "submit", "button", "reset", "image", "file", "password"}


@dataclass(frozen=True)
class FormField:
    """One field. `name` is where its value goes ("address.city" for a nested schema property); `schema` is
    the JSON Schema its value must satisfy; `options` are (value, text) pairs of an enum or a select."""

    name: str
    label: str = ""
    description: str = ""
    autocomplete: str = ""
    placeholder: str = ""
    schema: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[tuple[Any, str], ...] = ()

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Form:
    kind: str                       # "json_schema" | "list" | "html"
    fields: tuple[FormField, ...]
    schema: Mapping[str, Any] | None = None   # the whole schema (json_schema forms)


def parse_form(form: str | Mapping[str, Any] | Sequence[Any]) -> Form:
    """Read a form of any supported kind. Strings are detected: JSON (a schema or an array of names), HTML
    (has <input>, <select>, <textarea> or <form>), else a list of names, one a line or comma-separated."""
    if isinstance(form, Mapping):
        return _from_json(form)
    if isinstance(form, (list, tuple)):
        return _from_json(list(form))
    if not isinstance(form, str):
        raise ConfigError(f"a form must be text, a JSON Schema object or a list of field names, not {type(form).__name__}")
    text = form.strip().lstrip("\ufeff")
    if not text:
        raise ConfigError("the form is empty: give a JSON Schema, an HTML form, or field names (one a line)")
    if text[0] in "{[":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"the form looks like JSON but does not parse (line {e.lineno}, column {e.colno}: "
                              f"{e.msg}); fix the JSON, or give field names one a line") from None
        return _from_json(data)
    if re.search(r"<\s*(?:form|input|select|textarea)\b", text, re.I):
        return _from_html(text)
    if re.search(r"<\s*[a-z!]", text, re.I):
        raise ConfigError("the form looks like HTML but has no <input>, <select> or <textarea> fields")
    return _from_names(text)


def _check(fields: list[FormField], kind: str) -> list[FormField]:
    if not fields:
        raise ConfigError(f"the {kind} has no fields to fill")
    if len(fields) > MAX_FIELDS:
        raise ConfigError(f"the {kind} has {len(fields)} fields; at most {MAX_FIELDS} can be filled at once")
    seen: set[str] = set()
    out = []
    for f in fields:
        if len(f.name) > _MAX_NAME:
            raise ConfigError(f"field name too long ({len(f.name)} characters, at most {_MAX_NAME}): {f.name[:40]}…")
        if f.name not in seen:     # radio buttons and repeated names are one field
            seen.add(f.name)
            out.append(f)
    return out


# -- JSON -----------------------------------------------------------------------------------------------

def _from_json(data: Any) -> Form:
    if isinstance(data, list):
        fields = []
        for i, item in enumerate(data):
            if isinstance(item, str) and item.strip():
                fields.append(FormField(name=item.strip(), label=_humane(item.strip())))
            elif isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"].strip():
                schema = item.get("schema") if isinstance(item.get("schema"), Mapping) else {}
                fields.append(FormField(name=item["name"].strip(), label=str(item.get("label") or _humane(item["name"])),
                                        description=str(item.get("description") or ""),
                                        autocomplete=str(item.get("autocomplete") or ""), schema=schema,
                                        options=_options(schema)))
            else:
                raise ConfigError(f"item {i} of the field list is not a field name (a non-empty string or an object "
                                  "with a 'name')")
        return Form("list", tuple(_check(fields, "field list")))
    if not isinstance(data, Mapping):
        raise ConfigError("a JSON form must be a JSON Schema object (with 'properties') or an array of field names")
    if isinstance(data.get("fields"), list):
        return Form("list", _from_json(data["fields"]).fields)
    if not isinstance(data.get("properties"), Mapping):
        raise ConfigError("this JSON object is not a form: a JSON Schema needs an object 'properties' mapping each "
                          "field name to its schema (or give an array of field names)")
    _check_schema(data)
    fields = _properties(data, data, prefix="", parent_label="", depth=0)
    return Form("json_schema", tuple(_check(fields, "JSON Schema")), schema=data)


def _check_schema(schema: Mapping[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"the JSON Schema is invalid at {where}: {e.message}") from None


def _resolve(node: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local $refs ("#/$defs/Address"); anything else is taken as is."""
    for _ in range(20):
        if not isinstance(node, Mapping) or not isinstance(node.get("$ref"), str):
            break
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ConfigError(f"only local $refs ('#/...') are supported in a form, not {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ConfigError(f"the $ref {ref!r} points nowhere in the schema")
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    else:
        raise ConfigError("the schema's $refs go round in a circle; point each $ref at a real definition")
    return node if isinstance(node, Mapping) else {}


def _properties(node: Mapping[str, Any], root: Mapping[str, Any], prefix: str, parent_label: str,
                depth: int) -> list[FormField]:
    fields: list[FormField] = []
    for name, raw in node.get("properties", {}).items():
        prop = {"not": {}} if raw is False else _resolve(raw, root)     # `false` allows no value at all
        label = str(prop.get("title") or _humane(name))
        path = f"{prefix}{name}"
        if prop.get("type") == "object" and isinstance(prop.get("properties"), Mapping) and depth < 4:
            # nested objects: "emergency_contact" + "phone" → label "Emergency contact phone"
            fields += _properties(prop, root, f"{path}.", f"{parent_label} {label}".strip(), depth + 1)
            continue
        # definitions travel with the field, so that $refs inside it still resolve when its value is validated
        defs = {k: root[k] for k in ("$defs", "definitions") if isinstance(root.get(k), Mapping) and k not in prop}
        fields.append(FormField(name=path, label=f"{parent_label} {label}".strip(),
                                description=str(prop.get("description") or ""), schema={**prop, **defs},
                                options=_options(prop)))
    return fields


def _options(schema: Mapping[str, Any]) -> tuple[tuple[Any, str], ...]:
    if isinstance(schema.get("enum"), list):
        return tuple((v, str(v)) for v in schema["enum"] if v is not None)
    for key in ("oneOf", "anyOf"):
        alts = schema.get(key)
        if isinstance(alts, list) and alts and all(isinstance(a, Mapping) and "const" in a for a in alts):
            return tuple((a["const"], str(a.get("title") or a["const"])) for a in alts)
    items = schema.get("items")
    if schema.get("type") == "array" and isinstance(items, Mapping):
        return _options(items)
    return ()


def _humane(name: str) -> str:
    """`date_of_birth` → "date of birth"; "Date of birth" stays."""
    return " ".join(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").split())


# -- plain lists ----------------------------------------------------------------------------------------

def _from_names(text: str) -> Form:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    items = lines if len(lines) > 1 else [p.strip() for p in lines[0].split(",")] if lines else []
    names = [re.sub(r"^(?:[-*•]|\d+[.)])\s+", "", i).strip().rstrip(":").strip() for i in items]
    names = [n for n in names if n]
    for n in names:
        if len(n) > 120 or len(n.split()) > 12:
            raise ConfigError(f"this does not look like a list of field names (a line of {len(n.split())} words: "
                              f"{n[:50]!r}…); give one field name a line, a JSON Schema or an HTML form")
    return Form("list", tuple(_check([FormField(name=n, label=_humane(n)) for n in names], "field list")))


# -- HTML -----------------------------------------------------------------------------------------------

def _from_html(text: str) -> Form:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    labels_for: dict[str, str] = {}
    for lab in soup.find_all("label"):
        target = lab.get("for")
        if target:
            labels_for[str(target)] = _text(lab).rstrip(":*").strip()
    fields: list[FormField] = []
    radios: dict[str, list[Any]] = {}
    for el in soup.find_all(["input", "select", "textarea"]):
        kind = (el.get("type") or "text").lower() if el.name == "input" else el.name
        if kind in _SKIP_INPUTS:
            continue
        name = str(el.get("name") or el.get("id") or "").strip()
        if not name:
            continue
        if kind == "radio":
            radios.setdefault(name, []).append(el)
            if len(radios[name]) > 1:
                continue
        fields.append(_html_field(el, kind, name, labels_for))
    # a radio group's options are all its buttons, labelled by their own labels
    out = []
    for f in fields:
        group = radios.get(f.name)
        if group:
            opts = tuple((str(r.get("value") or "on"), _own_label(r, labels_for) or str(r.get("value") or ""))
                         for r in group)
            legend = _legend(group[0])
            f = FormField(name=f.name, label=legend or f.label, description=f.description, autocomplete=f.autocomplete,
                          schema={"type": "string", "enum": [v for v, _ in opts]}, options=opts)
        out.append(f)
    return Form("html", tuple(_check(out, "HTML form")))


def _html_field(el: Any, kind: str, name: str, labels_for: dict[str, str]) -> FormField:
    label = labels_for.get(str(el.get("id") or "")) or _wrapping_label(el) or str(el.get("aria-label") or "") \
        or str(el.get("title") or "")
    schema: dict[str, Any] = {"type": "string"}
    options: tuple[tuple[Any, str], ...] = ()
    if kind == "email":
        schema["format"] = "email"
    elif kind == "date":
        schema["format"] = "date"
    elif kind == "datetime-local":
        schema["pattern"] = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?$"
    elif kind == "month":
        schema["pattern"] = r"^\d{4}-\d{2}$"
    elif kind == "url":
        schema["format"] = "uri"
    elif kind in ("number", "range"):
        schema = {"type": "number"}
        for attr, key in (("min", "minimum"), ("max", "maximum")):
            if re.fullmatch(r"-?\d+(?:\.\d+)?", str(el.get(attr) or "")):
                schema[key] = float(el.get(attr))
    elif kind == "checkbox":
        schema = {"type": "boolean"}
    elif kind == "select":
        options = tuple((str(o.get("value") if o.get("value") is not None else _text(o)), _text(o))
                        for o in el.find_all("option") if (o.get("value") if o.get("value") is not None else _text(o)))
        if options:
            schema["enum"] = [v for v, _ in options]
        if el.has_attr("multiple"):
            schema = {"type": "array", "items": schema}
    if schema.get("type") == "string":
        if el.get("pattern"):
            schema["pattern"] = f"^(?:{el.get('pattern')})$"      # HTML patterns match the whole value
        for attr, key in (("maxlength", "maxLength"), ("minlength", "minLength")):
            if str(el.get(attr) or "").isdigit():
                schema[key] = int(el.get(attr))
    return FormField(name=name, label=label, description=str(el.get("title") or "") if label != el.get("title") else "",
                     autocomplete=_autocomplete(str(el.get("autocomplete") or "")),
                     placeholder=str(el.get("placeholder") or ""), schema=schema, options=options)


def _autocomplete(value: str) -> str:
    from .concepts import _AC_QUALIFIERS

    words = [w for w in value.lower().split() if not w.startswith("section-")]
    kept = [w for w in words if w not in _AC_QUALIFIERS]
    if not kept:
        return ""
    i = words.index(kept[-1])
    # "home tel" is a landline and "work email" the employer's address: the qualifier changes the concept
    q = words[i - 1] if i else ""
    if (q == "home" and kept[-1].startswith("tel")) or (q in ("work", "fax", "pager") and kept[-1].startswith(("tel", "email"))):
        return f"{words[i - 1]} {kept[-1]}"
    return kept[-1]


def _text(el: Any) -> str:
    return " ".join(el.get_text(" ", strip=True).split())


def _wrapping_label(el: Any) -> str:
    lab = el.find_parent("label")
    if lab is None:
        return ""
    parts = [s for s in lab.find_all(string=True) if s.parent.name not in ("option", "select", "textarea")]
    return " ".join(" ".join(parts).split()).rstrip(":*").strip()


def _own_label(el: Any, labels_for: dict[str, str]) -> str:
    return labels_for.get(str(el.get("id") or "")) or _wrapping_label(el)


def _legend(el: Any) -> str:
    fs = el.find_parent("fieldset")
    leg = fs.find("legend") if fs is not None else None
    return _text(leg) if leg is not None else ""
