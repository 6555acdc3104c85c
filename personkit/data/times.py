"""Capture times: when a person was seen, as ISO-8601 UTC text (``2026-01-05T14:00:02.080000Z``,
what ``tracks.json``, the index and search results show), as microseconds since the Unix epoch
(what the index stores, filters and sorts on: exact integers), and the times users type
(``--start-time``, ``--since``, ``--until``, and the service's ``since``/``until``).

A typed time is ISO-8601 (a time without a zone is UTC: ``2026-01-05T14:00``,
``2026-01-05 14:00:00+01:00``, ``2026-01-05``) or, where a span before now is allowed, a number
and a unit: ``90s``, ``30m``, ``2h``, ``7d``, ``1w``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: ``30m``, ``2h``, ``1.5d``: a span before now.
RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: How a start time was found (``tracks.json``'s and an entry's ``time_source``), in the order
#: they are tried for a file or a folder; a live source uses the wall clock.
TIME_SOURCES = ("start_time", "creation_time", "mtime", "wall_clock")
#: Container times before this are placeholders (a camera's unset clock), not capture times.
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)


def iso(t: datetime) -> str:
    """``t`` as ISO-8601 UTC text with microseconds and ``Z`` (fixed width: text order is time
    order)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_from_us(us: int | None) -> str | None:
    """Microseconds since the epoch -> ISO text (None stays None)."""
    return None if us is None else iso(EPOCH + timedelta(microseconds=int(us)))


def us_from_iso(text: str | None) -> int | None:
    """ISO text -> microseconds since the epoch, exactly (None stays None)."""
    if text is None:
        return None
    return (parse_time(text, "time", relative=False) - EPOCH) // timedelta(microseconds=1)


def seen_at(start: datetime | None, seconds: float | None) -> str | None:
    """The ISO time ``seconds`` after ``start`` (None when either is unknown)."""
    if start is None or seconds is None:
        return None
    return iso(start + timedelta(seconds=float(seconds)))


def parse_time(text: str | datetime, what: str = "time", relative: bool = True,
               now: datetime | None = None) -> datetime:
    """A typed time (module docstring) as an aware UTC datetime; with ``relative`` a span
    before ``now`` (default: the clock) too.

    Raises:
        ValueError: naming ``what`` and the text.
    """
    if isinstance(text, datetime):
        return text.replace(tzinfo=UTC) if text.tzinfo is None else text.astimezone(UTC)
    value = str(text).strip()
    span = RELATIVE.match(value) if relative else None
    if span:
        ago = timedelta(seconds=float(span[1]) * UNIT_SECONDS[span[2]])
        return (now or datetime.now(UTC)) - ago
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        forms = " or a span before now (30m, 2h, 7d)" if relative else ""
        raise ValueError(f"{what} {str(text)!r} is not an ISO-8601 time (e.g. "
                         f"2026-01-05T14:00:00Z; without a zone it is UTC){forms}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_span(text: str, what: str = "span") -> timedelta:
    """A span typed as a number and a unit (``30m``, ``2h``, ``7d``, ``1w``) as a timedelta.

    Raises:
        ValueError: naming ``what`` and the text, when it is unreadable or not above zero.
    """
    span = RELATIVE.match(str(text))
    if not span:
        raise ValueError(f"{what} {str(text)!r} is not a span: a number and a unit, s, m, h, "
                         f"d or w (30m, 2h, 7d)")
    seconds = float(span[1]) * UNIT_SECONDS[span[2]]
    if seconds <= 0:
        raise ValueError(f"{what} {str(text)!r} keeps nothing: give a span above zero (7d)")
    return timedelta(seconds=seconds)


def time_range(since: str | datetime | None, until: str | datetime | None,
               names: tuple[str, str] = ("--since", "--until"),
               now: datetime | None = None) -> tuple[str | None, str | None]:
    """``since`` and ``until`` (typed times; None: open) as ISO text.

    Raises:
        ValueError: an unreadable time, or ``since`` after ``until`` (naming both).
    """
    now = now or datetime.now(UTC)
    start = None if since in (None, "") else parse_time(since, names[0], now=now)
    end = None if until in (None, "") else parse_time(until, names[1], now=now)
    if start is not None and end is not None and start > end:
        raise ValueError(f"{names[0]} {since} ({iso(start)}) is after {names[1]} {until} "
                         f"({iso(end)}): nothing can be seen in that range")
    return (None if start is None else iso(start)), (None if end is None else iso(end))


def container_time(value: str | None) -> datetime | None:
    """A container's ``creation_time`` metadata as a datetime; None when absent, unreadable
    or a placeholder before :data:`EARLIEST`."""
    if not value:
        return None
    try:
        t = parse_time(value, "creation_time", relative=False)
    except ValueError:
        return None
    return t if t >= EARLIEST else None
