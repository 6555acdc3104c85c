"""A persistent people index: a folder holding ``index.json`` (the embedding space and
attribute vocabulary, :class:`~personkit.index.entries.IndexInfo`) and a vector store
(:mod:`personkit.index.store`).

Writes take the folder's lock (``index.lock``; other writers wait), so concurrent appends from
threads or processes lose nothing; each source is replaced in one store commit, so re-indexing a
source leaves no duplicates and a process killed while indexing leaves an index that opens
(rerunning completes it). Searches never wait for writers.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.checkpoint import write_json
from personkit.index.entries import (
    RECORDING_SEP,
    EmptyIndexError,
    Entry,
    ExampleError,
    FilterError,
    IndexInfo,
    parse_where,
    recording_key,
)
from personkit.index.store import Store, sort_hits
from personkit.runtime import LockedError, exclusive

INDEX_FILE = "index.json"
#: The vector stores an index can keep its people in (``personkit index --store``), the
#: default first: :class:`~personkit.index.store.LanceStore` and
#: :class:`~personkit.index.qdrant.QdrantStore`.
BACKENDS = ("lancedb", "qdrant")
DEFAULT_BACKEND = BACKENDS[0]
#: The most cameras an unknown-camera error lists (then it says how many more there are).
MAX_LISTED = 30


class PeopleIndex:
    """People from many sources in one store; see the module docstring.

    Use :meth:`open` for an existing index and :meth:`create_or_open` to add to one that
    may not exist yet.
    """

    def __init__(self, path: Path, info: IndexInfo, store: Store):
        self.path, self.info, self.store = path, info, store

    @staticmethod
    def _store(path: Path, info: IndexInfo) -> Store:
        if info.extra.get("backend", DEFAULT_BACKEND) == "qdrant":
            return _qdrant_store(path, info)
        from personkit.index.store import LanceStore

        return LanceStore(path / "lance", info.dim, list(info.attributes))

    @classmethod
    def open(cls, path: str | Path) -> PeopleIndex:
        """An existing index.

        Raises:
            FileNotFoundError: no index at ``path``.
            ValueError: ``index.json`` is unreadable.
        """
        path = Path(path)
        info = read_info(path)
        if info is None:
            raise FileNotFoundError(f"no people index at {path} (no {INDEX_FILE}); make one "
                                    f"with `personkit index {path} SOURCE --model RUN`")
        return cls(path, info, cls._store(path, info))

    @classmethod
    def create_or_open(cls, path: str | Path, info: IndexInfo) -> PeopleIndex:
        """The index at ``path``, created for ``info`` if missing.

        Raises:
            ValueError: it exists for another model (naming both), or ``path`` is not a
                writable folder.
        """
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            with exclusive(path / "index.lock", f"index {path}", wait=True):
                found = read_info(path)
                if found is None:
                    found = _named_collection(info)
                    write_json(path / INDEX_FILE, found.to_dict(), indent=1, end="")
        except OSError as e:
            raise ValueError(f"cannot write a people index at {path}: {e.strerror or e}") from e
        found.check_same_space(info, f"index {path}")
        return cls(path, found, cls._store(path, found))

    def add(self, source: str, entries: Sequence[Entry], recording: str = "") -> None:
        """Make ``entries`` the whole content of camera ``source``'s ``recording`` ("": the
        one named as the camera); its earlier entries go, the camera's other recordings stay.

        Raises:
            ValueError: a recording name holding ``/`` (it separates a camera from its
                recording in entry ids), an entry of another recording, width or attribute
                set.
        """
        if RECORDING_SEP in recording:
            raise ValueError(f"recording {recording!r} of camera {source!r}: a recording's "
                             f"name cannot hold {RECORDING_SEP!r}, which separates a camera "
                             f"from its recording in entry ids")
        key = recording_key(source, recording)
        for e in entries:
            if e.key != key:
                raise ValueError(f"entry {e.id} is not of recording {key!r}")
            if e.embedding.shape != (self.info.dim,):
                raise ValueError(f"entry {e.id}: embedding of shape {e.embedding.shape}, the "
                                 f"index holds width {self.info.dim}")
            if set(e.attributes) != set(self.info.attributes):
                raise ValueError(f"entry {e.id}: attributes {sorted(e.attributes)}, the index "
                                 f"holds {sorted(self.info.attributes)}")
        with exclusive(self.path / "index.lock", f"index {self.path}", wait=True):
            self.store.replace_source(source, entries, recording)

    def upsert(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` by id, in one store write: an entry whose id the index holds is
        replaced, a new one added, the others stay (live ingest writes a running track again
        as it grows: written twice, an entry is still there once).

        Raises:
            ValueError: a recording name holding ``/``, an entry of another width or
                attribute set.
        """
        for e in entries:
            if RECORDING_SEP in e.recording:
                raise ValueError(f"entry {e.id}: a recording's name cannot hold "
                                 f"{RECORDING_SEP!r}")
            self._check_entry(e)
        if entries:
            with exclusive(self.path / "index.lock", f"index {self.path}", wait=True):
                self.store.upsert(entries)

    def _check_entry(self, e: Entry) -> None:
        """An entry of this index's width and attribute set, or a ValueError naming it."""
        if e.embedding.shape != (self.info.dim,):
            raise ValueError(f"entry {e.id}: embedding of shape {e.embedding.shape}, the "
                             f"index holds width {self.info.dim}")
        if set(e.attributes) != set(self.info.attributes):
            raise ValueError(f"entry {e.id}: attributes {sorted(e.attributes)}, the index "
                             f"holds {sorted(self.info.attributes)}")

    def search(self, example: np.ndarray | None = None,
               where: str | Mapping[str, str] | None = None, k: int = 10,
               exclude: str | None = None, since: str | None = None,
               until: str | None = None, cameras: Collection[str] = ()) -> dict[str, Any]:
        """The ``k`` nearest people to ``example`` (an embedding) among those passing
        ``where`` (:func:`~personkit.index.entries.parse_where`) and seen between ``since`` and
        ``until`` (typed times: :func:`~personkit.data.times.time_range`; an entry without
        times passes no time filter), or without an example the first ``k`` passing them,
        newest first. Each hit has ``same_person``: its distance is within the
        model's calibrated threshold between track means (:attr:`IndexInfo.same_person_threshold`;
        None when the model has none). ``exclude``: an entry id
        left out (the example itself, when it is an entry). ``cameras``: cameras that write
        into the index (a service's live cameras): one of them with nobody yet, or the index
        still empty while they run, finds nobody without an error.

        Raises:
            EmptyIndexError: the index holds nobody (and no camera of ``cameras`` writes in).
            FilterError: a bad filter (:func:`~personkit.index.entries.parse_where`), a
                ``camera=NAME`` naming a camera the index does not have and ``cameras`` does
                not name (listing them), an unreadable time or ``since`` after ``until``
                (naming them).
            ExampleError: an example of another width.
        """
        flt = parse_where(where, self.info.attributes)
        flt.update(_time_terms(since, until))
        vector = None
        if example is not None:
            vector = np.asarray(example, np.float32).reshape(-1)
            if vector.shape != (self.info.dim,):
                raise ExampleError(f"the example's embedding has width {vector.size}, the "
                                   f"index {self.path} holds width {self.info.dim}")
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        hits = self.store.search(vector, flt, k + (exclude is not None))
        if not hits:  # why nothing was found is asked only then
            self._check_found(flt, cameras)
        hits = [h for h in (sort_hits(hits) if vector is not None else hits)
                if h["id"] != exclude][:k]
        threshold = self.info.same_person_threshold
        for h in hits:
            h["same_person"] = (None if threshold is None or h["distance"] is None
                                else bool(h["distance"] <= threshold))
        return {"where": flt, "k": k, "threshold": threshold, "hits": hits}

    def _check_found(self, flt: Mapping[str, Any], live: Collection[str] = ()) -> None:
        """After a search that found nobody: an :class:`EmptyIndexError` when the index is
        empty (and no camera of ``live`` writes into it), a :class:`FilterError` listing the
        cameras when ``source=NAME`` names none of them (nor of ``live``); nothing when the
        filter just passes nobody."""
        source = flt.get("source")
        if live and (source is None or source in live):
            return
        if not live and self.store.count() == 0:
            raise EmptyIndexError(f"the people index {self.path} is empty: add people with "
                                  f"`personkit index {self.path} SOURCE --model RUN`")
        if source is None:
            return
        cameras = sorted({*self.store.sources(), *live})
        if source not in cameras:
            shown = ", ".join(repr(c) for c in cameras[:MAX_LISTED])
            more = f" and {len(cameras) - MAX_LISTED} more" if len(cameras) > MAX_LISTED else ""
            raise FilterError(f"unknown camera source={source!r} in the filter: the people "
                              f"index {self.path} has {len(cameras)} camera(s): {shown}{more}")

    def get(self, entry_id: str) -> Entry:
        """One entry; KeyError naming it when the index has none of that id."""
        entry = self.store.get(entry_id)
        if entry is None:
            raise KeyError(f"no entry {entry_id!r} in the people index {self.path}")
        return entry

    def summary(self) -> dict[str, Any]:
        """Entries, sources and the model of the index."""
        return {"path": str(self.path), "store": self.store.name, "entries": self.store.count(),
                "sources": self.store.sources(), **self.info.to_dict()}

    def stats(self) -> dict[str, Any]:
        """What the index holds and what it costs (``personkit index INDEX --stats``): entries
        per camera, recordings, the earliest and latest capture time, the store's table
        versions (None for Qdrant) and the bytes on disk (the store's and the whole folder's,
        tracked sources and thumbnails included)."""
        from personkit.data.times import iso_from_us

        first, last = self.store.time_span()
        files = [p for p in self.path.rglob("*") if p.is_file()]
        store_dir = self.path / ("lance" if self.store.name == "lancedb" else "qdrant")
        return {"path": str(self.path), "store": self.store.name,
                "entries": self.store.count(), "cameras": self.store.sources(),
                "recordings": len(self.store.recordings()),
                "first_seen": iso_from_us(first), "last_seen": iso_from_us(last),
                "table_versions": self.store.versions(),
                "bytes": {"store": sum(p.stat().st_size for p in files
                                       if store_dir in p.parents),
                          "total": sum(p.stat().st_size for p in files)}}

    def evaluate(self) -> dict[str, Any]:
        """Cross-camera ReID on the index itself: every entry with a ground-truth identity
        queries the others under the Market-1501 rule (same identity in the same source does
        not count), cosine distances: rank-1, rank-5 and mAP (torchreid's convention)."""
        from personkit.metrics.reid import evaluate_reid

        meta, emb = self.store.vectors()
        keep = [i for i, m in enumerate(meta) if m["identity"]]
        if not keep:
            raise ValueError(f"no entry of {self.path} has a ground-truth identity")
        ids = sorted({meta[i]["identity"] for i in keep})
        cams = sorted({meta[i]["source"] for i in keep})
        pids = np.array([ids.index(meta[i]["identity"]) for i in keep])
        camids = np.array([cams.index(meta[i]["source"]) for i in keep])
        x = emb[keep]
        dist = 1.0 - x @ x.T
        r = evaluate_reid(dist, pids, pids, camids, camids, max_rank=max(5, len(keep)))
        return {"queries": int(r["num_valid_queries"]), "entries": len(keep),
                "rank1": float(r["cmc"][0]), "rank5": float(r["cmc"][4]), "mAP": float(r["mAP"])}


def _time_terms(since: str | None, until: str | None) -> dict[str, str]:
    """``since``/``until`` as filter terms (ISO text), a FilterError when unreadable."""
    from personkit.data.times import time_range

    try:
        start, end = time_range(since, until, ("since", "until"))
    except ValueError as e:
        raise FilterError(str(e)) from None
    return {k: v for k, v in (("since", start), ("until", end)) if v is not None}


def _named_collection(info: IndexInfo) -> IndexInfo:
    """``info`` for a new index: a Qdrant index gets a collection of its own
    (``personkit_<random hex>``), kept in ``index.json``."""
    if info.extra.get("backend") != "qdrant" or info.extra.get("qdrant_collection"):
        return info
    name = f"personkit_{secrets.token_hex(8)}"
    return dataclasses.replace(info, extra={**info.extra, "qdrant_collection": name})


def _qdrant_store(path: Path, info: IndexInfo) -> Store:
    """The Qdrant store of the index at ``path``: its own collection (``people`` for an index
    made before collections were named), checked to hold this model. A crashed replace's
    points are removed when no writer holds the index's lock (a writer at work may have new
    points there that are not current yet)."""
    from personkit.index.qdrant import COLLECTION, QdrantStore, StoreBusyError

    url = info.extra.get("qdrant_url")
    try:
        store = QdrantStore(info.dim, list(info.attributes), url=url,
                            path=None if url else path / "qdrant",
                            collection=info.extra.get("qdrant_collection", COLLECTION),
                            model=info.model, recover=False)
    except StoreBusyError:
        raise StoreBusyError(f"the people index {path} is open in another process (for example "
                             f"`personkit serve`): an index in Qdrant's local mode opens in one "
                             f"process at a time; stop that process, or keep the index on a "
                             f"Qdrant server (--qdrant-url)") from None
    try:
        with exclusive(path / "index.lock", f"index {path}"):
            store.recover()
    except (LockedError, OSError):  # a writer at work, or a folder this process cannot lock:
        pass  # the next replace of a source removes that source's leftovers
    return store


def read_info(path: Path) -> IndexInfo | None:
    """The ``index.json`` of ``path`` (None when there is none)."""
    f = Path(path) / INDEX_FILE
    if not f.is_file():
        return None
    try:
        return IndexInfo.from_dict(json.loads(f.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{f}: not a personkit index file ({e})") from None
