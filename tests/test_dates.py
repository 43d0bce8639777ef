"""Unit tests for secondself.ingest.dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from secondself.ingest.dates import date_in_heading, parse_date


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
