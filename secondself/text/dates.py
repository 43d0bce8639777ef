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


# -- relative dates ("yesterday", "on Monday", "two weeks ago"), resolved against the day a text was written --

__all__ += ["RelativeDate", "find_relative_dates", "annotate_relative_dates"]


class RelativeDate(NamedTuple):
    """A relative date written in a text, at text[start:end], resolved against the day the text was written.

    `first`..`last` is the span it names (one day, a week, a weekend, a month, a season, a year); `precision` is
    "day", "weekend", "week", "month", "season" or "year"; `label` is how it is written out ("26 June 2025",
    "the week of 18 August 2025", "July 2025", "2024")."""

    start: int
    end: int
    first: date
    last: date
    precision: str
    label: str

    @property
    def day(self) -> date | None:
        """The one day it names (None when it names a longer span)."""
        return self.first if self.precision == "day" else None


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WD = r"(?P<wd>monday|tuesday|wednesday|thursday|friday|saturday|sunday)"  # no "sat", "sun": words too
_NOT_WORD = r"(?![\w'’-])"  # "Fridays", "Friday's meeting", "Monday-Friday" are no dates
_NOT_HABIT = r"(?!\s+(?:mornings|afternoons|evenings|nights)\b)"  # "rehearses on Thursday evenings": every week
_NOT_THE = r"(?<![Tt]he )(?<![\w-])"  # "the last night of the trip", "the next year" are not anchored
_COUNT = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_N = r"(?P<n>\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_UNIT = r"(?P<unit>day|week|month|year)s?"
_SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
_DAYWORDS = {"the day before yesterday": -2, "the day after tomorrow": 2, "yesterday": -1, "last night": -1,
             "today": 0, "tonight": 0, "this morning": 0, "this afternoon": 0, "this evening": 0, "tomorrow": 1}
# One pattern per form, tried in this order; a span found by an earlier one is never matched again.
_RELATIVE_FORMS = [
    ("dayword", re.compile(_NOT_THE + r"(?:" + "|".join(_DAYWORDS) + r")" + _NOT_WORD, re.I)),
    ("weekday", re.compile(rf"{_NOT_THE}(?P<rel>last|past|previous|next|this(?:\s+coming)?|coming)\s+{_WD}{_NOT_WORD}",
                           re.I)),
    ("weekday", re.compile(rf"(?<![\w-])(?P<prep>on|since|by|until|till)\s+{_WD}{_NOT_WORD}{_NOT_HABIT}", re.I)),
    ("weekday", re.compile(rf"(?<![\w-]){_WD}\s+(?:morning|afternoon|evening|night){_NOT_WORD}", re.I)),
    ("ago", re.compile(rf"(?<![\w-]){_N}\s+{_UNIT}\s+ago{_NOT_WORD}", re.I)),
    ("in", re.compile(rf"(?<![\w-])in\s+{_N}\s+{_UNIT}(?:['’]?\s+time)?{_NOT_WORD}", re.I)),
    ("period", re.compile(_NOT_THE + r"(?P<rel>last|past|previous|this|next|coming)\s+"
                          r"(?P<unit>weekend|week|month|year|spring|summer|autumn|fall|winter)" + _NOT_WORD, re.I)),
    ("month", re.compile(rf"{_NOT_THE}(?P<rel>(?i:last|next|this))\s+{_MONTH_CAP}{_NOT_WORD}")),
]
_FUTURE_CUE = re.compile(r"\b(?:will|shall|going to|gonna|about to|plan(?:ning)? to|hope to|looking forward|"
                         r"have to|has to|need to|must|due|"
                         r"can['’]t wait)\b|['’]ll\b|\b(?:am|is|are)\s+\w+ing\b|['’](?:m|re)\s+\w+ing\b", re.I)
_SENTENCE_END = re.compile(r"[.!?\n]")


def find_relative_dates(text: str, anchor: date | datetime | None) -> list[RelativeDate]:
    """Every relative date in `text`, resolved against `anchor` (the day the text was written), in order.

    Days: today, tonight, this morning/afternoon/evening, yesterday, last night, tomorrow, the day before
    yesterday, the day after tomorrow. Weekdays, only with a cue that makes them a date: "last Friday" (the
    most recent Friday before the anchor), "next Friday" (the first Friday in a later week than the anchor's:
    on a Wednesday, the Friday nine days on), "this Friday" (in the anchor's week, weeks starting on Monday),
    "on/since/by/until Friday" and "Friday morning" (the most recent one, or the next one when the sentence
    speaks of the future: "will", "going to", "I'm seeing"). Counts: "two weeks ago", "3 days ago", "a year
    ago", "in ten days". Periods: last/this/next week, weekend, month, year, season, and "last March".

    Not dates: "Fridays", "every Friday", "Friday's meeting" (no cue), "Good Friday", a weekday that is part of
    a written date ("Sunday, 31 August", found by `find_dates`), vague counts ("a few days ago"). With no
    anchor nothing is resolved. Never raises."""
    if anchor is None:
        return []
    try:
        day = anchor.date() if isinstance(anchor, datetime) else anchor
        taken = [(d.start, d.end) for d in find_dates(text, day)]
        found: list[RelativeDate] = []
        for form, pattern in _RELATIVE_FORMS:
            for m in pattern.finditer(text):
                if _overlaps(m.span(), taken):
                    continue
                span = _resolve(form, m, day, _future(text, m.start()))
                if span is not None:
                    found.append(RelativeDate(m.start(), m.end(), *span))
                    taken.append(m.span())
        return sorted(found)
    except (ValueError, TypeError, OverflowError, KeyError):
        return []


def annotate_relative_dates(text: str, anchor: date | datetime | str | None) -> str:
    """`text` with each relative date followed by the date it names: "Yesterday (26 June 2025) was my last
    lesson", "on Monday (25 August 2025)", "last year (2024)". `anchor`: the day the text was written (a date,
    a datetime or a string `parse_date` reads); without one the text is returned unchanged. Idempotent."""
    if isinstance(anchor, str):
        anchor = parse_date(anchor)
    out, pos = [], 0
    written = [d.start for d in find_dates(text, anchor)] if anchor is not None else []
    for r in find_relative_dates(text, anchor):
        if text[r.end:r.end + len(r.label) + 3].lstrip().startswith(f"({r.label}"):
            continue  # annotated already
        if any(0 < start - r.end <= 3 for start in written):
            continue  # the date is written right after it: "Today, Sunday 26 October", "this Thursday (13 Feb)"
        out += [text[pos:r.end], f" ({r.label})"]
        pos = r.end
    return "".join(out) + text[pos:]


def _future(text: str, at: int) -> bool:
    """Whether the sentence around position `at` speaks of the future."""
    start = max((m.end() for m in _SENTENCE_END.finditer(text, 0, at)), default=0)
    end = m.start() if (m := _SENTENCE_END.search(text, at)) else len(text)
    return bool(_FUTURE_CUE.search(text[start:end]))


def _resolve(form: str, m: re.Match[str], day: date, future: bool) -> tuple[date, date, str, str] | None:
    g = {k: (v or "").lower() for k, v in m.groupdict().items()}
    if form == "dayword":
        d = day + timedelta(days=_DAYWORDS[" ".join(m.group(0).lower().split())])
        return _one_day(d)
    if form == "weekday":
        target = next(i for i, w in enumerate(_WEEKDAYS) if w.startswith(g["wd"][:3]))
        rel = "coming" if "coming" in g.get("rel", "") else g.get("rel", "")
        back = (day.weekday() - target - 1) % 7 + 1   # days back to the most recent one before `day`
        ahead = (target - day.weekday() - 1) % 7 + 1  # days on to the first one after `day`
        if rel in ("last", "past", "previous") or g.get("prep") == "since":
            d = day - timedelta(days=back)
        elif rel == "next":
            d = day + timedelta(days=ahead)
            if d.isocalendar()[:2] == day.isocalendar()[:2]:
                d += timedelta(days=7)
        elif rel == "this":
            d = day + timedelta(days=target - day.weekday())
        elif rel == "coming" or future:
            d = day + timedelta(days=ahead)
        else:
            d = day - timedelta(days=back)
        return _one_day(d)
    if form in ("ago", "in"):
        if form == "in" and not future:  # "I read it in two days" is a duration, not a date
            return None
        n = int(g["n"]) if g["n"].isdigit() else _COUNT[g["n"]]
        sign = -1 if form == "ago" else 1
        if g["unit"] == "day":
            return _one_day(day + timedelta(days=sign * n))
        if g["unit"] == "week":  # "three weeks ago" is rarely exactly 21 days: the day, said to be approximate
            d, _, precision, label = _one_day(day + timedelta(weeks=sign * n))
            return d, d, precision, f"about {label}"
        if g["unit"] == "month":
            y, mo = divmod(day.year * 12 + day.month - 1 + sign * n, 12)
            return _month(y, mo + 1)
        return _year(day.year + sign * n)
    if form == "period":
        step = {"last": -1, "past": -1, "previous": -1, "this": 0, "next": 1, "coming": 1}[g["rel"]]
        unit = g["unit"]
        if unit in ("week", "weekend"):
            monday = day - timedelta(days=day.weekday()) + timedelta(weeks=step)
            if unit == "week":
                return monday, monday + timedelta(days=6), "week", f"the week of {_day_label(monday)}"
            sat, sun = monday + timedelta(days=5), monday + timedelta(days=6)
            label = f"{sat.day}–{_day_label(sun)}" if sat.month == sun.month else \
                f"{sat.day} {sat:%B} – {_day_label(sun)}" if sat.year == sun.year else \
                f"{_day_label(sat)} – {_day_label(sun)}"
            return sat, sun, "weekend", label
        if unit == "month":
            y, mo = divmod(day.year * 12 + day.month - 1 + step, 12)
            return _month(y, mo + 1)
        if unit == "year":
            return _year(day.year + step)
        return _season(_SEASONS[unit], day, step)
    if form == "month":
        month = _MONTHS[m.group("m").lower()[:3]]
        if g["rel"] == "this":
            return _month(day.year, month)
        if g["rel"] == "last":
            return _month(day.year - (1 if month >= day.month else 0), month)
        return _month(day.year + (1 if month <= day.month else 0), month)
    return None


def _day_label(d: date) -> str:
    return f"{d.day} {d:%B %Y}"


def _one_day(d: date) -> tuple[date, date, str, str]:
    return d, d, "day", _day_label(d)


def _month(year: int, month: int) -> tuple[date, date, str, str]:
    first = date(year, month, 1)
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return first, last, "month", f"{first:%B %Y}"


def _year(year: int) -> tuple[date, date, str, str]:
    return date(year, 1, 1), date(year, 12, 31), "year", str(year)


def _season(start_month: int, day: date, step: int) -> tuple[date, date, str, str]:
    """The season (northern, meteorological: three months from `start_month`) of that name: "this" one in the
    anchor's year (a winter: the one that began in December), the "last" one to end before the anchor, the
    "next" one to begin after it."""
    def span(year: int) -> tuple[date, date]:
        y, mo = divmod(year * 12 + start_month - 1 + 3, 12)
        return date(year, start_month, 1), date(y, mo + 1, 1) - timedelta(days=1)

    years = range(day.year - 2, day.year + 2)
    if step < 0:
        year = max(y for y in years if span(y)[1] < day)
    elif step > 0:
        year = min(y for y in years if span(y)[0] > day)
    else:
        year = day.year - 1 if start_month == 12 and day.month <= 2 else day.year
    first, last = span(year)
    name = next(k for k, v in _SEASONS.items() if v == start_month)
    return first, last, "season", f"{name} {year}" if start_month != 12 else f"winter {year}–{str(year + 1)[2:]}"
