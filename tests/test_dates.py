"""Unit tests for secondself.text.dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from secondself.text.dates import date_in_heading, parse_date


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-14", utc(2025, 3, 14)),
        ("2025-03-14T10:30:00", utc(2025, 3, 14, 10, 30)),
        ("2025-03-14T10:30:00Z", utc(2025, 3, 14, 10, 30)),
        ("2025-03-14 10:30", utc(2025, 3, 14, 10, 30)),
        ("20250314", utc(2025, 3, 14)),
        ("14 March 2025", utc(2025, 3, 14)),
        ("14th of March 2025", utc(2025, 3, 14)),
        ("March 14, 2025", utc(2025, 3, 14)),
        ("Mar 14 2025", utc(2025, 3, 14)),
        ("Friday, 14 March 2025", utc(2025, 3, 14)),
        ("2025/03/14", utc(2025, 3, 14)),
        ("March 14, 2025 at 3:05 pm", utc(2025, 3, 14, 15, 5)),
        ("Fri, 14 Mar 2025 10:00:00 -0000", utc(2025, 3, 14, 10)),
        (1741946400, utc(2025, 3, 14, 10)),
        (1741946400.5, utc(2025, 3, 14, 10) + timedelta(milliseconds=500)),
        (1741946400000, utc(2025, 3, 14, 10)),  # milliseconds
        ("1741946400", utc(2025, 3, 14, 10)),
        (date(2025, 3, 14), utc(2025, 3, 14)),
        (datetime(2025, 3, 14, 10), utc(2025, 3, 14, 10)),
        ("D:20250314103000Z", utc(2025, 3, 14, 10, 30)),
    ],
)
def test_parse_date_forms(value: object, expected: datetime) -> None:
    assert parse_date(value) == expected  # type: ignore[arg-type]


def test_parse_date_keeps_offsets_and_is_always_aware() -> None:
    rfc = parse_date("Fri, 14 Mar 2025 10:00:00 +0100")
    assert rfc == datetime(2025, 3, 14, 10, tzinfo=timezone(timedelta(hours=1)))
    assert rfc is not None and rfc.utcoffset() == timedelta(hours=1)
    iso = parse_date("2025-03-14T10:00:00-05:00")
    assert iso is not None and iso.utcoffset() == timedelta(hours=-5)
    pdf = parse_date("D:20250314103000+01'00'")
    assert pdf == datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    for value in ("2025-03-14", "14 March 2025", 1741946400, datetime(2025, 1, 1)):
        parsed = parse_date(value)
        assert parsed is not None and parsed.tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "garbage", "2025", "31 February 2025", "2025-13-01", True, 1e30, float("nan"), [], {}],
)
def test_parse_date_returns_none_and_never_raises(value: object) -> None:
    assert parse_date(value) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("## 2025-03-14", utc(2025, 3, 14)),
        ("## Monday, 14 March 2025", utc(2025, 3, 14)),
        ("# March 3, 2025", utc(2025, 3, 3)),
        ("### 2025-03-14 – Rome", utc(2025, 3, 14)),
        ("## **2025/03/14**", utc(2025, 3, 14)),
        ("## Trip to Rome", None),
        ("## Plans for 2025", None),
        ("## 1741946400", None),  # a number in a heading is not a timestamp
        ("", None),
    ],
)
def test_date_in_heading(heading: str, expected: datetime | None) -> None:
    assert date_in_heading(heading) == expected


# -- find_dates ----------------------------------------------------------------------------------------

def test_find_dates_full_dates_with_spans():
    from secondself.text.dates import find_dates

    text = "I started on 1 March 2021, left on Sunday, 31 August 2025 and wrote 2025-09-08."
    found = find_dates(text)
    assert [f.day for f in found] == [date(2021, 3, 1), date(2025, 8, 31), date(2025, 9, 8)]
    assert [text[f.start:f.end] for f in found] == ["1 March 2021", "Sunday, 31 August 2025", "2025-09-08"]
    assert all(f.year_given for f in found)


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        ("Today, Sunday 26 October, we talked.", date(2025, 10, 26), date(2025, 10, 26)),
        ("on the 12th of July", date(2025, 6, 14), date(2025, 7, 12)),
        ("July 1st", date(2025, 6, 14), date(2025, 7, 1)),
        ("30 December", date(2026, 1, 3), date(2025, 12, 30)),     # nearest year
        ("1 July", date(2025, 12, 31), date(2025, 7, 1)),          # looking back beats looking ahead
        ("Week of 13 Jan: five days", date(2025, 1, 20), date(2025, 1, 13)),
    ],
)
def test_find_dates_without_a_year_uses_the_reference(text, reference, expected):
    from secondself.text.dates import find_dates

    found = find_dates(text, reference)
    assert [(f.day, f.year_given) for f in found] == [(expected, False)]
    assert find_dates(text) == []          # no reference, no guess


@pytest.mark.parametrize("text", ["I may 3 times", "in March", "since 2021", "Tokyo 8-12", "45-52k", "31 April"])
def test_find_dates_ignores_what_is_not_a_day(text):
    from secondself.text.dates import find_dates

    assert find_dates(text, date(2025, 6, 1)) == []
