"""Relative dates resolved against the day a text was written (issue 12, item 5b)."""

from datetime import date, datetime

import pytest

from secondself.text.dates import annotate_relative_dates, find_relative_dates

WED = date(2025, 8, 27)   # a Wednesday
FRI = date(2025, 8, 29)
SUN = date(2025, 8, 31)   # the last day of an ISO week


@pytest.mark.parametrize(("text", "anchor", "expected"), [
    ("Yesterday was my last lesson.", date(2025, 6, 27), "Yesterday (26 June 2025) was my last lesson."),
    ("Landed yesterday evening.", date(2025, 11, 23), "Landed yesterday (22 November 2025) evening."),
    ("Went to bed late last night.", WED, "Went to bed late last night (26 August 2025)."),
    ("today, tonight, this morning", WED, "today (27 August 2025), tonight (27 August 2025), this morning "
                                          "(27 August 2025)"),
    ("tomorrow and the day after tomorrow", WED, "tomorrow (28 August 2025) and the day after tomorrow "
                                                 "(29 August 2025)"),
    ("the day before yesterday", WED, "the day before yesterday (25 August 2025)"),
    ("Splint came off on Monday.", FRI, "Splint came off on Monday (25 August 2025)."),
    ("It was merged on Thursday.", date(2025, 9, 20), "It was merged on Thursday (18 September 2025)."),
    ("I will see Sara on Monday.", FRI, "I will see Sara on Monday (1 September 2025)."),
    ("I'm meeting her on Friday.", WED, "I'm meeting her on Friday (29 August 2025)."),
    ("Sore since Tuesday.", WED, "Sore since Tuesday (26 August 2025)."),
    ("Monday morning was grey.", WED, "Monday morning (25 August 2025) was grey."),
    ("two weeks ago", WED, "two weeks ago (about 13 August 2025)"),
    ("3 days ago", WED, "3 days ago (24 August 2025)"),
    ("a year ago", WED, "a year ago (2024)"),
    ("six months ago", WED, "six months ago (February 2025)"),
    ("In two weeks I will fly home.", WED, "In two weeks (about 10 September 2025) I will fly home."),
    ("last year, this year, next year", WED, "last year (2024), this year (2025), next year (2026)"),
    ("last month and next month", WED, "last month (July 2025) and next month (September 2025)"),
    ("last week", WED, "last week (the week of 18 August 2025)"),
    ("next weekend", WED, "next weekend (6–7 September 2025)"),
    ("last March", WED, "last March (March 2025)"),
    ("last summer", date(2025, 10, 1), "last summer (summer 2025)"),
    ("last winter", date(2025, 4, 15), "last winter (winter 2024–25)"),
])
def test_forms_are_annotated(text, anchor, expected):
    assert annotate_relative_dates(text, anchor) == expected


@pytest.mark.parametrize(("text", "anchor", "expected"), [
    # weeks start on Monday: "this" is the anchor's week, "next" a later one, "last" the most recent before
    ("next Friday", WED, "next Friday (5 September 2025)"),        # not the Friday two days on
    ("next Friday", date(2025, 8, 30), "next Friday (5 September 2025)"),   # from a Saturday: the coming one
    ("next Monday", SUN, "next Monday (1 September 2025)"),        # tomorrow is already in the next week
    ("this Monday", SUN, "this Monday (25 August 2025)"),
    ("this Friday", WED, "this Friday (29 August 2025)"),
    ("this coming Monday", WED, "this coming Monday (1 September 2025)"),
    ("last Friday", SUN, "last Friday (29 August 2025)"),
    ("last Sunday", date(2025, 9, 1), "last Sunday (31 August 2025)"),
    ("last week", date(2025, 9, 1), "last week (the week of 25 August 2025)"),
    ("this weekend", SUN, "this weekend (30–31 August 2025)"),
    # month, year and leap-day boundaries
    ("last year, last month, yesterday", date(2026, 1, 1), "last year (2025), last month (December 2025), "
                                                            "yesterday (31 December 2025)"),
    ("yesterday", date(2024, 3, 1), "yesterday (29 February 2024)"),
    ("next month", date(2025, 1, 31), "next month (February 2025)"),
    ("next weekend", date(2026, 1, 21), "next weekend (31 January – 1 February 2026)"),
    ("next weekend", date(2022, 12, 21), "next weekend (31 December 2022 – 1 January 2023)"),
])
def test_week_month_and_year_boundaries(text, anchor, expected):
    assert annotate_relative_dates(text, anchor) == expected


@pytest.mark.parametrize("text", [
    "Friday's meeting was fine.",      # no cue: a possessive weekday is not resolved (decided: precision first)
    "Fridays are my lab days.",
    "We climb every Friday.",
    "Good Friday was quiet.",
    "It was the last night of the trip.",
    "the next year was harder",
    "I read the book in two days.",     # a duration, not a date
    "a few days ago",                   # vague
    "I sat on sun loungers.",           # abbreviations are never weekdays
    "back in may",                      # a lowercase month
    "Monday-Friday, 9 to 5",
    "The orchestra rehearses on Thursday evenings.",   # every week
    "Today, Wednesday 27 August, was long.",           # the date is written right after
    "Lesson this Thursday (28 Aug) at 19:30.",
])
def test_no_false_positives(text):
    assert annotate_relative_dates(text, WED) == text


def test_a_weekday_in_a_written_date_is_left_to_find_dates():
    text = "My contract ends on Sunday, 31 August, but today was the last day."
    assert annotate_relative_dates(text, FRI) == ("My contract ends on Sunday, 31 August, but today (29 August 2025) "
                                                  "was the last day.")


def test_anchor_forms_idempotence_and_no_anchor():
    text = "Yesterday was fine."
    once = annotate_relative_dates(text, "2025-06-27T21:00:00+01:00")
    assert once == "Yesterday (26 June 2025) was fine."
    assert annotate_relative_dates(once, date(2025, 6, 27)) == once
    assert annotate_relative_dates(text, datetime(2025, 6, 27, 9)) == once
    assert annotate_relative_dates(text, None) == text
    assert annotate_relative_dates(text, "not a date") == text


def test_spans_precision_and_day():
    found = find_relative_dates("Splint came off on Monday, last month was long.", FRI)
    assert [(f.precision, f.day) for f in found] == [("day", date(2025, 8, 25)), ("month", None)]
    assert (found[1].first, found[1].last) == (date(2025, 7, 1), date(2025, 7, 31))
    assert found[0].start == len("Splint came off ") and found[0].end == len("Splint came off on Monday")


# -- layer 1: facts are dated by the resolved day, not by the day the note was written ----------------------

def _note(text: str, day: str, kind: str = "note", speakers: tuple[str, ...] = ()):
    from secondself.types import Chunk

    return Chunk(id=1, source="t", path="t.md", title="t", position=0, text=text,
                 date=f"{day}T00:00:00+00:00", speakers=speakers, kind=kind)


def test_rule_based_facts_take_the_resolved_day():
    from secondself.memory.facts import extract_observations

    got = {(o.predicate, o.object, o.kind): (o.date, o.explicit) for text in [
        "I started at Tidewater Labs on Monday.",           # written on Saturday 20 September 2025
        "Two weeks ago I moved to Lisbon.",
        "Yesterday was my last day at Acme Freight.",
    ] for o in extract_observations(_note(text, "2025-09-20"), "Ann")}
    assert got == {("works_at", "Tidewater Labs", "start"): ("2025-09-15", True),
                   ("lives_in", "Lisbon", "start"): ("2025-09-06", True),
                   ("works_at", "Acme Freight", "end"): ("2025-09-19", True)}


def test_the_teacher_reads_resolved_dates():
    from secondself.backends.chat import FakeChatModel
    from secondself.memory.facts import teacher_observations

    model = FakeChatModel(['{"facts": []}'])
    teacher_observations(model, _note("I started at Tidewater Labs on Monday.", "2025-09-20"), "Ann")
    assert "on Monday (15 September 2025)" in model.calls[0][0][-1].content
