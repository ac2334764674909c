"""Time expressions in English questions, resolved to a concrete half-open range.

``resolve_time_range(query, now=...)`` finds the time expression in a question ("what did I say
yesterday?", "the trip in May 2023") and resolves it against ``now``, the reference time the
caller chooses (the newest message date in scope, or the current time). The result is a
``TimeRange`` ``[start, end)`` in ``now``'s timezone plus the matched ``phrase``;
``strip_time_expression`` removes that phrase from the query for keyword search.

Pure Python and stdlib: precompiled regular expressions over the lowercased query, each run only
when the query has a word it needs (so a question without time words costs a couple of
microseconds, a typical one 10-30). Case-insensitive, tolerant of punctuation, never raises on
arbitrary text (only a naive ``now`` is an error).

Which expression wins
    The *leftmost* expression in the query; among those starting at the same place, the
    *longest* ("the day before yesterday" over "yesterday", "May 7th, 2023" over "May 7", "in May
    2023" over "in May"). An expression that cannot be resolved (February 30) is skipped and the
    next one tried. An expression directly after "before", "after", "until", "till", "by" or
    "prior to" is skipped (it bounds only one side, and no filter beats a wrong one), and so is
    one after "every"/"each" (recurring, not a range).
    "since X" gives ``[X.start, now]``; "from X to Y", "X until/through/- Y" and "between X and
    Y" give ``[X.start, Y.end)`` (when Y does not come before X).

Rules (``today`` is ``now``'s local date; "up to now" ends one microsecond after ``now``, so a
message stamped exactly ``now`` is inside)
    Days: "today", "tonight", "this morning/afternoon/evening" -> today (the whole day: parts of
    the day are deliberately coarse); "yesterday", "tomorrow", "the day before yesterday", "the
    day after tomorrow" (a trailing "morning"/"night" is part of the phrase and keeps the whole
    day); "last night" -> yesterday 18:00 to today 06:00; "earlier today" (and "earlier this
    week/month/year") -> from the start of that period up to now.
    Calendar periods: "this/last/next week" (ISO weeks, Monday start), "this/last/next weekend"
    (Saturday and Sunday of that ISO week; "over the weekend" -> the latest weekend that has
    begun), "this/last/next month", "this/last/next year", "previous"/"current"/"coming" alike.
    Rolling periods: "the past week", "the last 3 days", "past few months", "this past month"
    (note the article: "last week" is calendar, "the last week" is rolling) -> from midnight N
    units before today (hours: exactly N hours before now) up to now. "recently", "lately" ->
    the last 14 days up to now. "the other day" -> the 7 days before today.
    Ago: "N days/weeks/months/years ago" (also "an hour ago", "two days ago", "a couple of
    weeks ago", "a few months ago", "a fortnight ago", "three weeks back") -> the calendar unit
    that contains that point: the day, the ISO week, the month, the year (the clock hour for
    hours). "couple" is 2, "few" is 3.
    Weekdays: "Monday", "on Monday", "this Monday" -> the most recent Monday on or before today
    (so on a Saturday "on Saturday" is today); "last/past/previous Monday" -> the most recent one
    strictly before today (1 to 7 days back: "last Friday" on a Saturday is yesterday); "next
    Monday" -> the first one after today. "Monday last week", "last week on Monday" -> that day
    of that ISO week.
    Months: "in May", "during March", "last May", "this May", "next May", "early/mid/late May"
    (days 1-10, 11-20, 21-end), "the end of May", "since May", "from May to July". A bare month
    name needs one of those words (in, during, throughout, over, around, between, last, this,
    next, early, mid, late, the end of, the month of, since, or being half of a range): "June"
    and "April" are names, "may" is a verb, "from April" is a person. Without a
    year: the current month if it is that month, else its most recent past occurrence ("in
    December" asked in January is last December); "last May" is strictly before the current
    month, "this May" is this year's, "next May" strictly after. With a year: that month.
    Dates: "May 7", "May 7th, 2023", "7 May" ("3 may be" is not: "<n> may" needs "on", an
    ordinal, "of", a year or the end of the clause), "the 7th of May", "Monday, May 7",
    "2023-05-07", "2023/05/07", "05/07/2023" and "5/7/23" (US month/day/year; read as day/month
    only when the first number cannot be a month), "on 5/7" (without a year only after "on":
    "1/2" is a fraction). Two-digit years are 20yy, or 19yy when 20yy would be after ``now``'s
    year. Without a year: the most recent occurrence on or before today ("February 29" -> the
    last leap day).
    Years: "in 2022", "during 2022", "the year 2022", "early/mid/late 2022" (Jan-Apr, May-Aug,
    Sep-Dec); years 1900-2199, and only after such a word ("in", "during", "throughout", "of",
    "from", "between", "since") or inside a date, so a bare number is not a year (but "in 2000
    words" is read as the year 2000).
    Seasons: meteorological, northern hemisphere: spring Mar-May, summer Jun-Aug, autumn/fall
    Sep-Nov, winter Dec-Feb (winter YEAR starts in December of YEAR; "winter 2022/23" is the
    one starting December 2022). "last summer" -> the most recent one that has ended; "in/over
    the summer" -> the most recent one that has begun; "this summer" -> the current one, else
    the nearest; "next summer" -> the first one that has not begun; "summer 2023" -> that one.

Arithmetic is wall-clock in ``now``'s tzinfo (``datetime.timezone`` or ``zoneinfo``; a pytz
zone would need ``localize`` and is not supported). Midnight that does not exist because of a
DST jump keeps whatever offset the zone gives it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

__all__ = ["TimeRange", "resolve_time_range", "strip_time_expression"]


@dataclass(frozen=True)
class TimeRange:
    """``[start, end)`` in the reference time's timezone, and the phrase that produced it
    (exactly as it appears in the query, so ``strip_time_expression`` can remove it)."""

    start: datetime
    end: datetime
    phrase: str


_Span = tuple[datetime, datetime]
_EPS = timedelta(microseconds=1)
_HOURS = tuple(time(hour) for hour in range(24))


class _Ctx:
    """The reference time, its local date and zone; builds local datetimes."""

    __slots__ = ("now", "today", "tz")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.today = now.date()
        self.tz = now.tzinfo

    def at(self, d: date, hour: int = 0) -> datetime:
        return datetime.combine(d, _HOURS[hour], self.tz)

    def days(self, first: date, count: int = 1) -> _Span:
        return self.at(first), self.at(first + timedelta(days=count))

    def until_now(self, first: date) -> _Span:
        return self.at(first), self.now + _EPS


# A handler gets the match, the context and whether the expression is anchored (after "since",
# or the second half of a range), which is what lets a bare month name count as a date.
_Handler = Callable[[re.Match[str], _Ctx, bool], "_Span | None"]

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

_B = r"(?<!\w)"  # word start
_E = r"(?!\w)"  # word end
_APOSTROPHES = r"'\u2019"
_DASHES = r"\-\u2013\u2014"
_POSS = rf"(?:[{_APOSTROPHES}]s)?"
_NOT_OF = r"(?!\s+of\b)"
_LEAD = r"(?:(?:in|on|during|from|over|throughout|within|between)\s+)?"
_PART = r"(?:\s+(?:morning|afternoon|evening|night))?"
_WEEKDAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_WD = rf"(?P<wd>{_WEEKDAYS})"
_WD_PREFIX = rf"(?:(?:{_WEEKDAYS}),?\s+)?"
_MONTH_NAMES = (
    r"january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec"
)
_MON = rf"(?P<m>{_MONTH_NAMES})(?!\w)"
_DAY = r"(?P<d>3[01]|[12][0-9]|0?[1-9])(?P<sfx>st|nd|rd|th)?"
_YEAR = r"(?P<y>19[0-9]{2}|2[01][0-9]{2})"
_NUM = (
    r"(?P<n>a\s+couple(?:\s+of)?|couple(?:\s+of)?|a\s+few|few|an?|one|two|three|four|five|six"
    r"|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen"
    r"|eighteen|nineteen|twenty|thirty|[0-9]{1,4})"
)
_POS = r"(?:(?P<pe>early|mid|late)[\s-]+|(?:the\s+)?(?P<pb>beginning|start|end|middle)\s+of\s+)?"

_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "couple": 2,
    "few": 3,
}
_MONTHS = {
    name: i
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_WEEKDAY_INDEX = {
    name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
}
_SEASON_START = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}
_DATE_LEADS = frozenset({"in", "on", "during", "from", "over", "throughout", "within", "between"})
_ENDS_CLAUSE = re.compile(r"\s*(?:$|[^\w\s])")
_MONTH_LEADS = frozenset({"in", "during", "throughout", "over", "between", "around"})


# ---------------------------------------------------------------------------------------------
# Calendar helpers
# ---------------------------------------------------------------------------------------------


def _shift_month(year: int, month: int, n: int) -> tuple[int, int]:
    y, m0 = divmod(year * 12 + month - 1 + n, 12)
    return y, m0 + 1


def _month_span(c: _Ctx, year: int, month: int) -> _Span:
    ny, nm = _shift_month(year, month, 1)
    return c.at(date(year, month, 1)), c.at(date(ny, nm, 1))


def _week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _minus_months(d: date, n: int) -> date:
    y, m = _shift_month(d.year, d.month, -n)
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def _num(text: str) -> int:
    words = text.lower().split()
    if words[0].isdigit():
        return int(words[0])
    if "couple" in words:
        return 2
    if "few" in words:
        return 3
    return _NUMBERS[words[0]]


def _month_part(c: _Ctx, year: int, month: int, m: re.Match[str]) -> _Span:
    """The month, or its early (1-10) / mid (11-20) / late (21-end) part."""
    start, end = _month_span(c, year, month)
    part = (m.group("pe") or m.group("pb") or "").lower()
    if part in ("early", "beginning", "start"):
        return start, c.at(date(year, month, 11))
    if part in ("mid", "middle"):
        return c.at(date(year, month, 11)), c.at(date(year, month, 21))
    if part in ("late", "end"):
        return c.at(date(year, month, 21)), end
    return start, end


def _ymd(c: _Ctx, year: int | None, month: int, day: int) -> _Span | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    if year is not None:
        return c.days(date(year, month, day))
    for back in range(9):  # nine years always contain a leap day
        try:
            d = date(c.today.year - back, month, day)
        except ValueError:
            continue
        if d <= c.today:
            return c.days(d)
    return None


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


def _h_day_before_after(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    offset = -2 if m.group("dir").lower().startswith("before") else 2
    return c.days(c.today + timedelta(days=offset))


def _h_last_night(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    return c.at(c.today - timedelta(days=1), 18), c.at(c.today, 6)


def _h_earlier(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    unit = (m.group("u") or "").lower()
    if unit == "week":
        return c.until_now(_week_start(c.today))
    if unit == "month":
        return c.until_now(c.today.replace(day=1))
    if unit == "year":
        return c.until_now(date(c.today.year, 1, 1))
    return c.until_now(c.today)


def _h_relative_day(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    word = m.group("w").lower()
    offset = -1 if word.startswith("y") else 1 if word.startswith("tom") else 0
    return c.days(c.today + timedelta(days=offset))


def _offset(rel: str) -> int:
    rel = rel.lower()
    if rel.startswith(("last", "prev", "past")):
        return -1
    if rel.startswith(("next", "com")):
        return 1
    return 0


def _h_period(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    rel = " ".join(m.group("rel").lower().split())
    unit = m.group("u").lower()
    if rel == "this past":
        if unit == "weekend":
            rel = "last"
        else:
            return _rolling(c, unit, 1)
    off = _offset(rel)
    if unit == "week":
        return c.days(_week_start(c.today) + timedelta(weeks=off), 7)
    if unit == "weekend":
        return c.days(_week_start(c.today) + timedelta(weeks=off, days=5), 2)
    if unit == "month":
        return _month_span(c, *_shift_month(c.today.year, c.today.month, off))
    return c.at(date(c.today.year + off, 1, 1)), c.at(date(c.today.year + off + 1, 1, 1))


def _rolling(c: _Ctx, unit: str, n: int) -> _Span:
    if unit == "hour":
        return c.now - timedelta(hours=n), c.now + _EPS
    if unit == "day":
        return c.until_now(c.today - timedelta(days=n))
    if unit == "week":
        return c.until_now(c.today - timedelta(weeks=n))
    if unit == "month":
        return c.until_now(_minus_months(c.today, n))
    return c.until_now(_minus_months(c.today, 12 * n))


def _h_rolling(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    n = _num(m.group("n")) if m.group("n") else 1
    if n < 1:
        return None
    return _rolling(c, m.group("u").lower(), n)


def _h_ago(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    n = _num(m.group("n"))
    unit = m.group("u").lower()
    if unit == "hour":
        point = (c.now - timedelta(hours=n)).replace(minute=0, second=0, microsecond=0)
        return point, point + timedelta(hours=1)
    if unit == "day":
        return c.days(c.today - timedelta(days=n))
    if unit in ("week", "fortnight"):
        weeks = 2 * n if unit == "fortnight" else n
        return c.days(_week_start(c.today - timedelta(weeks=weeks)), 7)
    if unit == "month":
        return _month_span(c, *_shift_month(c.today.year, c.today.month, -n))
    return c.at(date(c.today.year - n, 1, 1)), c.at(date(c.today.year - n + 1, 1, 1))


def _h_recently(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    return c.until_now(c.today - timedelta(days=14))


def _h_other_day(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    return c.days(c.today - timedelta(days=7), 7)


def _h_weekday(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    target = _WEEKDAY_INDEX[m.group("wd")[:3].lower()]
    rel = " ".join((m.group("rel") or "").lower().split())
    wd = c.today.weekday()
    if rel in ("last", "past", "previous", "this past"):
        delta = -((wd - target - 1) % 7 + 1)
    elif rel in ("next", "coming"):
        delta = (target - wd - 1) % 7 + 1
    else:
        delta = -((wd - target) % 7)
    return c.days(c.today + timedelta(days=delta))


def _h_weekday_of_week(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    target = _WEEKDAY_INDEX[m.group("wd")[:3].lower()]
    monday = _week_start(c.today) + timedelta(weeks=_offset(m.group("rel")))
    return c.days(monday + timedelta(days=target))


def _h_weekend(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    monday = _week_start(c.today)
    if c.today.weekday() < 5:
        monday -= timedelta(weeks=1)
    return c.days(monday + timedelta(days=5), 2)


def _h_date_mdy(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    year = int(m.group("y")) if m.group("y") else None
    return _ymd(c, year, _MONTHS[m.group("m")[:3].lower()], int(m.group("d")))


def _h_date_dmy(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    name = m.group("m").lower()
    if name == "may" and not (
        m.group("of")
        or m.group("sfx")
        or m.group("y")
        or m.group(0).split(None, 1)[0].lower() in _DATE_LEADS
        or _ENDS_CLAUSE.match(m.string, m.end())
    ):
        return None  # "3 may be enough", but "on 7 May", "7th May", "7 May?"
    year = int(m.group("y")) if m.group("y") else None
    return _ymd(c, year, _MONTHS[name[:3]], int(m.group("d")))


def _h_date_iso(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    return _ymd(c, int(m.group("y")), int(m.group("mo")), int(m.group("d")))


def _h_date_us(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    first, second, year_text = int(m.group("a")), int(m.group("b")), m.group("yy")
    if year_text is None and (m.group("lead") or "").lower() != "on" and not anchored:
        return None  # "1/2 of them" is a fraction
    if m.group("sep") == "-" and (year_text is None or len(year_text) != 4):
        return None  # "5-7 days" is a count
    month, day = (second, first) if first > 12 >= second else (first, second)
    year: int | None = None
    if year_text is not None:
        year = int(year_text)
        if len(year_text) == 2:
            year += 2000 if 2000 + year <= c.today.year else 1900
    return _ymd(c, year, month, day)


def _h_month_year(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    return _month_part(c, int(m.group("y")), _MONTHS[m.group("m")[:3].lower()], m)


def _h_month(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    rel = " ".join((m.group("rel") or "").lower().split())
    lead = (m.group("lead") or "").lower()
    if not (rel or lead in _MONTH_LEADS or m.group("pe") or m.group("pb") or anchored):
        return None  # "what did June say?"
    month = _MONTHS[m.group("m")[:3].lower()]
    current = c.today.month
    if rel in ("last", "past", "this past"):
        year = c.today.year - (month >= current)
    elif rel == "this":
        year = c.today.year
    elif rel in ("next", "coming"):
        year = c.today.year + (month <= current)
    else:
        year = c.today.year - (month > current)
    return _month_part(c, year, month, m)


def _h_year(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    if not (m.group("lead") or m.group("the") or m.group("pe") or anchored):
        return None  # a bare number is not a year
    year = int(m.group("y"))
    part = (m.group("pe") or "").lower()
    first, last = {"early": (1, 5), "mid": (5, 9), "late": (9, 13)}.get(part, (1, 13))
    end = date(year + 1, 1, 1) if last == 13 else date(year, last, 1)
    return c.at(date(year, first, 1)), c.at(end)


def _season_at(start_month: int, year: int) -> tuple[date, date]:
    ey, em = _shift_month(year, start_month, 3)
    return date(year, start_month, 1), date(ey, em, 1)


def _h_season(m: re.Match[str], c: _Ctx, anchored: bool) -> _Span | None:
    rel = " ".join((m.group("rel") or "").lower().split())
    if not (rel or m.group("lead") or m.group("y") or anchored):
        return None  # "the fall" alone is not a date
    start_month = _SEASON_START[m.group("s").lower()]
    if m.group("y"):
        start, end = _season_at(start_month, int(m.group("y")))
        return c.at(start), c.at(end)
    today = c.today
    current_start = date(today.year, (today.month // 3) * 3 or 12, 1)
    if today.month < 3:
        current_start = date(today.year - 1, 12, 1)
    seasons = [_season_at(start_month, y) for y in range(today.year - 2, today.year + 2)]
    if rel in ("last", "past", "this past"):
        chosen = max(s for s in seasons if s[1] <= current_start)
    elif rel in ("next", "coming"):
        chosen = min(s for s in seasons if s[0] > today)
    elif rel == "this":
        chosen = min(
            seasons,
            key=lambda s: (max(s[0] - today, today - s[1], timedelta(0)), s[0] > today),
        )
    else:
        chosen = max(s for s in seasons if s[0] <= today)
    return c.at(chosen[0]), c.at(chosen[1])


# ---------------------------------------------------------------------------------------------
# Rules: (pattern, handler, gate); the index breaks ties between equally long matches.
# ---------------------------------------------------------------------------------------------

# A rule runs only when the query's words meet its gate: one word from each of (at most) two
# sets. Set tests on the words are far cheaper than running every pattern over every question.
# "#" stands for "has a digit", "#/" for "digit, separator, digit" (2023-05-07, 5/7), "#y" for
# "has something like a year" (1900-2199).
_Gate = tuple[frozenset[str], frozenset[str]]
_ANY: frozenset[str] = frozenset()
_WEEKDAY_WORDS = frozenset(_WEEKDAYS.split("|"))
_MONTH_WORDS = frozenset(_MONTH_NAMES.split("|"))
_UNIT_WORDS = frozenset(
    {"hour", "hours", "day", "days", "week", "weeks", "month", "months", "year", "years"}
)
_G_DAY_BEFORE: _Gate = (frozenset({"yesterday", "tomorrow"}), _ANY)
_G_NIGHT: _Gate = (frozenset({"night"}), _ANY)
_G_EARLIER: _Gate = (frozenset({"earlier"}), _ANY)
_G_REL_DAY: _Gate = (
    frozenset({"today", "tonight", "yesterday", "tomorrow", "morning", "afternoon", "evening"}),
    _ANY,
)
_G_PERIOD: _Gate = (frozenset({"week", "weekend", "month", "year"}), _ANY)
_G_ROLLING: _Gate = (frozenset({"past", "last", "previous"}), _UNIT_WORDS)
_G_AGO: _Gate = (frozenset({"ago", "back"}), _ANY)
_G_RECENT: _Gate = (frozenset({"recently", "lately", "late"}), _ANY)
_G_OTHER: _Gate = (frozenset({"other"}), _ANY)
_G_WD_WEEK: _Gate = (_WEEKDAY_WORDS, frozenset({"week"}))
_G_WD: _Gate = (_WEEKDAY_WORDS, _ANY)
_G_WEEKEND: _Gate = (frozenset({"weekend"}), _ANY)
_G_YEAR: _Gate = (frozenset({"#y"}), _ANY)
_G_MONTH_YEAR: _Gate = (frozenset({"#y"}), _MONTH_WORDS)
_G_NUMERIC_DATE: _Gate = (frozenset({"#/"}), _ANY)
_G_DATE_WORDS: _Gate = (frozenset({"#"}), _MONTH_WORDS)
_G_MONTH: _Gate = (_MONTH_WORDS, _ANY)
_G_SEASON: _Gate = (frozenset({"spring", "summer", "fall", "autumn", "winter"}), _ANY)

_RULE_SOURCES: tuple[tuple[str, _Handler, _Gate], ...] = (
    (
        rf"{_B}{_LEAD}(?:the\s+)?day\s+(?P<dir>before\s+yesterday|after\s+tomorrow)"
        rf"{_PART}{_POSS}{_E}",
        _h_day_before_after,
        _G_DAY_BEFORE,
    ),
    (rf"{_B}{_LEAD}last\s+night{_POSS}{_NOT_OF}{_E}", _h_last_night, _G_NIGHT),
    (
        rf"{_B}earlier\s+(?:today|this\s+(?:morning|afternoon|evening)"
        rf"|this\s+(?P<u>week|month|year)){_E}",
        _h_earlier,
        _G_EARLIER,
    ),
    (
        rf"{_B}{_LEAD}(?P<w>today|tonight|yesterday|tomorrow"
        rf"|this\s+(?:morning|afternoon|evening)){_PART}{_POSS}{_E}",
        _h_relative_day,
        _G_REL_DAY,
    ),
    (
        rf"{_B}{_LEAD}(?P<rel>this\s+past|this|current|last|previous|next|coming)\s+"
        rf"(?P<u>week|weekend|month|year){_POSS}{_E}{_NOT_OF}",
        _h_period,
        _G_PERIOD,
    ),
    (
        rf"{_B}{_LEAD}(?:(?:the\s+)?(?:past|last|previous)\s+{_NUM}\s+|the\s+(?:past|last)\s+"
        rf"|past\s+)(?P<u>hour|day|week|month|year)s?{_E}{_NOT_OF}",
        _h_rolling,
        _G_ROLLING,
    ),
    (
        rf"{_B}(?:(?:about|around|roughly|approximately|some|almost|nearly|over|maybe|just)\s+)?"
        rf"{_NUM}\s+(?P<u>hour|day|week|fortnight|month|year)s?\s+(?:ago|back){_E}",
        _h_ago,
        _G_AGO,
    ),
    (rf"{_B}{_LEAD}(?:recently|lately|(?:as\s+)?of\s+late){_E}", _h_recently, _G_RECENT),
    (rf"{_B}{_LEAD}the\s+other\s+day{_E}", _h_other_day, _G_OTHER),
    (
        rf"{_B}{_LEAD}{_WD}(?:\s+of)?\s+(?P<rel>this|last|previous|next)\s+week{_E}",
        _h_weekday_of_week,
        _G_WD_WEEK,
    ),
    (
        rf"{_B}{_LEAD}(?P<rel>this|last|previous|next)\s+week{_POSS}\s+(?:on\s+)?{_WD}{_E}",
        _h_weekday_of_week,
        _G_WD_WEEK,
    ),
    (
        rf"{_B}{_LEAD}(?:(?P<rel>this\s+past|last|past|previous|this|next|coming)\s+)?"
        rf"{_WD}{_PART}{_POSS}{_E}{_NOT_OF}",
        _h_weekday,
        _G_WD,
    ),
    (rf"{_B}(?:over|during|on|in|from|at)\s+the\s+weekend{_POSS}{_E}", _h_weekend, _G_WEEKEND),
    (
        rf"{_B}{_LEAD}{_WD_PREFIX}(?:the\s+)?{_MON}\.?\s+(?:the\s+)?{_DAY}"
        rf"(?:,?\s+{_YEAR})?(?![0-9]|:[0-9]){_E}",
        _h_date_mdy,
        _G_DATE_WORDS,
    ),
    (
        rf"{_B}{_LEAD}{_WD_PREFIX}(?:the\s+)?{_DAY}\s+(?P<of>of\s+)?{_MON}"
        rf"(?:\.?,?\s+{_YEAR})?(?![0-9]){_E}",
        _h_date_dmy,
        _G_DATE_WORDS,
    ),
    (
        rf"{_B}{_LEAD}{_YEAR}(?P<sep>[-/.])(?P<mo>1[0-2]|0?[1-9])(?P=sep)"
        rf"(?P<d>3[01]|[12][0-9]|0?[1-9])(?![0-9])",
        _h_date_iso,
        _G_NUMERIC_DATE,
    ),
    (
        rf"{_B}(?:(?P<lead>in|on|during|from|between)\s+)?(?P<a>[0-3]?[0-9])(?P<sep>[/-])"
        rf"(?P<b>[0-3]?[0-9])(?:(?P=sep)(?P<yy>[0-9]{{4}}|[0-9]{{2}}))?(?![0-9]|[/-][0-9])",
        _h_date_us,
        _G_NUMERIC_DATE,
    ),
    (
        rf"{_B}{_LEAD}{_POS}{_MON}\.?,?\s+(?:of\s+)?{_YEAR}(?![0-9]){_POSS}{_E}",
        _h_month_year,
        _G_MONTH_YEAR,
    ),
    (
        rf"{_B}(?:(?P<lead>in|during|throughout|over|between|around|from)\s+"
        rf"|the\s+month\s+of\s+)?(?:(?P<rel>this\s+past|last|past|this|next|coming)\s+)?"
        rf"{_POS}{_MON}(?![{_APOSTROPHES}]|\.?,?\s*[0-9])",
        _h_month,
        _G_MONTH,
    ),
    (
        rf"{_B}(?:(?P<lead>in|during|throughout|of|from|between)\s+)?(?P<the>the\s+year\s+)?"
        rf"(?:(?P<pe>early|mid|late)[\s-]+)?{_YEAR}(?![0-9]|[-/.][0-9]){_POSS}{_E}",
        _h_year,
        _G_YEAR,
    ),
    (
        rf"{_B}(?:(?P<lead>in|during|over|throughout|from|between)\s+)?"
        rf"(?:(?P<rel>this\s+past|last|past|this|next|coming)\s+|the\s+)?"
        rf"(?P<s>spring|summer|fall|autumn|winter)"
        rf"(?:\s+(?:of\s+)?{_YEAR}(?:\s*[-/]\s*(?:19|2[01])?[0-9]{{2}})?(?![0-9]){_POSS}"
        rf"|{_POSS}{_NOT_OF}){_E}",
        _h_season,
        _G_SEASON,
    ),
)
# Patterns are all lowercase and run on a lowercased copy of the query (IGNORECASE is several
# times slower in `re`).
_Rule = tuple[re.Pattern[str], _Handler, _Gate]
_RULES: tuple[_Rule, ...] = tuple(
    (re.compile(source), handler, gate) for source, handler, gate in _RULE_SOURCES
)
_ALL_GATE_WORDS: frozenset[str] = frozenset().union(*(gate[0] for _, _, gate in _RULES))
_WORD = re.compile(r"[a-z]+")
_DIGIT = re.compile(r"[0-9]")
_NUMERIC_DATE = re.compile(r"[0-9][-/.][0-9]")
_YEARISH = re.compile(r"(?:19|2[01])[0-9]{2}")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SINCE_BEFORE = re.compile(r"(?<!\w)since\s+\Z")
_BLOCKED_BEFORE = re.compile(
    r"(?<!\w)(?:before|after|until|till|til|by|prior\s+to|every|each)\s+\Z"
)
_CONNECTOR = re.compile(rf"\s*(?:[{_DASHES}]|(?P<word>to|until|till|through|thru|and)(?!\w))\s*")
_LOOKBACK = 12  # longest blocker ("prior to") plus spaces

_Candidate = tuple[int, int, int, re.Match[str]]


def _resolve(m: re.Match[str], handler: _Handler, c: _Ctx, anchored: bool) -> _Span | None:
    try:
        span = handler(m, c, anchored)
    except (ValueError, OverflowError, KeyError):
        return None
    if span is None or not span[0] < span[1]:
        return None
    return span


def _range_end(first: re.Match[str], c: _Ctx, start: datetime) -> tuple[int, datetime] | None:
    """The second half of "from X to Y" / "between X and Y": where Y ends and its end time."""
    text = first.string
    connector = _CONNECTOR.match(text, first.end())
    if connector is None:
        return None
    if connector.group("word") == "and" and not first.group(0).startswith("between"):
        return None
    pos = connector.end()
    matches = [(m, h) for p, h, _ in _RULES if (m := p.match(text, pos)) is not None]
    matches.sort(key=lambda mh: mh[0].end(), reverse=True)
    for m, handler in matches:
        span = _resolve(m, handler, c, anchored=True)
        if span is not None and start <= span[0]:
            return m.end(), span[1]
    return None


def resolve_time_range(query: str, *, now: datetime) -> TimeRange | None:
    """The time range the question refers to, resolved against ``now``; ``None`` if there is none.

    ``now`` must be timezone-aware (``ValueError`` otherwise); the range is in its timezone.
    Never raises on the text. See the module docstring for the rules.
    """
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if not isinstance(query, str):
        return None
    text = query.lower()
    if len(text) != len(query):  # a few non-ASCII letters lowercase to two characters
        text = query.translate(_ASCII_LOWER)
    words = set(_WORD.findall(text))
    if _DIGIT.search(text) is not None:
        words.add("#")
        if _NUMERIC_DATE.search(text) is not None:
            words.add("#/")
        if _YEARISH.search(text) is not None:
            words.add("#y")
    if _ALL_GATE_WORDS.isdisjoint(words):
        return None
    candidates: list[_Candidate] = []
    for index, (pattern, _handler, (first, second)) in enumerate(_RULES):
        if first.isdisjoint(words) or (second and second.isdisjoint(words)):
            continue
        for m in pattern.finditer(text):
            candidates.append((m.start(), -m.end(), index, m))
    if not candidates:
        return None
    candidates.sort(key=lambda cand: cand[:3])
    c = _Ctx(now)
    for _start, _neg_end, index, m in candidates:
        found = _try_candidate(query, m, _RULES[index][1], c)
        if found is not None:
            return found
    return None


def _try_candidate(query: str, m: re.Match[str], handler: _Handler, c: _Ctx) -> TimeRange | None:
    """``m`` matched the lowercased ``query``, position for position."""
    text, start = m.string, m.start()
    lookback = max(0, start - _LOOKBACK)
    if _BLOCKED_BEFORE.search(text, lookback, start) is not None:
        return None
    since = _SINCE_BEFORE.search(text, lookback, start)
    if since is not None:
        span = _resolve(m, handler, c, anchored=True)
        try:
            until = c.now + _EPS
        except OverflowError:
            return None
        if span is None or not span[0] < until:
            return None
        return TimeRange(start=span[0], end=until, phrase=query[since.start() : m.end()])
    if _CONNECTOR.match(text, m.end()) is not None:
        # "from June to July": being half of a range is what lets a bare month count.
        first = _resolve(m, handler, c, anchored=True)
        tail = _range_end(m, c, first[0]) if first is not None else None
        if first is not None and tail is not None:
            return TimeRange(start=first[0], end=tail[1], phrase=query[start : tail[0]])
    span = _resolve(m, handler, c, anchored=False)
    if span is None:
        return None
    return TimeRange(start=span[0], end=span[1], phrase=query[start : m.end()])


_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([?.!,;:)])")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
_DANGLING_COMMA = re.compile(r",\s*(?=[?.!,;:]|$)")
_EDGE_JUNK = re.compile(rf"^[\s,;:{_DASHES}]+|[\s,;:{_DASHES}]+$")


def strip_time_expression(query: str, found: TimeRange) -> str:
    """``query`` without ``found.phrase`` (its first occurrence), whitespace and stray
    punctuation tidied; unchanged but tidied when the phrase is not in it."""
    phrase = found.phrase
    index = query.find(phrase) if phrase else -1
    if index < 0 and phrase:
        hit = re.search(re.escape(phrase), query, re.IGNORECASE)
        index = hit.start() if hit is not None else -1
    if index >= 0:
        query = query[:index] + " " + query[index + len(phrase) :]
    text = _SPACES.sub(" ", _EMPTY_BRACKETS.sub("", query))
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _DANGLING_COMMA.sub("", text)
    text = _EDGE_JUNK.sub("", text)
    return text if any(ch.isalnum() for ch in text) else ""
