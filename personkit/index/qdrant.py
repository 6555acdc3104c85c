"""The scale-out store: a Qdrant collection (the :class:`~personkit.index.store.Store`
interface).

``QdrantStore(url="http://host:6333", ...)`` talks to a Qdrant server or cluster (filterable
HNSW, sharding and replication on the server side, keyword payload indices on every attribute
so filters are applied inside the HNSW search); ``QdrantStore(path=...)`` runs qdrant-client's
local mode in-process (exact search in NumPy, one process at a time: for tests and small
indexes). Each entry is one point: its id a UUID derived from ``SOURCE:TRACK``, its payload
the entry's metadata, attribute labels and confidences and the thumbnail (base64 JPEG).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.extras import require
from personkit.index.entries import Entry
from personkit.index.store import META, entry_from_row, entry_row, hit_from_row

COLLECTION = "people"


def point_id(entry_id: str) -> str:
    """The Qdrant point id of an entry (a UUID: Qdrant takes no free-form string ids)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"personkit:{entry_id}"))


class QdrantStore:
    """People in a Qdrant collection; give ``url`` (a server) or ``path`` (local mode)."""

    name = "qdrant"

    def __init__(self, dim: int, attributes: Sequence[str], *, path: str | Path | None = None,
                 url: str | None = None):
        if (path is None) == (url is None):
            raise ValueError("QdrantStore needs exactly one of path (local mode) or url")
        client_mod = require("qdrant_client")
        self.m = require("qdrant_client.models")
        self.attributes, self.dim = list(attributes), dim
        self.client = (client_mod.QdrantClient(path=str(path)) if path is not None
                       else client_mod.QdrantClient(url=url))
        if not self.client.collection_exists(COLLECTION):
            self.client.create_collection(COLLECTION, vectors_config=self.m.VectorParams(
                size=dim, distance=self.m.Distance.COSINE))
            if url is not None:  # local mode has no payload indices
                for key in ("source", *(f"attr_{a}" for a in self.attributes)):
                    self.client.create_payload_index(COLLECTION, key,
                                                     self.m.PayloadSchemaType.KEYWORD)

    def _filter(self, where: Mapping[str, str]) -> Any:
        must = [self.m.FieldCondition(key=k if k == "source" else f"attr_{k}",
                                      match=self.m.MatchValue(value=v)) for k, v in where.items()]
        return self.m.Filter(must=must) if must else None

    def _point(self, e: Entry) -> Any:
        row = entry_row(e, self.attributes)
        vector = row.pop("vector").tolist()
        row["thumbnail"] = base64.b64encode(row["thumbnail"]).decode("ascii")
        return self.m.PointStruct(id=point_id(e.id), vector=vector, payload=row)

    def replace_source(self, source: str, entries: Sequence[Entry]) -> None:
        m = self.m
        ops = [m.DeleteOperation(delete=m.FilterSelector(filter=self._filter({"source": source})))]
        if entries:
            ops.append(m.UpsertOperation(upsert=m.PointsList(
                points=[self._point(e) for e in entries])))
        self.client.batch_update_points(COLLECTION, ops, wait=True)

    def _payload_fields(self) -> list[str]:
        return [*META, "attributes"]

    def search(self, vector: np.ndarray | None, where: Mapping[str, str],
               k: int) -> list[dict[str, Any]]:
        flt = self._filter(where)
        if vector is None:
            points, _ = self.client.scroll(COLLECTION, scroll_filter=flt, limit=k,
                                           with_payload=self._payload_fields())
            rows = sorted((p.payload for p in points),
                          key=lambda r: (r["source"], r["first_frame"], r["track_id"]))
            return [hit_from_row(r, self.attributes) for r in rows]
        res = self.client.query_points(COLLECTION, query=np.asarray(vector, float).tolist(),
                                       query_filter=flt, limit=k,
                                       with_payload=self._payload_fields())
        return [hit_from_row({**p.payload, "_distance": 1.0 - float(p.score)}, self.attributes)
                for p in res.points]

    def get(self, entry_id: str) -> Entry | None:
        found = self.client.retrieve(COLLECTION, [point_id(entry_id)], with_payload=True,
                                     with_vectors=True)
        if not found:
            return None
        row = dict(found[0].payload)
        row["thumbnail"] = base64.b64decode(row["thumbnail"])
        return entry_from_row({**row, "vector": found[0].vector}, self.attributes)

    def count(self) -> int:
        return int(self.client.count(COLLECTION, exact=True).count)

    def _scroll(self, payload: list[str], vectors: bool) -> list[Any]:
        out, offset = [], None
        while True:
            points, offset = self.client.scroll(COLLECTION, limit=1024, offset=offset,
                                                with_payload=payload, with_vectors=vectors)
            out += points
            if offset is None:
                return out

    def sources(self) -> dict[str, int]:
        names = [p.payload["source"] for p in self._scroll(["source"], False)]
        values, counts = np.unique(np.asarray(names, dtype=object), return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}

    def vectors(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        points = sorted(self._scroll(["id", "source", "track_id", "identity"], True),
                        key=lambda p: p.payload["id"])
        meta = [dict(p.payload) for p in points]
        emb = np.asarray([p.vector for p in points], np.float32).reshape(-1, self.dim)
        return meta, emb

    def close(self) -> None:
        self.client.close()
