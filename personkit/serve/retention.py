"""Retention in the service (issue 37): ``personkit serve --index IDX --retain 7d`` forgets
every entry last seen more than the span ago (:func:`~personkit.index.forget.retain`: gone
from every file), when the server starts and then on a schedule: every hour, or every tenth of
the span when that is shorter (at least a second). Each run that forgets someone is printed
and every run is one ``retention`` line of the audit. Entries without a capture time (indexes
made before times, crop folders) cannot be dated and are kept: ``personkit forget`` removes
them by id or camera.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from personkit.data.times import parse_span
from personkit.index.forget import retain
from personkit.index.people import PeopleIndex

log = logging.getLogger("personkit.serve")
#: The longest wait between two retention runs (seconds).
RETENTION_INTERVAL = 3600.0
#: How long stopping the server waits for a retention run in progress (seconds).
STOP_WAIT = 60.0


class Retention:
    """The retention schedule of ``index``: ``keep`` (a span, ``7d``), ``record(event,
    client, authorization, **details)`` writes the audit; ``interval`` overrides the
    schedule (seconds)."""

    def __init__(self, index: PeopleIndex, keep: str, record: Callable[..., None],
                 interval: float | None = None):
        span = parse_span(keep, "--retain").total_seconds()
        self.index, self.keep, self.record = index, keep, record
        self.interval = interval or min(RETENTION_INTERVAL, max(1.0, span / 10))
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="personkit-retention",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.run_once()
            self.stopping.wait(self.interval)

    def run_once(self) -> dict[str, Any] | None:
        """One retention run (None when it failed: logged, tried again at the next run)."""
        try:
            out = retain(self.index, self.keep)
        except Exception:
            log.exception("personkit serve: retention of %s failed", self.index.path.name)
            return None
        self.runs += 1
        self.record("retention", "server", None, route="retention", keep=self.keep,
                    forgotten=len(out["forgotten"]), ids=out["forgotten"])
        if out["forgotten"]:
            print(f"personkit serve: retention forgot {len(out['forgotten'])} entries last "
                  f"seen more than {self.keep} ago; {out['entries']} left", flush=True)
        return out

    def close(self) -> None:
        """Stop the schedule; a run in progress finishes first (a forget is never cut)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(STOP_WAIT)
