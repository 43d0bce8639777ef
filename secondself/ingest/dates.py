"""Lenient date parsing for everything readers meet: front matter, e-mail headers, chat exports, PDFs.

Contract: `parse_date`, `date_in_heading` and `find_dates` never raise; they return a timezone-aware `datetime`
(naive input is taken as UTC) or None. Month names are English and matched without `strptime`, so
results do not depend on the process locale.

Every date a reader keeps passes `in_range` once, here: a date within a day of `datetime`'s limits
("9999-12-31T23:59:59-14:00" is the year 10000 in UTC) is rejected as unknown, so converting it to UTC or to any
other time zone later can never overflow. Readers then fall back to the file's own date.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import NamedTuple

__all__ = ["parse_date", "date_in_heading", "find_dates", "in_range", "from_timestamp", "FoundDate"]

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH = (
    r"(?P<m>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?P<d>\d{1,2})(?:st|nd|rd|th)?\.?"
_YEAR = r"(?P<y>\d{4})"
_TIME = r"(?:(?:[ T]|,\s*|\s+at\s+)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s*(?P<ap>[ap]\.?m\.?)?)?"
_WEEKDAY = r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?"

# Date patterns without anchors; `_FULL` anchors them (plus weekday/time) for parse_date, while
# date_in_heading searches for them anywhere in a heading.
_DATE_PATTERNS = [
    re.compile(r"(?<!\d)(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?!\d)"),
    re.compile(rf"(?<!\d){_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}(?!\d)", re.I),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}(?!\d)", re.I),
    re.compile(r"(?<!\d)(?P<y>\d{4})[/.](?P<m>\d{1,2})[/.](?P<d>\d{1,2})(?!\d)"),
]
_FULL = [re.compile(rf"^{_WEEKDAY}{p.pattern}{_TIME}$", p.flags | re.I) for p in _DATE_PATTERNS]
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_PDF_DATE = re.compile(
    r"^D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?\s*(?:([Zz+-])(?:(\d{2})'?(\d{2})?'?)?)?"
)
# Seconds beyond this are taken as milliseconds (1e11 s is the year 5138; JS exports use ms).
_MS_THRESHOLD = 1e11
# A day inside datetime's range: any UTC offset (always under 24 h) keeps a date between these representable.
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def in_range(value: datetime | None) -> datetime | None:
    """`value` (made aware: naive is UTC) if it can be shown in every time zone, else None. Never raises."""
    if value is None:
        return None
    value = _aware(value)
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return value if _EARLIEST <= utc <= _LATEST else None


def from_timestamp(seconds: float) -> datetime | None:
    """A unix time in seconds (a file's modification time) as an aware UTC datetime; None if out of range."""
    try:
        return in_range(datetime.fromtimestamp(seconds, tz=UTC))
    except (ValueError, OverflowError, OSError):
        return None


def parse_date(value: str | int | float | datetime | date | None) -> datetime | None:
    """Parse ISO 8601, RFC 2822, unix seconds (or ms), PDF dates and common written forms.

    Returns an aware datetime (naive → UTC) or None if unparseable; never raises.
    """
    try:
        return in_range(_parse(value))
    except (ValueError, TypeError, OverflowError, OSError, IndexError):
        return None


def date_in_heading(text: str) -> datetime | None:
    """The date a heading names ("## 2025-03-14", "## Monday, 14 March 2025", "Trip, 2025/03/14").

    Only full dates (day, month and year) count; a bare number is never read as a timestamp.
    """
    try:
        cleaned = text.strip().strip("#").strip().strip("*_").strip()
        if not cleaned or _NUMBER.match(cleaned):
            return None
        for pattern in _DATE_PATTERNS:
            m = pattern.search(cleaned)
            if m:
                found = in_range(_from_match(m))
                if found is not None:
                    return found
        return None
    except (ValueError, TypeError, OverflowError):
        return None


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _parse(value: object) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float):
        return _from_timestamp(float(value))
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not s:
        return None
    if _NUMBER.match(s):
        # "20250314" is ISO basic format; long digit runs are unix timestamps; "2025" alone is no date.
        if len(s) == 8:
            return _aware(datetime.fromisoformat(s))
        return _from_timestamp(float(s)) if len(s.split(".")[0].lstrip("-")) >= 9 else None
    if s.startswith("D:"):
        return _from_pdf(s)
    try:
        return _aware(datetime.fromisoformat(s))
    except ValueError:
        pass
    for pattern in _FULL:
        m = pattern.match(s)
        if m:
            return _from_match(m)
    if re.search(r"\d{1,2}:\d{2}", s):  # RFC 2822 always has a time; without one it guesses too freely
        try:
            return _aware(parsedate_to_datetime(s))
        except (ValueError, TypeError, IndexError):
            pass
    return None


def _from_timestamp(seconds: float) -> datetime | None:
    if abs(seconds) > _MS_THRESHOLD:
        seconds /= 1000.0
    return datetime.fromtimestamp(seconds, tz=UTC)


def _from_match(m: re.Match[str]) -> datetime | None:
    groups = m.groupdict()
    month_raw = groups["m"]
    month = int(month_raw) if month_raw.isdigit() else _MONTHS[month_raw.lower()[:3]]
    hour = int(groups.get("H") or 0)
    ap = (groups.get("ap") or "").lower()
    if ap.startswith("p") and hour < 12:
        hour += 12
    elif ap.startswith("a") and hour == 12:
        hour = 0
    try:
        return datetime(
            int(groups["y"]), month, int(groups["d"]),
            hour, int(groups.get("M") or 0), int(groups.get("S") or 0), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:  # 31 February and the like
        return None


def _from_pdf(s: str) -> datetime | None:
    m = _PDF_DATE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec, sign, tzh, tzm = m.groups()
    tz = UTC
    if sign in ("+", "-") and tzh:
        offset = timedelta(hours=int(tzh), minutes=int(tzm or 0))
        tz = timezone(offset if sign == "+" else -offset)
    return datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(sec or 0), tzinfo=tz)


class FoundDate(NamedTuple):
    """A calendar date written in a text, at text[start:end]. `year_given` is False when it was inferred."""

    start: int
    end: int
    day: date
    year_given: bool = True


# Without a year, the month must be capitalized: lowercase "may" and "march" are usually not months.
_MONTH_CAP = (
    r"(?P<m>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_WEEKDAY_I = rf"(?i:{_WEEKDAY})"
_WRITTEN = [re.compile(rf"(?<![\w-]){_WEEKDAY_I}(?i:{p.pattern})", p.flags) for p in _DATE_PATTERNS]
_YEARLESS = [
    re.compile(rf"(?<![\w-]){_WEEKDAY_I}(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH_CAP}(?![\w-])"),
    re.compile(rf"(?<![\w-]){_WEEKDAY_I}{_MONTH_CAP}\s+(?:the\s+)?{_DAY}(?![\w:-])"),
]


def find_dates(text: str, reference: date | datetime | None = None) -> list[FoundDate]:
    """Every calendar date written in `text` ("1 March 2021", "Sunday, 26 October", "2025-07-01"), in order.

    A full date (day, month, year) is always found. A day and month without a year ("1 July", "July 1st",
    "the 12th of July") is found only with a `reference` date, and takes the year that puts it nearest the
    reference, days after it counting double (written on 2026-01-03, "30 December" is 2025-12-30; written on
    2025-12-31, "1 July" is 2025-07-01). A weekday before a date is part of its span. Month-only or
    year-only mentions ("in March", "2021") are not dates.
    """
    try:
        found: list[FoundDate] = []
        taken: list[tuple[int, int]] = []
        for pattern in _WRITTEN:
            for m in pattern.finditer(text):
                got = _from_match(m)
                if got is not None and not _overlaps(m.span(), taken):
                    found.append(FoundDate(m.start(), m.end(), got.date()))
                    taken.append(m.span())
        if reference is not None:
            ref = reference.date() if isinstance(reference, datetime) else reference
            for pattern in _YEARLESS:
                for m in pattern.finditer(text):
                    if _overlaps(m.span(), taken):
                        continue
                    day = _nearest_year(int(m.group("d")), _MONTHS[m.group("m").lower()[:3]], ref)
                    if day is not None:
                        found.append(FoundDate(m.start(), m.end(), day, year_given=False))
                        taken.append(m.span())
        return sorted(found)
    except (ValueError, TypeError, OverflowError, KeyError):
        return []


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def _nearest_year(day: int, month: int, ref: date) -> date | None:
    options = []
    for year in (ref.year - 1, ref.year, ref.year + 1):
        try:
            options.append(date(year, month, day))
        except ValueError:  # 29 February, 31 April
            continue
    # Days after the reference count double: a note looks back more often than it plans ahead.
    return min(options, key=lambda d: (d - ref).days * 2 if d > ref else (ref - d).days) if options else None
