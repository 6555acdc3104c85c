"""Who looked at whom (issue 37): every search, entry view, thumbnail fetch, deletion, retention
run and refused request of ``personkit serve`` (and every ``personkit forget``) appends one JSON
line to ``INDEX/audit.jsonl`` (time, client address, the key that was used, the route, the
filter and example, the number of hits, the ids forgotten), rotated by size
(the standard library's :class:`~logging.handlers.RotatingFileHandler`: ``audit.jsonl.1`` is
the previous file, up to ``backups`` of them). ``personkit audit INDEX --since 1d`` prints it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import logging.handlers
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
#: Rotate at 10 MB, keeping 5 earlier files: about 250,000 searches.
MAX_BYTES, BACKUPS = 10_000_000, 5


def key_id(authorization: str | None) -> str:
    """Who asked, without the key itself: ``key:`` and the first 12 hex digits of the key's
    SHA-256, or ``local`` for a request without one."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "local"
    return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:12]


class AuditLog:
    """The audit file of the index at ``index_dir`` (module docstring); safe to call from
    several threads (the handler holds a lock)."""

    def __init__(self, index_dir: str | Path, max_bytes: int = MAX_BYTES,
                 backups: int = BACKUPS):
        self.path = Path(index_dir) / AUDIT_FILE
        self.handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")

    def write(self, event: str, client: str | None, key: str, **details: Any) -> None:
        """Append one record: ``event`` (``search``, ``entry``, ``thumbnail``, ``refused``),
        the ``client`` address, the ``key`` id (:func:`key_id`) and ``details``."""
        from personkit.data.times import iso

        record = {"time": iso(datetime.datetime.now(datetime.UTC)), "event": event,
                  "client": client or "unknown", "key": key, **details}
        self.handler.handle(logging.makeLogRecord({"msg": json.dumps(record,
                                                                     ensure_ascii=False)}))

    def close(self) -> None:
        self.handler.close()


def read_audit(index_dir: str | Path, since: str | None = None) -> list[dict[str, Any]]:
    """Every audit record of the index at ``index_dir``, oldest first (rotated files
    included), those at or after ``since`` (ISO-8601 or a span before now: ``1d``) only.

    Raises:
        FileNotFoundError: the index has no audit file (no server has served it).
        ValueError: a line that is not a JSON record (naming the file and line).
    """
    from personkit.data.times import parse_time

    path = Path(index_dir) / AUDIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no audit file (written by personkit serve --index)")
    start = parse_time(since, "--since") if since else None
    files = sorted(path.parent.glob(AUDIT_FILE + ".*"),
                   key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    out = []
    for file in [*files, path]:
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{file}:{n}: not an audit record") from None
            if start is None or parse_time(record["time"], "time") >= start:
                out.append(record)
    return out
