"""The scale-out store: a Qdrant collection (the :class:`~personkit.index.store.Store`
interface).

``QdrantStore(url="http://host:6333", ...)`` talks to a Qdrant server or cluster (filterable
HNSW, sharding and replication on the server side, keyword payload indices on every attribute
so filters are applied inside the HNSW search); ``QdrantStore(path=...)`` runs qdrant-client's
local mode in-process (exact search in NumPy, one process at a time: for tests and small
indexes). Each entry is one point: its payload the entry's metadata, attribute labels and
confidences and the thumbnail (base64 JPEG).

Qdrant has no multi-point transaction, so a recording (a camera's, or the one named as the
camera: an older index's "source") is replaced in generations: the new entries are written as
new points (ids derived from the entry id and a fresh ``generation``, which the payload
carries), then one point of a second collection, ``COLLECTION_sources`` (one record a
recording, keyed by its entries' id prefix, 1-d dummy vectors), is overwritten to make that
generation the recording's current one, then the older generations are deleted. Readers see
only current generations, so a process killed at any step leaves the previous content; what it
wrote is removed when the store is next opened with no writer at work
(:meth:`QdrantStore.recover`) or when the recording is next written.
The records collection also holds the model identity and width the collection was made for.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from personkit.data.times import us_from_iso
from personkit.extras import require
from personkit.index.entries import Entry, recording_key
from personkit.index.store import (
    META,
    NEWEST,
    ORDER,
    SELECTED,
    TIME_TERMS,
    entry_from_row,
    entry_row,
    hit_from_row,
    order_key,
)

#: The collection of an index whose ``index.json`` names none (made before each index had one).
COLLECTION = "people"
#: The generation of points written before generations existed (adopted on open).
LEGACY = "legacy"
#: Points per upsert request.
BATCH = 512
META_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "personkit-meta"))
T = TypeVar("T")


class StoreBusyError(ValueError):
    """A local-mode Qdrant folder another client (another process) has open."""


def point_id(entry_id: str, generation: str = LEGACY) -> str:
    """The Qdrant point id of an entry in a generation (a UUID: Qdrant takes no free-form
    string ids); a legacy point keeps the id it was written with."""
    key = f"personkit:{entry_id}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key if generation == LEGACY
                          else f"{key}#{generation}"))


def record_id(key: str) -> str:
    """The id of a recording's record in the records collection (``key``:
    :func:`~personkit.index.entries.recording_key`; an older index's source is its key)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"personkit-source:{key}"))


class QdrantStore:
    """People in a Qdrant collection; give ``url`` (a server) or ``path`` (local mode).

    ``collection``: the collection (its records in ``COLLECTION_sources``); ``model``: the
    model identity the index is for, refused (with the width) when the collection was made for
    another; ``recover``: remove a crashed replace's points now (see :meth:`recover`).
    """

    name = "qdrant"

    def __init__(self, dim: int, attributes: Sequence[str], *, path: str | Path | None = None,
                 url: str | None = None, collection: str = COLLECTION,
                 model: str | None = None, recover: bool = True):
        if (path is None) == (url is None):
            raise ValueError("QdrantStore needs exactly one of path (local mode) or url")
        self.m = require("qdrant_client.models")
        self.attributes, self.dim = list(attributes), dim
        self.collection, self.records = collection, f"{collection}_sources"
        self.path = None if path is None else Path(path)
        self.client = _connect(path, url)
        try:
            self._create(server=url is not None)
            self._check_model(model)
            if recover:
                self.recover()
        except BaseException:
            self.client.close()
            raise

    def _create(self, server: bool) -> None:
        """The collection and its records collection, made when missing (on a server with
        keyword payload indices: local mode has none)."""
        m = self.m
        made = set()
        for name, size in ((self.collection, self.dim), (self.records, 1)):
            if not self.client.collection_exists(name):
                self.client.create_collection(name, vectors_config=m.VectorParams(
                    size=size, distance=m.Distance.COSINE))
                made.add(name)
        indices = []
        if self.collection in made:
            indices += [(self.collection, k) for k in ("source", *(f"attr_{a}" for a in
                                                               self.attributes))]
        if self.records in made:  # also a collection made before generations gets theirs
            indices += [(self.collection, "generation"), (self.records, "kind")]
        for name, key in indices if server else []:
            self.client.create_payload_index(name, key, m.PayloadSchemaType.KEYWORD)
        if self.collection in made and server:  # probability and time filters: ranges
            for a in self.attributes:
                self.client.create_payload_index(self.collection, f"prob_{a}",
                                                 m.PayloadSchemaType.FLOAT)
            for key in ("first_seen_us", "last_seen_us"):
                self.client.create_payload_index(self.collection, key,
                                                 m.PayloadSchemaType.INTEGER)
            self.client.create_payload_index(self.collection, "recording",
                                             m.PayloadSchemaType.KEYWORD)

    def _check_model(self, model: str | None) -> None:
        """Refuse a collection made for another model or width (naming both); record the model
        in a collection that has none yet."""
        width = self.client.get_collection(self.collection).config.params.vectors.size
        found = self.client.retrieve(self.records, [META_ID], with_payload=True)
        made_for = found[0].payload.get("model") if found else None
        if int(width) != self.dim or (model and made_for and made_for != model):
            raise ValueError(
                f"the Qdrant collection {self.collection} holds people of model "
                f"{made_for or 'unknown'} "
                f"(embedding width {width}), this index is for model {model} (width "
                f"{self.dim}): use another collection for this model")
        if model and not made_for:
            self.client.upsert(self.records, [self.m.PointStruct(
                id=META_ID, vector=[1.0], payload={"kind": "meta", "model": model,
                                                   "dim": self.dim})], wait=True)

    def recover(self) -> None:
        """Adopt points written before generations existed, then delete every point whose
        generation is not its source's current one (what a replace killed before it finished
        left). Only with no writer at work: a replace in progress has its new points there."""
        self._adopt_legacy()
        m = self.m
        gens = [r["generation"] for r in self._current().values()]
        stale = m.Filter(must_not=[m.FieldCondition(key="generation",
                                                    match=m.MatchAny(any=gens))] if gens
                         else None)  # no source: every point is stale
        self.client.delete(self.collection, m.FilterSelector(filter=stale), wait=True)

    def _adopt_legacy(self) -> None:
        """Points without a generation (an index made before them) become generation
        :data:`LEGACY` of their sources: the records first, so a kill in between leaves points
        that are adopted again on the next open, never deleted."""
        m = self.m
        legacy = m.Filter(must=[m.IsEmptyCondition(is_empty=m.PayloadField(key="generation"))])
        if not self.client.count(self.collection, count_filter=legacy, exact=True).count:
            return
        counts = Counter(p.payload["source"] for p in self._scroll(["source"], False, legacy))
        current = self._current()
        for source, n in counts.items():
            if source not in current:
                self._flip(source, "", LEGACY, n)
        self.client.set_payload(self.collection, {"generation": LEGACY}, points=legacy,
                                wait=True)

    def _current(self) -> dict[str, dict[str, Any]]:
        """Recording key -> its record (``source``, ``recording``, ``origin``,
        ``generation``, ``count``; an older record, of a source: its key is the source)."""
        m = self.m
        kind = m.Filter(must=[m.FieldCondition(key="kind", match=m.MatchValue(value="source"))])
        out, offset = {}, None
        while True:
            points, offset = self.client.scroll(self.records, scroll_filter=kind, limit=1024,
                                                offset=offset, with_payload=True)
            out.update({p.payload.get("key", p.payload["source"]): dict(p.payload)
                        for p in points})
            if offset is None:
                return out

    def _consistent(self, read: Callable[[dict[str, dict[str, Any]]], T]) -> T:
        """``read(current records)``, run again while a replace made another generation
        current under it (its older points may be gone already)."""
        current = self._current()
        for _ in range(4):
            out = read(current)
            now = self._current()
            if now == current:
                break
            current = now
        return out

    def _filter(self, where: Mapping[str, str], current: Mapping[str, Mapping[str, Any]]) -> Any:
        m = self.m
        gens = [r["generation"] for r in current.values()]
        must = [m.FieldCondition(key="generation", match=m.MatchAny(any=gens))]
        must += [self._condition(k, v) for k, v in where.items()]
        return m.Filter(must=must)

    def _condition(self, key: str, value: Any) -> Any:
        """One filter term: a label (``attr_NAME``), a source, a time (``since``/``until``:
        a range on the seen times, which a point without them fails) or a probability
        comparison (``prob_NAME``, a payload range)."""
        m = self.m
        if key in TIME_TERMS:
            column, op = TIME_TERMS[key]
            bound = {">=": "gte", "<=": "lte"}[op]
            return m.FieldCondition(key=column, range=m.Range(**{bound: us_from_iso(value)}))
        if isinstance(value, tuple):
            bound = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}[value[0]]
            return m.FieldCondition(key=f"prob_{key}", range=m.Range(**{bound: value[1]}))
        return m.FieldCondition(key=key if key == "source" else f"attr_{key}",
                                match=m.MatchValue(value=value))

    def _point(self, e: Entry, generation: str) -> Any:
        row = entry_row(e, self.attributes)
        vector = row.pop("vector").tolist()
        row["thumbnail"] = base64.b64encode(row["thumbnail"]).decode("ascii")
        row["generation"] = generation
        return self.m.PointStruct(id=point_id(e.id, generation), vector=vector, payload=row)

    def replace_source(self, source: str, entries: Sequence[Entry], recording: str = "") -> None:
        generation = uuid.uuid4().hex
        points = [self._point(e, generation) for e in entries]
        for start in range(0, len(points), BATCH):
            self.client.upsert(self.collection, points[start:start + BATCH], wait=True)
        origin = next((e.origin for e in entries if e.origin), None)
        self._flip(source, recording, generation, len({p.id for p in points}), origin)
        self._drop_old(source, recording, generation)

    def upsert(self, entries: Sequence[Entry]) -> None:
        """Entries written by id into their recordings' current generations (a recording
        without one gets a new generation, made current once its points are written); each
        recording's count is then written again from its points. An entry written again
        lands on the same point (its id and generation make the point's id)."""
        groups: dict[tuple[str, str], list[Entry]] = {}
        for e in entries:
            groups.setdefault((e.source, e.recording), []).append(e)
        current = self._current()
        for (source, recording), group in groups.items():
            record = current.get(recording_key(source, recording)) or {}
            generation = record.get("generation") or uuid.uuid4().hex
            points = [self._point(e, generation) for e in group]
            for start in range(0, len(points), BATCH):
                self.client.upsert(self.collection, points[start:start + BATCH], wait=True)
            origin = record.get("origin") or next((e.origin for e in group if e.origin), None)
            self._flip(source, recording, generation, self._generation_count(
                generation, source), origin)

    def _generation_count(self, generation: str, source: str) -> int:
        """Points of a recording's generation (:data:`LEGACY` is shared: its camera's)."""
        m = self.m
        must = [m.FieldCondition(key="generation", match=m.MatchValue(value=generation))]
        if generation == LEGACY:
            must.append(m.FieldCondition(key="source", match=m.MatchValue(value=source)))
        return int(self.client.count(self.collection, count_filter=m.Filter(must=must),
                                     exact=True).count)

    def _flip(self, source: str, recording: str, generation: str, count: int,
              origin: str | None = None) -> None:
        """Make ``generation`` the recording's current one (one point written: atomic); a
        recording of no entries loses its record."""
        key = recording_key(source, recording)
        if not count:
            self.client.delete(self.records, self.m.PointIdsList(points=[record_id(key)]),
                               wait=True)
            return
        self.client.upsert(self.records, [self.m.PointStruct(
            id=record_id(key), vector=[1.0], payload={
                "kind": "source", "source": source, "recording": recording or source,
                "key": key, "origin": origin, "generation": generation,
                "count": count})], wait=True)

    def _drop_old(self, source: str, recording: str, keep: str) -> None:
        """Delete the recording's points of every generation but ``keep`` (points written
        before recordings were kept belong to the one named as their camera)."""
        m = self.m
        self.client.delete(self.collection, m.FilterSelector(filter=m.Filter(
            must=self._recording_terms(source, recording),
            must_not=[m.FieldCondition(key="generation", match=m.MatchValue(value=keep))])),
            wait=True)

    def _recording_terms(self, source: str, recording: str) -> list[Any]:
        """Conditions passing the points of camera ``source``'s ``recording`` ("": the one
        named as the camera, which also holds points written before recordings were kept)."""
        m = self.m
        name = recording or source
        same = [m.FieldCondition(key="recording", match=m.MatchValue(value=name))]
        if name == source:
            same.append(m.IsEmptyCondition(is_empty=m.PayloadField(key="recording")))
        return [m.FieldCondition(key="source", match=m.MatchValue(value=source)),
                m.Filter(should=same)]

    def _payload_fields(self) -> list[str]:
        return [*META, "attributes"]

    def search(self, vector: np.ndarray | None, where: Mapping[str, str],
               k: int) -> list[dict[str, Any]]:
        def read(current: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
            if not current:
                return []
            flt = self._filter(where, current)
            if vector is None:
                return self._first(flt, k)
            res = self.client.query_points(
                self.collection, query=np.asarray(vector, float).tolist(), query_filter=flt,
                limit=k, with_payload=self._payload_fields())
            return [hit_from_row({**p.payload, "_distance": 1.0 - float(p.score)},
                                 self.attributes) for p in res.points]

        return self._consistent(read)

    def _first(self, flt: Any, k: int) -> list[dict[str, Any]]:
        """The first ``k`` points passing ``flt``, newest first
        (:func:`~personkit.index.store.order_key`): the order's payload fields of every
        passing point, sorted, then those ``k`` points."""
        keys = sorted(self._scroll([NEWEST, *ORDER], False, flt),
                      key=lambda p: order_key(p.payload))
        ids = [p.id for p in keys[:k]]
        if not ids:
            return []
        found = {p.id: p.payload for p in self.client.retrieve(
            self.collection, ids, with_payload=self._payload_fields())}
        return [hit_from_row(found[i], self.attributes) for i in ids if i in found]

    def get(self, entry_id: str) -> Entry | None:
        key = entry_id.rpartition(":")[0]

        def read(current: dict[str, dict[str, Any]]) -> list[Any]:
            record = current.get(key)
            if record is None:
                return []
            return self.client.retrieve(self.collection,
                                        [point_id(entry_id, record["generation"])],
                                        with_payload=True, with_vectors=True)

        found = self._consistent(read)
        if not found:
            return None
        row = dict(found[0].payload)
        row["thumbnail"] = base64.b64decode(row["thumbnail"])
        return entry_from_row({**row, "vector": found[0].vector}, self.attributes)

    def count(self) -> int:
        return sum(int(r["count"]) for r in self._current().values())

    def _scroll(self, payload: list[str], vectors: bool, flt: Any = None) -> list[Any]:
        out, offset = [], None
        while True:
            points, offset = self.client.scroll(self.collection, scroll_filter=flt, limit=1024,
                                                offset=offset, with_payload=payload,
                                                with_vectors=vectors)
            out += points
            if offset is None:
                return out

    def sources(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for r in self._current().values():
            counts[r["source"]] += int(r["count"])
        return dict(sorted(counts.items()))

    def time_span(self) -> tuple[int | None, int | None]:
        current = self._current()
        points = self._scroll(["first_seen_us", "last_seen_us"], False,
                              self._filter({}, current)) if current else []
        firsts = [v for p in points if (v := p.payload.get("first_seen_us")) is not None]
        lasts = [v for p in points if (v := p.payload.get("last_seen_us")) is not None]
        return min(firsts, default=None), max(lasts, default=None)

    def versions(self) -> int | None:
        return None  # Qdrant keeps no table versions

    def recordings(self) -> list[dict[str, Any]]:
        return sorted(({"camera": r["source"], "recording": r.get("recording") or r["source"],
                        "origin": r.get("origin") or None, "entries": int(r["count"])}
                       for r in self._current().values()),
                      key=lambda r: (r["camera"], r["recording"]))

    def vectors(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        def read(current: dict[str, dict[str, Any]]) -> list[Any]:
            return self._scroll(["id", "source", "track_id", "identity"], True,
                                self._filter({}, current)) if current else []

        points = sorted(self._consistent(read), key=lambda p: p.payload["id"])
        meta = [dict(p.payload) for p in points]
        emb = np.asarray([p.vector for p in points], np.float32).reshape(-1, self.dim)
        return meta, emb

    def select(self, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        def read(current: dict[str, dict[str, Any]]) -> list[Any]:
            return self._scroll([*SELECTED, NEWEST], False,
                                self._filter(where, current)) if current else []

        return [{NEWEST: None, **p.payload,
                 "recording": p.payload.get("recording") or p.payload["source"]}
                for p in self._consistent(read)]

    def forget(self, ids: Sequence[str]) -> None:
        """The points of ``ids`` (every generation) deleted and their recordings' counts
        written again (a recording left empty loses its record). In local mode the SQLite
        file that keeps the points is then rewritten (``VACUUM``: a deleted row's bytes stay
        in the file's free pages until then); a Qdrant server removes deleted points from its
        segments itself (its vacuum optimizer), out of this client's reach."""
        m = self.m
        gone = sorted(set(ids))
        if not gone:
            return
        current = self._current()
        for start in range(0, len(gone), BATCH):
            self.client.delete(self.collection, m.FilterSelector(filter=m.Filter(must=[
                m.FieldCondition(key="id", match=m.MatchAny(any=gone[start:start + BATCH]))])),
                wait=True)
        for key in sorted({i.rpartition(":")[0] for i in gone}):
            record = current.get(key)
            if record is not None:
                self._recount(record)
        if self.path is not None:
            self._vacuum()

    def _recount(self, record: Mapping[str, Any]) -> None:
        """Write a recording's record again with the points of its generation there are."""
        m = self.m
        source = record["source"]
        recording = "" if record.get("recording") in (None, source) else record["recording"]
        count = self.client.count(self.collection, count_filter=m.Filter(must=[
            m.FieldCondition(key="generation", match=m.MatchValue(value=record["generation"])),
            *self._recording_terms(source, recording)]), exact=True).count
        self._flip(source, recording, record["generation"], int(count), record.get("origin"))

    def _vacuum(self) -> None:
        """Rewrite the local mode's SQLite files without their free pages."""
        import contextlib
        import sqlite3

        for db in sorted(self.path.rglob("storage.sqlite")):
            with contextlib.closing(sqlite3.connect(db)) as conn:
                conn.execute("VACUUM")

    def close(self) -> None:
        self.client.close()


def _connect(path: str | Path | None, url: str | None) -> Any:
    """A Qdrant client; a local folder another client holds is a :class:`StoreBusyError`."""
    client_mod = require("qdrant_client")
    if path is None:
        return client_mod.QdrantClient(url=url)
    try:
        return client_mod.QdrantClient(path=str(path))
    except RuntimeError as e:  # qdrant-client's only word for it is the message
        if "already accessed" not in str(e):
            raise
        raise StoreBusyError(f"the Qdrant folder {path} is open in another process (for "
                             f"example `personkit serve`): Qdrant's local mode lets one "
                             f"process at a time open it; stop that process, or keep the "
                             f"index on a Qdrant server (--qdrant-url)") from None
