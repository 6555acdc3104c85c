"""Forgetting through the service (issue 37, items 1 and 2): ``DELETE /people/{id}`` (the key
needed, cross-site refused, the entry gone from every file, audited) and ``--retain``, the
schedule that forgets what was last seen before the span."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_utils import Server

from personkit.cli import main
from personkit.data.times import UTC, iso
from personkit.index import IndexInfo, PeopleIndex
from personkit.index.audit import read_audit
from personkit.serve.access import access_for

KEY = "k3y-for-forgetting"


def holding(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def serve_with_retention(checkpoint: Path, index_dir: Path, keep: str) -> Server:
    """The service of ``index_dir`` behind :data:`KEY` with a retention of ``keep``."""
    from personkit.inference import Predictor
    from personkit.serve.app import create_app
    from personkit.serve.retention import Retention
    from personkit.serve.service import Service

    service = Service(Predictor.from_checkpoint(checkpoint, "cpu"), PeopleIndex.open(index_dir))
    return Server(create_app(service, access_for("127.0.0.1", KEY),
                             Retention(service.index, keep, service.record)))


def test_delete_forgets_a_person_everywhere(checkpoint, index_dir, tmp_path):
    copy = tmp_path / "people"
    shutil.copytree(index_dir, copy, ignore=shutil.ignore_patterns("audit.jsonl*"))
    index = PeopleIndex.open(copy)
    entry = index.get(index.search(k=1)["hits"][0]["id"])
    count = index.store.count()
    assert holding(copy, entry.thumbnail)
    srv = serve_with_retention(checkpoint, copy, "3650d")
    auth = {"Authorization": f"Bearer {KEY}"}
    url = f"{srv.url}/people/{entry.id}"
    try:
        assert httpx.delete(url, timeout=30).status_code == 401
        r = httpx.delete(url, headers={**auth, "Sec-Fetch-Site": "cross-site"}, timeout=30)
        assert r.status_code == 403
        r = httpx.delete(url, headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json() == {"forgotten": [entry.id], "entries": count - 1}
        r = httpx.get(f"{srv.url}/tracks/{entry.id}", headers=auth, timeout=30)
        assert r.status_code == 404 and entry.id in r.json()["error"]
        r = httpx.delete(f"{srv.url}/people/nobody:7", headers=auth, timeout=30)
        assert r.status_code == 404 and "nobody:7" in r.json()["error"]
    finally:
        srv.stop()
    assert not holding(copy, entry.thumbnail)
    assert not holding(copy, np.asarray(entry.embedding, np.float32).tobytes())
    records = read_audit(copy)
    forgets = [r for r in records if r["event"] == "forget"]
    assert len(forgets) == 1 and forgets[0]["id"] == entry.id and forgets[0]["key"] != "local"
    assert records[0]["event"] == "retention" and records[0]["forgotten"] == 0  # at start


@pytest.mark.parametrize("backend", ["lancedb", "qdrant"])
def test_retention_runs_at_start_and_on_its_schedule(tmp_path, backend):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "index"))
    from index_utils import VOCAB, make_entries

    from personkit.serve.retention import Retention

    index = PeopleIndex.create_or_open(tmp_path / "idx", IndexInfo(
        "m", 16, VOCAB, None, extra={"backend": backend} if backend == "qdrant" else {}))
    now, rng = datetime.now(UTC), np.random.default_rng(0)
    seen = [now - timedelta(days=3), now - timedelta(seconds=0.3), None]
    entries = [dataclasses.replace(e, first_seen=iso(t) if t else None,
                                   last_seen=iso(t) if t else None,
                                   thumbnail=b"\xff\xd8\xff\xe0" + rng.bytes(300))
               for e, t in zip(make_entries("cam1", 3, 16), seen, strict=True)]
    index.add("cam1", entries)
    records = []
    retention = Retention(index, "1s", lambda *a, **k: records.append((a, k)), interval=0.3)
    retention.start()
    try:
        deadline = time.monotonic() + 20
        while index.store.count() > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        retention.close()
    assert [r["id"] for r in index.search(k=5)["hits"]] == ["cam1:3"]  # undated: kept
    assert retention.runs >= 2 and records[0][0][0] == "retention"
    assert records[0][1]["ids"] == ["cam1:1"]  # the first run, at start: 3 days old
    assert any(r[1]["ids"] == ["cam1:2"] for r in records[1:])  # a later one
    for e in entries[:2]:
        assert not holding(index.path, e.thumbnail)
        assert not holding(index.path, base64.b64encode(e.thumbnail))
    assert holding(index.path, entries[2].thumbnail if backend == "lancedb"
                   else base64.b64encode(entries[2].thumbnail))


def test_serve_refuses_a_bad_retention_before_loading_anything(tmp_path, capsys):
    assert main(["serve", "--index", str(tmp_path), "--retain", "0d"]) == 2
    assert "--retain '0d' keeps nothing" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "none.safetensors"), "--retain", "7d"]) == 2
    assert "--retain 7d needs the index whose entries it forgets" in capsys.readouterr().err
