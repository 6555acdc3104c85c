"""Forgetting people (issue 37): ``personkit forget``, ``DELETE /people/{id}`` and retention.

Forgotten means gone: the entries' rows leave the store so that no file of it keeps their bytes
(:meth:`~personkit.index.store.LanceStore.forget`: data files rewritten, indices rebuilt, old
versions deleted; :meth:`~personkit.index.qdrant.QdrantStore.forget`: points deleted, the
local mode's SQLite file vacuumed), and their tracks leave the tracking output the index keeps
in ``INDEX/tracks/`` (:func:`~personkit.track.redact.remove_tracks`; a forgotten camera's
folders go whole). Everything runs under the index's write lock; a selection naming an entry
or camera the index does not have deletes nothing.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from personkit.data.times import UTC, iso, parse_span, parse_time, us_from_iso
from personkit.index.entries import RECORDING_SEP, recording_key
from personkit.index.people import MAX_LISTED, PeopleIndex
from personkit.runtime import exclusive


def forget(index: PeopleIndex, entries: Sequence[str] = (), camera: str | None = None,
           before: str | datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Forget the ``entries`` (ids), or every entry of ``camera`` and/or last seen before
    ``before`` (a typed time: ISO-8601 or a span before now, ``7d``); ``dry_run``: say whom,
    delete nothing.

    Returns:
        ``{"forgotten": ids, "undated": entries kept because they have no capture time (with
        ``before`` only), "files": paths under the index rewritten or deleted,
        "entries": entries left}``.

    Raises:
        ValueError: no selection, an entry id the index does not have (naming it), entries
            together with a camera or time, an unknown camera (listing the index's) or an
            unreadable time; nothing is deleted then.
    """
    if not entries and camera is None and before is None:
        raise ValueError("say whom to forget: --entry ID, --camera NAME or --before TIME")
    if entries and (camera is not None or before is not None):
        raise ValueError("forget either entries by id (--entry) or by camera and time "
                         "(--camera, --before), not both at once")
    with exclusive(index.path / "index.lock", f"index {index.path}", wait=True):
        rows, undated = _selected(index, list(entries), camera, before)
        files: list[Path] = []
        if not dry_run:
            index.store.forget([r["id"] for r in rows])
            files = _forget_tracks(index.path, rows, camera if before is None else None)
    return {"forgotten": sorted(r["id"] for r in rows), "undated": undated,
            "files": [str(f.relative_to(index.path)) for f in files],
            "entries": index.store.count()}


def retain(index: PeopleIndex, keep: str, now: datetime | None = None,
           dry_run: bool = False) -> dict[str, Any]:
    """Retention: forget every entry last seen more than ``keep`` (a span: ``7d``) ago."""
    span = parse_span(keep, "--retain")
    return forget(index, before=(now or datetime.now(UTC)) - span, dry_run=dry_run)


def _selected(index: PeopleIndex, entries: list[str], camera: str | None,
              before: str | datetime | None) -> tuple[list[dict[str, Any]], int]:
    """The rows to forget and how many of the camera's entries have no capture time (kept
    by a time selection)."""
    if entries:
        rows = []
        for entry_id in dict.fromkeys(entries):
            try:
                e = index.get(entry_id)
            except KeyError as error:
                raise ValueError(error.args[0]) from None
            rows.append({"id": e.id, "source": e.source, "recording": e.recording or e.source,
                         "track_id": e.track_id})
        return rows, 0
    where: dict[str, Any] = {}
    if camera is not None:
        _check_camera(index, camera)
        where["source"] = camera
    rows = index.store.select(where)
    if before is None:
        return rows, 0
    cutoff = us_from_iso(iso(parse_time(before, "--before")))
    dated = [r for r in rows if r.get("last_seen_us") is not None]
    return [r for r in dated if r["last_seen_us"] < cutoff], len(rows) - len(dated)


def _check_camera(index: PeopleIndex, camera: str) -> None:
    cameras = sorted(index.store.sources())
    if camera not in cameras:
        shown = ", ".join(repr(c) for c in cameras[:MAX_LISTED])
        more = f" and {len(cameras) - MAX_LISTED} more" if len(cameras) > MAX_LISTED else ""
        raise ValueError(f"unknown camera {camera!r}: the people index {index.path} has "
                         f"{len(cameras)} camera(s): {shown or 'none'}{more}")


def _forget_tracks(index_dir: Path, rows: list[dict[str, Any]],
                   whole_camera: str | None) -> list[Path]:
    """Take the rows' tracks out of ``INDEX/tracks/KEY`` (a recording's tracking output;
    ``/`` in its key written ``@``); a camera forgotten whole loses its folders."""
    from personkit.track.redact import remove_tracks

    by_key: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        by_key[recording_key(r["source"], r["recording"])].add(int(r["track_id"]))
    touched: list[Path] = []
    for key, ids in sorted(by_key.items()):
        folder = index_dir / "tracks" / key.replace(RECORDING_SEP, "@")
        if not folder.is_dir():
            continue
        if whole_camera is not None:
            shutil.rmtree(folder)
            touched.append(folder)
        else:
            touched += remove_tracks(folder, ids)
    return touched
