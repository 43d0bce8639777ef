"""From text found in a memory to a value a form accepts: read by kind, normalized, then validated.

`read(kind, text)` reads what a concept's kind allows and nothing else (a phone number needs 7-15 digits, a
name needs capitalized words, a date needs a written year), so a sentence that merely follows a label is
rejected instead of being copied into a form. `fit(value, field)` then shapes the value for the field —
ISO 8601 dates (or the date layout its `pattern` asks for), phone numbers in international form, emails
lowercased, a choice among a select's options — and validates it against the field's JSON Schema with
format checking. Both return (value, None) or (None, why).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from ..text.dates import find_dates, parse_date
from ..text.words import PARTICLE
from .forms import FormField

__all__ = ["read", "fit", "norm_value", "split_address", "split_name", "calling_code"]

_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_EMAIL_IN = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_UP, _LOW = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿĀ-ž"
_WORD = rf"[{_UP}][{_UP}{_LOW}'’.-]*"
_NAME = re.compile(rf"^(?:{PARTICLE}[ ]){{0,3}}{_WORD}(?:[ ](?:{PARTICLE}[ ]){{0,3}}{_WORD}){{0,4}}$")   # "van den", "de la", "von der"
_PLACE = re.compile(rf"^{_WORD}(?:[ ](?:{PARTICLE}[ ]|of[ ]){{0,2}}{_WORD}){{0,3}}(?:, {_WORD}(?:[ ]{_WORD}){{0,2}})?$")
_POSTCODE = r"(?:\d{4}-\d{3}|\d{4}[ ]?[A-Z]{2}(?![A-Za-z])|\d{5}(?:-\d{4})?|\d{3}[ ]?\d{2}|\d{4}|\d{2}-\d{3}|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}|[A-Z]\d[A-Z][ ]?\d[A-Z]\d)"
_TITLES = r"(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bProf)(?<!\bSt)"   # "Dr. Paulo Teixeira" is one value
_SIZES = ("XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL")
_YEAR_RANGE = re.compile(r"[,;]?\s*\(?(?:19|20)\d\d\s*[-–—]\s*(?:(?:19|20)\d\d|present|now|today)\)?\.?$", re.I)

# International calling codes, to write a national number in international form when the person's country is
# known. Only countries whose national numbers drop a leading trunk "0" (or have none) are listed.
_CALLING = {"portugal": "351", "spain": "34", "france": "33", "germany": "49", "italy": "39", "ireland": "353",
            "united kingdom": "44", "uk": "44", "england": "44", "scotland": "44", "wales": "44",
            "netherlands": "31", "belgium": "32", "luxembourg": "352", "sweden": "46", "norway": "47",
            "denmark": "45", "finland": "358", "iceland": "354", "poland": "48", "austria": "43",
            "switzerland": "41", "czech republic": "420", "czechia": "420", "slovakia": "421", "hungary": "36",
            "romania": "40", "bulgaria": "359", "greece": "30", "croatia": "385", "slovenia": "386",
            "estonia": "372", "latvia": "371", "lithuania": "370", "turkey": "90", "united states": "1",
            "usa": "1", "us": "1", "canada": "1", "mexico": "52", "brazil": "55", "argentina": "54",
            "chile": "56", "colombia": "57", "australia": "61", "new zealand": "64", "japan": "81",
            "south korea": "82", "china": "86", "india": "91", "singapore": "65", "south africa": "27",
            "nigeria": "234", "kenya": "254", "ghana": "233", "egypt": "20", "morocco": "212", "israel": "972",
            "cape verde": "238", "angola": "244", "mozambique": "258"}


def calling_code(country: str | None) -> str | None:
    return _CALLING.get(norm_value(country or ""))


def norm_value(text: Any) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form, for comparing values."""
    s = unicodedata.normalize("NFKD", str(text))
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w@+/.-]+", " ", s).replace("_", " ").split()).strip(" .")


def _clean(text: str) -> str:
    s = " ".join(str(text).split()).strip(" \t\"“”'‘’`*")
    return s.rstrip(" .;,:").strip()


def _head(text: str) -> str:
    """Text before a parenthesis, dash-comment or semicolon: "vegetarian (no meat)" → "vegetarian"."""
    s = re.split(r"\s*\(|\s+[-–—]\s+|;", _clean(text), maxsplit=1)[0]
    return _clean(s)


def _first_part(text: str) -> str:
    return _clean(re.split(r",\s+", _head(text), maxsplit=1)[0])


# -- reading by kind -------------------------------------------------------------------------------------

def read(kind: str, text: str) -> tuple[Any, str | None]:
    """The value of `kind` written in `text`, or why there is none."""
    fn = _READERS.get(kind, _read_text)
    try:
        return fn(text)
    except (ValueError, TypeError):
        return None, f"not a {kind}"


def _read_person(text: str) -> tuple[Any, str | None]:
    s = _first_part(text)
    s = re.sub(r"^(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?\s+", "", s)
    if not _NAME.match(s) or len(s) > 80:
        return None, f"{s[:40]!r} is not a name"
    return s, None


def _read_email(text: str) -> tuple[Any, str | None]:
    found = _EMAIL_IN.findall(text)
    if len(set(f.lower() for f in found)) != 1:
        return None, "no single email address"
    value = found[0].lower().strip(".")
    return (value, None) if _EMAIL.match(value) else (None, f"{value!r} is not a valid email")


def _read_phone(text: str) -> tuple[Any, str | None]:
    m = re.search(r"(?:\+|\b00)?\(?\d[\d ()./-]{5,22}\d", text)
    if not m:
        return None, "no phone number"
    raw = m.group(0).strip()
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("00"):
        raw, digits = "+" + raw[2:], digits[2:]
    if not 7 <= len(digits) <= 15:
        return None, f"{raw!r} has {len(digits)} digits (a phone number has 7-15)"
    if re.fullmatch(r"(?:19|20)\d\d[-./]\d\d?[-./]\d\d?|\d\d?[-./]\d\d?[-./](?:19|20)\d\d", raw):
        return None, f"{raw!r} is a date"
    return ("+" + digits if raw.startswith("+") else digits), None


def _read_date(text: str) -> tuple[Any, str | None]:
    s = _clean(re.sub(r"\s*\(.*?\)", "", text))
    num = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-]((?:19|20)\d\d)", s)
    if num:
        # 17/03/1988 is day first, 03/17/1988 month first; 03/04/1988 could be either, so it is not read
        a, b, y = (int(g) for g in num.groups())
        if a > 12 >= b:
            return date(y, b, a).isoformat(), None
        if b > 12 >= a:
            return date(y, a, b).isoformat(), None
        if a == b:
            return date(y, a, b).isoformat(), None
        return None, f"{s!r} could be day/month or month/day"
    dt = parse_date(s)
    if dt is None:
        found = find_dates(s)
        # the date must be (nearly) all the text: "8 September 2025", "Monday, 8 September 2025"
        if len(found) != 1 or len(s) - (found[0].end - found[0].start) > 12:
            return None, f"{s[:40]!r} is not a date"
        dt_day = found[0].day
    else:
        dt_day = dt.date()
    if not re.search(r"(?:19|20)\d\d", s):
        return None, f"{s[:40]!r} has no year"
    return dt_day.isoformat(), None


def _read_address(text: str) -> tuple[Any, str | None]:
    s = _clean(text)
    if len(s) > 160 or not re.search(r"\d", s) or not re.search(rf"[{_UP}{_LOW}]{{3}}", s):
        return None, f"{s[:40]!r} is not an address"
    return s, None


def _read_postcode(text: str) -> tuple[Any, str | None]:
    s = _clean(text).upper()
    return (s, None) if re.fullmatch(_POSTCODE, s) else (None, f"{s!r} is not a postcode")


def _read_place(text: str) -> tuple[Any, str | None]:
    s = _head(text)
    return (s, None) if _PLACE.match(s) and len(s) <= 80 else (None, f"{s[:40]!r} is not a place")


def _read_city(text: str) -> tuple[Any, str | None]:
    s = _first_part(text)
    return (s, None) if _PLACE.match(s) and len(s) <= 60 else (None, f"{s[:40]!r} is not a city")


def _read_nationality(text: str) -> tuple[Any, str | None]:
    s = _first_part(text)
    ok = re.fullmatch(rf"{_WORD}(?:[ /]{_WORD}){{0,2}}", s) and len(s) <= 40
    return (s, None) if ok else (None, f"{s[:40]!r} is not a nationality")


def _read_org(text: str) -> tuple[Any, str | None]:
    s = _first_part(text)
    ok = re.match(rf"[{_UP}0-9]", s) and len(s.split()) <= 8 and len(s) <= 80
    if ok and re.search(r"\s[A-Z]\.?$", s):
        return None, f"{s[:40]!r} looks cut off (an abbreviation such as B.V. or S.A.)"
    return (s, None) if ok else (None, f"{s[:40]!r} is not an organization name")


def _read_title(text: str) -> tuple[Any, str | None]:
    s = _first_part(text)
    ok = re.fullmatch(rf"[{_UP}{_LOW}][{_UP}{_LOW}&/' -]*", s) and len(s.split()) <= 6
    return (s, None) if ok else (None, f"{s[:40]!r} is not a job title")


def _read_number(text: str) -> tuple[Any, str | None]:
    s = _clean(re.split(r",\s+|;|\(", text, maxsplit=1)[0])
    rest = re.sub(r"(?i)\b(?:eur|euros?|usd|dollars?|gbp|pounds?|sek|kr|chf|gross|net|per|a|an|each|annual|annually|"
                  r"yearly|year|yr|month|monthly|pa|p\.a\.|per annum|annum|approx(?:imately)?|about)\b|[€$£/.]", " ", s)
    nums = re.findall(r"\d[\d,.' ]*\d|\d", rest)
    leftover = re.sub(r"\d[\d,.' ]*\d|\d", "", rest).strip(" -")
    if len(nums) != 1 or leftover:
        return None, f"{s[:40]!r} is not a single amount"
    return _number(nums[0]), None


def _number(raw: str) -> int | float:
    s = raw.replace(" ", "").replace("'", "")
    if "," in s and "." in s:
        dec = "," if s.rfind(",") > s.rfind(".") else "."
        s = s.replace("." if dec == "," else ",", "").replace(",", ".")
    elif "," in s or "." in s:
        sep = "," if "," in s else "."
        parts = s.split(sep)
        s = "".join(parts) if all(len(p) == 3 for p in parts[1:]) else s.replace(",", ".")
    value = float(s)
    return int(value) if value.is_integer() else value


def _read_list(text: str) -> tuple[Any, str | None]:
    if isinstance(text, list):
        items = [_head(str(t)) for t in text]
    else:
        items = [_head(p) for p in re.split(r",\s*|;\s*|\s+and\s+|\s*\n\s*", _clean(re.sub(r"\([^)]*\)", "", text)))]
    items = [i for i in items if i and len(i.split()) <= 5]
    if not items:
        return None, "no items"
    return items, None


def _read_diet(text: str) -> tuple[Any, str | None]:
    s = _head(text).lower()
    ok = re.fullmatch(r"[a-z][a-z -]{1,40}", s) and len(s.split()) <= 4
    return (s, None) if ok else (None, f"{s[:40]!r} is not a diet")


def _read_size(text: str) -> tuple[Any, str | None]:
    s = _head(text).upper().replace(" ", "")
    return (s, None) if s in _SIZES or re.fullmatch(r"\d{1,2}", s) else (None, f"{s[:20]!r} is not a size")


def _read_pronouns(text: str) -> tuple[Any, str | None]:
    s = _head(text).lower().replace(" ", "")
    return (s, None) if re.fullmatch(r"[a-z]{1,6}(?:/[a-z]{1,7}){1,2}", s) else (None, f"{s!r} are not pronouns")


def _read_relation(text: str) -> tuple[Any, str | None]:
    s = _head(text).lower()
    return (s, None) if re.fullmatch(r"[a-z][a-z -]{1,30}", s) and len(s.split()) <= 3 else (None, f"{s!r} is not a relation")


def _read_id(text: str) -> tuple[Any, str | None]:
    s = _head(text)
    ok = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ./-]{2,40}", s) and re.search(r"\d", s) and len(s.split()) <= 6
    # an identifier is codes, not words: "applied for on 21/01/2026", "to follow", a date are not one
    words = [w for w in re.split(r"[ ./-]+", _clean(text)) if w]
    prose = any(re.fullmatch(r"[a-z]{2,}|[A-Z][a-z]{2,}", w) for w in words) or find_dates(s) or \
        re.search(r"\b\d\d?[./-]\d\d?[./-](?:19|20)?\d\d\b|\s[-–—]\s|[,;:!?]", _clean(text))
    return (s, None) if ok and not prose else (None, f"{_clean(text)[:40]!r} is not an identifier")


def _read_text(text: str) -> tuple[Any, str | None]:
    s = _clean(_YEAR_RANGE.sub("", _clean(text)))
    s = re.split(rf"(?<=[a-z0-9)]){_TITLES}\.\s+(?=[A-Z])", s, maxsplit=1)[0]
    if not s or len(s) > 200:
        return None, "no short value"
    return _clean(_YEAR_RANGE.sub("", s)), None


_READERS = {"person": _read_person, "email": _read_email, "phone": _read_phone, "date": _read_date,
            "address": _read_address, "street": _read_address, "postcode": _read_postcode, "place": _read_place,
            "city": _read_city, "region": _read_city, "country": _read_city, "nationality": _read_nationality,
            "org": _read_org, "title": _read_title, "number": _read_number, "list": _read_list, "diet": _read_diet,
            "size": _read_size, "pronouns": _read_pronouns, "relation": _read_relation, "id": _read_id,
            "text": _read_text}


# -- parts of values -----------------------------------------------------------------------------------

def split_address(address: str) -> dict[str, str]:
    """Street, postcode, city, region and country of a one-line address, where its layout is clear:
    "street, [more,] POSTCODE City[, Country]" or "street, City, ST 12345[, Country]"; else {}."""
    parts = [p.strip() for p in address.split(",") if p.strip()]
    for i, part in enumerate(parts):
        m = re.fullmatch(rf"(?P<pc>{_POSTCODE})\s+(?P<city>[^\d,]+)", part) or \
            re.fullmatch(rf"(?P<city>[^\d,]+?)\s+(?P<pc>{_POSTCODE})", part)
        us = re.fullmatch(r"(?P<region>[A-Z]{2})\s+(?P<pc>\d{5}(?:-\d{4})?)", part)
        if i == 0 or not (m or us):
            continue
        out: dict[str, str] = {}
        if us and i >= 2:
            out = {"street": ", ".join(parts[:i - 1]), "city": parts[i - 1], "region": us["region"],
                   "postcode": us["pc"]}
        elif m:
            out = {"street": ", ".join(parts[:i]), "postcode": m["pc"], "city": m["city"].strip()}
        if not out:
            continue
        if len(parts) == i + 2 and re.fullmatch(rf"{_WORD}(?: {_WORD}){{0,2}}", parts[i + 1]):
            out["country"] = parts[i + 1]
        elif len(parts) > i + 1:
            continue
        return out
    return {}


def split_name(full: str) -> tuple[str, str] | None:
    """(given, family) of "Given Family-Name": first word vs the rest; None for one-word names."""
    words = full.split()
    particle = next((i for i, w in enumerate(words) if i and re.fullmatch(PARTICLE, w)), None)
    if particle is not None:            # "Ana Sofia de la Cruz": the surname starts at its particle
        return " ".join(words[:particle]), " ".join(words[particle:])
    # "Ana Sofia Cruz" could be two given names or two surnames: only a two-word name splits plainly
    return (words[0], words[1]) if len(words) == 2 else None


# -- shaping for a field ---------------------------------------------------------------------------------

def fit(value: Any, kind: str, field: FormField, *, country: str | None = None) -> tuple[Any, str | None]:
    """`value` (as read) shaped for `field` and validated against its schema; (None, why) when it cannot be."""
    schema = dict(field.schema)
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types} if types else set()
    items_schema = schema.get("items") if isinstance(schema.get("items"), dict) else {}
    if "array" in types or (not types and kind == "list" and field.options == ()):
        values = value if isinstance(value, list) else [value]
        out = []
        for v in values:
            shaped, why = _shape(v, kind, items_schema, field.options, country)
            if why:
                return None, why
            out.append(shaped)
        candidates = [out] if "array" in types else [", ".join(map(str, out))]
    else:
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        shaped, why = _shape(value, kind, schema, field.options, country)
        if why:
            return None, why
        candidates = shaped if isinstance(shaped, _Alternatives) else [shaped]
    errors = []
    for c in candidates:
        why = _validate(c, schema)
        if why is None:
            return c, None
        errors.append(why)
    return None, errors[0]


class _Alternatives(list):
    """Several renderings of one value (ISO date, then other layouts); the first the schema accepts wins."""


def _shape(value: Any, kind: str, schema: dict, options: tuple, country: str | None) -> tuple[Any, str | None]:
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types} if types else set()
    if options:
        chosen = choose_option(value, options)
        return (chosen, None) if chosen is not None else (None, f"{value!r} is none of the allowed values")
    if types & {"number", "integer"}:
        if isinstance(value, (int, float)):
            return value, None
        parsed, why = _read_number(str(value))
        return parsed, why
    if "boolean" in types:
        return None, "yes/no fields are not filled from memory"
    if kind == "date":
        d = date.fromisoformat(str(value))
        fmt = schema.get("format")
        if fmt == "date-time":
            return _Alternatives([f"{d.isoformat()}T00:00:00Z"]), None
        return _Alternatives([d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%m/%d/%Y"), d.strftime("%d.%m.%Y"),
                              d.strftime("%Y/%m/%d")] if schema.get("pattern") else [d.isoformat()]), None
    if kind in ("phone",):
        s = str(value)
        if not s.startswith("+"):
            code = calling_code(country)
            if code:
                s = f"+{code}{s.lstrip('0')}"
        digits = s.lstrip("+")
        return _Alternatives([s, digits, f"+{digits}" if not s.startswith("+") else s]), None
    if kind == "email":
        return str(value).lower(), None
    return value, None


def choose_option(value: Any, options: tuple[tuple[Any, str], ...]) -> Any:
    """The option whose value or text is `value`, else the one option whose text the value contains."""
    v = norm_value(value)
    exact = [o for o in options if norm_value(o[0]) == v or norm_value(o[1]) == v]
    if len({str(o[0]) for o in exact}) == 1:
        return exact[0][0]
    inside = [o for o in options if norm_value(o[1]) and re.search(rf"(?<!\w){re.escape(norm_value(o[1]))}(?!\w)", v)]
    if len({str(o[0]) for o in inside}) == 1:
        return inside[0][0]
    return None


def _validate(value: Any, schema: dict) -> str | None:
    import jsonschema
    from referencing.exceptions import Unresolvable

    if not schema:
        return None
    try:
        # the form's schema was checked once when it was read; validating without re-checking it is 20x faster
        validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except (jsonschema.SchemaError, Unresolvable, re.error, TypeError) as e:
        return f"the field's schema is invalid: {getattr(e, 'message', e)}"
    return None if error is None else f"{value!r} fails the field's schema: {error.message}"
