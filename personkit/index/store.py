"""Vector stores behind one small interface (:class:`Store`): the embedded default
(:class:`LanceStore`, LanceDB) and a scale-out one (:class:`~personkit.index.qdrant.QdrantStore`).

Both keep one row per :class:`~personkit.index.entries.Entry` (cosine distance ``1 - cos`` on
L2-normalised embeddings, the distance the calibrated same-person threshold is measured in) and
filter on attributes *while* they search (pre-filtering: the top ``k`` are the ``k`` nearest of
the rows that pass, never fewer because the nearest failed the filter). Why LanceDB by default,
and the measurements behind ``ANN_MIN_ROWS``: docs/search.md.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from personkit.data.times import iso_from_us, us_from_iso
from personkit.extras import require
from personkit.index.entries import Entry, FilterError

T = TypeVar("T")

#: Below this many rows the embedded store searches exactly (a flat scan, about 2.5 ms per
#: 1,000 rows of width 512 on 2 cores); at and above it builds an approximate index
#: (IVF-HNSW with scalar quantisation). Measured in benchmarks/bench_search.py (docs/search.md).
ANN_MIN_ROWS = 20_000
#: A filtered search whose filter passes at most this many rows is exact (the bitmap indices
#: give the rows, their distances are computed: about 10 ms per 1,000 rows); above it the ANN
#: index searches with the filter applied inside it.
EXACT_FILTERED_MAX = 3_000
#: The HNSW search beam (candidates kept per partition graph) of a search without a selective
#: filter: LanceDB's default gave recall@10 0.78 on a million rows, 100 gives 0.99; a filter
#: passing under 10 % of the rows reaches 0.96 with the default, faster
#: (benchmarks/bench_search.py).
HNSW_EF = 100
#: Rows written after the ANN index was built are searched flat beside it (1.0-1.2 ms per
#: 1,000 rows a query) until ``optimize()`` folds them in, as one more delta index (0.3-0.4 ms
#: a query each; 2-2.5 s to write 10,000 rows, 0.5 s for 2,000); a write that leaves at least
#: this many such rows optimizes. Measured in benchmarks/bench_index_growth.py (docs/search.md).
OPTIMIZE_MIN_ROWS = 5_000
#: ``optimize()`` removes table versions older than this (the latest always stays). Another
#: process reads the version that was latest when its query began, and the files only older
#: versions use are deleted: an age far above the longest search (an exact scan of a million
#: rows: 2.2 s, benchmarks/RESULTS.md) keeps a concurrent reader whole.
CLEANUP_AGE = timedelta(minutes=10)
#: LanceDB's cache of table metadata (manifests, fragment lists) is bounded to this many bytes
#: (LanceDB's default is 1 GiB): every write is a new table version whose metadata the next
#: read caches. Writing 4 entries 4 times a second while searching, a process grew by about
#: 45 MB a minute with the default and 16 with this bound, and by nothing once the rows stopped
#: growing (benchmarks/RESULTS.md, issue 36). Searches read the latest version's metadata.
METADATA_CACHE_BYTES = 32 << 20
#: Columns added since the first indexes, with what an older table's rows get when a write
#: adds them (SQL): an entry's recording (its camera's name: the one recording an older index
#: knew), where it came from, and when it was seen (microseconds since the Unix epoch, UTC).
ADDED_COLUMNS = {"recording": "source", "origin": "CAST(NULL AS STRING)",
                 "first_seen_us": "CAST(NULL AS BIGINT)", "last_seen_us": "CAST(NULL AS BIGINT)",
                 "time_source": "CAST(NULL AS STRING)"}
#: Columns of a search result besides the attributes (thumbnails are fetched by id).
META = ("id", "source", "track_id", "first_frame", "last_frame", "first_time", "last_time",
        "identity", "recording", "first_seen_us", "last_seen_us", "time_source")
#: The order of a search without an example: newest first (by ``last_seen``, entries without
#: a time after every timed one), then by source, first frame, track and id; every store
#: returns the first ``k`` of all the rows that pass the filter in this order.
NEWEST = "last_seen_us"
#: What :meth:`Store.select` gives of each row (and :data:`NEWEST`).
SELECTED = ("id", "source", "recording", "track_id")
ORDER = ("source", "first_frame", "track_id", "id")
#: Time filter keys (:meth:`~personkit.index.people.PeopleIndex.search`'s ``since`` and
#: ``until``, ISO text): seen at or after ``since`` (its last sighting), at or before ``until``
#: (its first); an entry without times passes neither.
TIME_TERMS = {"since": ("last_seen_us", ">="), "until": ("first_seen_us", "<=")}


def order_key(row: Mapping[str, Any]) -> tuple:
    """A row's place in the order of a search without an example (newest first, see
    :data:`NEWEST`, then :data:`ORDER`)."""
    newest = row.get(NEWEST)
    return (newest is None, -(newest or 0), *(row[c] for c in ORDER))


class Store(Protocol):
    """What :class:`~personkit.index.people.PeopleIndex` needs from a vector store."""

    name: str

    def replace_source(self, source: str, entries: Sequence[Entry], recording: str = "") -> None:
        """Make ``entries`` the whole content of camera ``source``'s ``recording`` ("": the
        one named as the camera); its earlier entries go, its other recordings stay."""

    def upsert(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` by id: an entry of an id already there replaces it, a new one is
        added, every other entry stays (a live track written again as it grows)."""

    def search(self, vector: np.ndarray | None, where: Mapping[str, Any],
               k: int) -> list[dict[str, Any]]:
        """The ``k`` nearest rows passing ``where`` (``distance`` set), or without a vector
        the first ``k`` of every row passing it, newest first (:func:`order_key`;
        ``distance`` None)."""

    def get(self, entry_id: str) -> Entry | None:
        """One entry, thumbnail included."""

    def count(self) -> int:
        """Number of entries."""

    def sources(self) -> dict[str, int]:
        """Entries per source (camera)."""

    def recordings(self) -> list[dict[str, Any]]:
        """Every recording: ``camera``, ``recording`` (its name), ``origin`` (None when
        unknown) and ``entries``."""

    def vectors(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Every entry's metadata and its embedding (``N×D``), for evaluation."""

    def time_span(self) -> tuple[int | None, int | None]:
        """The earliest ``first_seen`` and latest ``last_seen`` (UTC microseconds), None
        where no entry has one."""

    def versions(self) -> int | None:
        """Table versions kept on disk (None where the store has no versions)."""

    def select(self, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``id``, ``source``, ``recording``, ``track_id`` and ``last_seen_us`` (None when
        unknown) of every row passing ``where``."""

    def forget(self, ids: Sequence[str]) -> None:
        """Remove the rows ``ids`` so that their bytes leave every file of the store (their
        data files rewritten, indices rebuilt, old versions deleted: docs/search.md)."""


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_filter(where: Mapping[str, Any]) -> str | None:
    """A checked filter (:func:`~personkit.index.entries.parse_where`) as a SQL predicate: a
    label on the ``attr_NAME`` column, a probability comparison on ``prob_NAME``, a time
    (:data:`TIME_TERMS`) on the seen columns."""
    terms = [f"source = {_quote(v)}" if k == "source" else
             f"{TIME_TERMS[k][0]} {TIME_TERMS[k][1]} {us_from_iso(v)}" if k in TIME_TERMS else
             f"prob_{k} {v[0]} {float(v[1])!r}" if isinstance(v, tuple) else
             f"attr_{k} = {_quote(v)}" for k, v in where.items()]
    return " AND ".join(terms) or None


def _attribute_json(value: Sequence[Any]) -> dict[str, Any]:
    """A stored ``[label, confidence(, positive)]`` as a result's attribute."""
    out = {"label": value[0], "confidence": round(float(value[1]), 4)}
    if len(value) > 2 and value[2] is not None:
        out["positive"] = round(float(value[2]), 4)
    return out


def _times(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's camera, recording and capture times as a result shows them (an older row:
    its camera's recording, no times)."""
    return {"camera": row["source"], "recording": row.get("recording") or row["source"],
            "first_seen": iso_from_us(row.get("first_seen_us")),
            "last_seen": iso_from_us(row.get("last_seen_us")),
            "time_source": row.get("time_source") or None}


def hit_from_row(row: Mapping[str, Any], attributes: Sequence[str]) -> dict[str, Any]:
    """A search result: the entry's metadata (camera, recording and ``first_seen``/
    ``last_seen`` as ISO-8601 UTC, None when unknown), ``attributes`` (name -> label,
    confidence) and ``distance`` (None without a query vector)."""
    out = {k: row[k] for k in META[:8]}
    out.update(_times(row))
    merged = json.loads(row["attributes"])
    out["attributes"] = {a: _attribute_json(merged[a]) for a in attributes}
    d = row.get("_distance")
    out["distance"] = None if d is None else round(float(d), 6)
    return out


def entry_from_row(row: Mapping[str, Any], attributes: Sequence[str]) -> Entry:
    merged = json.loads(row["attributes"])
    when = _times(row)
    return Entry(row["source"], int(row["track_id"]), np.asarray(row["vector"], np.float32),
                 {a: (str(merged[a][0]), float(merged[a][1]),
                      None if len(merged[a]) < 3 or merged[a][2] is None else float(merged[a][2]))
                  for a in attributes},
                 bytes(row["thumbnail"]), int(row["first_frame"]), int(row["last_frame"]),
                 float(row["first_time"]), float(row["last_time"]), str(row["identity"]),
                 "" if when["recording"] == row["source"] else when["recording"],
                 row.get("origin") or "", when["first_seen"], when["last_seen"],
                 when["time_source"] or "")


def entry_row(e: Entry, attributes: Sequence[str]) -> dict[str, Any]:
    """An entry as a flat row: an ``attr_NAME`` column of labels per attribute (what filters
    read and the bitmap indices cover), a ``prob_NAME`` column of class-1 probabilities (binary
    attributes; null otherwise: what probability filters read) and ``attributes``, the
    labels, confidences and probabilities as JSON (what results show: one column to read for
    a hit instead of three per attribute)."""
    row: dict[str, Any] = {"id": e.id, "source": e.source, "track_id": int(e.track_id),
                           "first_frame": int(e.first_frame), "last_frame": int(e.last_frame),
                           "first_time": float(e.first_time), "last_time": float(e.last_time),
                           "identity": str(e.identity), "recording": e.recording or e.source,
                           "origin": e.origin or None, "first_seen_us": us_from_iso(e.first_seen),
                           "last_seen_us": us_from_iso(e.last_seen),
                           "time_source": e.time_source or None,
                           "vector": np.asarray(e.embedding, np.float32), "thumbnail": e.thumbnail}
    for a in attributes:
        row[f"attr_{a}"] = str(e.attributes[a][0])
    for a in attributes:
        row[f"prob_{a}"] = _positive(e.attributes[a])
    row["attributes"] = json.dumps({a: [str(e.attributes[a][0]), float(e.attributes[a][1]),
                                        _positive(e.attributes[a])] for a in attributes})
    return row


def _positive(value: Sequence[Any]) -> float | None:
    return None if len(value) < 3 or value[2] is None else float(value[2])


def _reread(method: Callable[..., T]) -> Callable[..., T]:
    """A read of :class:`LanceStore` that, when the files of the version it began on were
    deleted under it (a forget in this or another process removes every older version:
    LanceDB's ``Not found``), runs again on the latest version (at most twice more)."""

    @functools.wraps(method)
    def read(self: Any, *args: Any, **kwargs: Any) -> T:
        for attempt in range(3):
            try:
                return method(self, *args, **kwargs)
            except (RuntimeError, OSError) as e:
                if attempt == 2 or "Not found" not in str(e):
                    raise
        raise AssertionError("unreachable")

    return read


def _partitions(rows: int) -> int:
    """IVF partitions of the ANN index: ``sqrt(rows) / 32`` (31 for a million rows). Searches
    probe every partition (each holds an HNSW graph): few large graphs keep recall@10 above
    0.95 with and without a selective filter (docs/search.md)."""
    return max(1, int(np.sqrt(rows) / 32))


class LanceStore:
    """The embedded default: a LanceDB table in a folder, no server.

    Writes are single atomic commits (a source is replaced by one ``merge_insert``: a process
    killed while writing leaves the previous version, which opens). Reads see every commit
    (``read_consistency_interval`` 0), so other processes' appends are visible at once.
    """

    name = "lancedb"

    def __init__(self, path: str | Path, dim: int, attributes: Sequence[str],
                 ann_min_rows: int = ANN_MIN_ROWS,
                 optimize_min_rows: int | None = OPTIMIZE_MIN_ROWS):
        lancedb = require("lancedb")
        pa = require("pyarrow")
        self.attributes, self.dim, self.ann_min_rows = list(attributes), dim, ann_min_rows
        self.optimize_min_rows = optimize_min_rows  # None: never after a write
        fields = [("id", pa.string()), ("source", pa.string()), ("track_id", pa.int64()),
                  ("first_frame", pa.int64()), ("last_frame", pa.int64()),
                  ("first_time", pa.float64()), ("last_time", pa.float64()),
                  ("identity", pa.string()), ("recording", pa.string()), ("origin", pa.string()),
                  ("first_seen_us", pa.int64()), ("last_seen_us", pa.int64()),
                  ("time_source", pa.string()), ("vector", pa.list_(pa.float32(), dim))]
        fields += [(f"attr_{a}", pa.string()) for a in self.attributes]
        fields += [(f"prob_{a}", pa.float32()) for a in self.attributes]
        self.schema = pa.schema([*fields, ("attributes", pa.string()),
                                 ("thumbnail", pa.binary())])
        self._passing: dict[tuple[str, int], int] = {}  # (filter, table version) -> rows
        self.db = lancedb.connect(str(path), read_consistency_interval=timedelta(0),
                                  session=lancedb.Session(
                                      metadata_cache_size_bytes=METADATA_CACHE_BYTES))
        try:  # a table made before the prob_ (or recording and time) columns keeps its schema
            self.table = self.db.open_table("people")
            self.schema = self.table.schema
        except (ValueError, FileNotFoundError):
            self.table = self.db.create_table("people", schema=self.schema, exist_ok=True)

    def _arrow(self, entries: Sequence[Entry]) -> Any:
        import pyarrow as pa

        rows = [entry_row(e, self.attributes) for e in entries]
        return pa.Table.from_pylist(rows, schema=self.schema)

    def _names(self) -> set[str]:
        """The table's columns now (another process may have added some)."""
        return set(self.table.schema.names)

    def _add_columns(self) -> None:
        """Give a table made before them the :data:`ADDED_COLUMNS` (its rows: the camera's
        one recording, no origin or times), so that writes keep recordings and times."""
        missing = {c: sql for c, sql in ADDED_COLUMNS.items() if c not in self._names()}
        if missing:
            self.table.add_columns(missing)
        self.schema = self.table.schema

    def replace_source(self, source: str, entries: Sequence[Entry], recording: str = "") -> None:
        self._add_columns()
        self.replace_rows(source, self._arrow(entries), recording)

    def replace_rows(self, source: str, data: Any, recording: str = "") -> None:
        """:meth:`replace_source` for rows already in this store's schema (a pyarrow Table,
        every row of ``source``'s ``recording``): one commit, then the ANN index built or
        optimized when that pays."""
        gone = f"source = {_quote(source)}"
        if "recording" in self._names():
            gone += f" AND recording = {_quote(recording or source)}"
        if not data.num_rows:
            self.table.delete(gone)
            return
        (self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .when_not_matched_by_source_delete(gone).execute(data))
        if not self._maybe_build_index():
            self._maybe_optimize()

    def upsert(self, entries: Sequence[Entry]) -> None:
        """One commit (``merge_insert`` on the id: written again, an entry is replaced, never
        doubled), then the ANN index built or optimized when that pays."""
        if not entries:
            return
        self._add_columns()
        (self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .execute(self._arrow(entries)))
        if not self._maybe_build_index():
            self._maybe_optimize()

    def _vector_index(self) -> str | None:
        """The name of the ANN index (None before there is one)."""
        return next((i.name for i in self.table.list_indices() if i.columns[0] == "vector"),
                    None)

    def _maybe_build_index(self) -> bool:
        """An ANN index once the table reaches ``ann_min_rows`` (and bitmap indices on the
        source and attributes, B-trees on the seen times, for filtering); rows added later
        are searched exactly until :meth:`optimize` folds them in (LanceDB searches unindexed
        rows too). True when it was built now."""
        n = self.table.count_rows()
        if n < self.ann_min_rows or self._vector_index() is not None:
            return False
        from lancedb.index import Bitmap, BTree, IvfHnswSq

        self.table.create_index("vector", config=IvfHnswSq(
            distance_type="cosine", num_partitions=_partitions(n)))
        for column in ("source", *(f"attr_{a}" for a in self.attributes)):
            self.table.create_index(column, config=Bitmap(), replace=True)
        for column in ("first_seen_us", "last_seen_us"):  # time filters are ranges
            if column in self._names():
                self.table.create_index(column, config=BTree(), replace=True)
        return True

    def unindexed_rows(self) -> int:
        """Rows the ANN index does not cover yet (0 without an index)."""
        name = self._vector_index()
        stats = self.table.index_stats(name) if name else None
        return int(stats.num_unindexed_rows) if stats else 0

    def _maybe_optimize(self) -> bool:
        """:meth:`optimize` after a write that leaves ``optimize_min_rows`` rows outside the
        ANN index (each costs every search a flat distance); True when it ran."""
        if self.optimize_min_rows is None or self.unindexed_rows() < self.optimize_min_rows:
            return False
        self.optimize()
        return True

    def optimize(self) -> None:
        """Fold new rows into the indices, compact the files and remove the versions older
        than :data:`CLEANUP_AGE`."""
        self.table.optimize(cleanup_older_than=CLEANUP_AGE)

    def _columns(self, names: set[str]) -> list[str]:
        """What a result reads, of the table's columns ``names``."""
        return [c for c in (*META, "attributes") if c in names]

    def _count(self, predicate: str) -> int:
        """Rows passing ``predicate``, remembered per table version."""
        key = (predicate, int(self.table.version))
        if key not in self._passing:
            if len(self._passing) >= 64:  # the oldest goes
                self._passing.pop(next(iter(self._passing)))
            self._passing[key] = int(self.table.count_rows(predicate))
        return self._passing[key]

    @_reread
    def search(self, vector: np.ndarray | None, where: Mapping[str, Any],
               k: int) -> list[dict[str, Any]]:
        names = self._names()
        _check_columns(where, names)
        predicate = sql_filter(where)
        if vector is None:
            return self._first(predicate, k, names)
        n = self.table.count_rows()
        q = (self.table.search(np.asarray(vector, np.float32), vector_column_name="vector")
             .distance_type("cosine").select([*self._columns(names), "_distance"]).limit(k))
        if predicate:
            q = q.where(predicate, prefilter=True)
        if n >= self.ann_min_rows:
            passing = self._count(predicate) if predicate else n
            if passing <= EXACT_FILTERED_MAX:
                q = q.bypass_vector_index()
            else:  # every partition: recall@10 >= 0.95 (docs/search.md)
                q = q.nprobes(_partitions(n))
                if passing >= n / 10:  # a wider beam, unless a selective filter narrows it;
                    q = q.ef(max(HNSW_EF, k))  # never below k (LanceDB's default: 1.5 k)
        return [hit_from_row(r, self.attributes) for r in q.to_list()]

    def _first(self, predicate: str | None, k: int, names: set[str]) -> list[dict[str, Any]]:
        """The first ``k`` rows passing ``predicate``, newest first (:func:`order_key`):
        LanceDB sorts the order's columns of every passing row (a top-k sort) and reads the
        rest of those ``k`` rows only."""
        order = [{"column_name": c, "ascending": True, "nulls_first": False} for c in ORDER]
        if NEWEST in names:
            order.insert(0, {"column_name": NEWEST, "ascending": False, "nulls_first": False})
        q = self.table.search().select(self._columns(names)).order_by(order)
        q = q.where(predicate) if predicate else q
        return [hit_from_row(r, self.attributes) for r in q.limit(k).to_list()]

    @_reread
    def get(self, entry_id: str) -> Entry | None:
        rows = self.table.search().where(f"id = {_quote(entry_id)}").limit(1).to_list()
        return entry_from_row(rows[0], self.attributes) if rows else None

    @_reread
    def count(self) -> int:
        return int(self.table.count_rows())

    @_reread
    def sources(self) -> dict[str, int]:
        n = self.count()
        if not n:
            return {}
        names = self.table.search().select(["source"]).limit(n).to_arrow()["source"]
        values, counts = np.unique(np.asarray(names.to_pylist(), dtype=object),
                                   return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}

    @_reread
    def recordings(self) -> list[dict[str, Any]]:
        n = self.count()
        names = self._names()
        if not n:
            return []
        cols = [c for c in ("source", "recording", "origin") if c in names]
        table = self.table.search().select(cols).limit(n).to_arrow()
        groups = table.group_by(cols).aggregate([("source", "count")]).to_pylist()
        return sorted(({"camera": g["source"], "recording": g.get("recording") or g["source"],
                        "origin": g.get("origin") or None, "entries": int(g["source_count"])}
                       for g in groups), key=lambda r: (r["camera"], r["recording"]))

    @_reread
    def time_span(self) -> tuple[int | None, int | None]:
        n, names = self.count(), self._names()
        if not n or "first_seen_us" not in names:
            return None, None
        table = self.table.search().select(["first_seen_us", "last_seen_us"]).limit(
            n).to_arrow()
        import pyarrow.compute as pc

        first, last = pc.min(table["first_seen_us"]).as_py(), pc.max(
            table["last_seen_us"]).as_py()
        return first, last

    def versions(self) -> int | None:
        return len(self.table.list_versions())

    @_reread
    def select(self, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        names = self._names()
        _check_columns(where, names)
        cols = [c for c in (*SELECTED, NEWEST) if c in names]
        q = self.table.search().select(cols).limit(None)
        predicate = sql_filter(where)
        rows = (q.where(predicate) if predicate else q).to_arrow().to_pylist()
        return [{NEWEST: None, **r, "recording": r.get("recording") or r["source"]}
                for r in rows]

    def forget(self, ids: Sequence[str]) -> None:
        """Lance marks a deleted row in a deletion file and keeps its bytes in the data file
        (and every old version keeps its files), so: one commit deletes the rows ``ids`` and
        rewrites the other rows of the data files that hold them (a data file none of whose
        rows is left is dropped); the indices are dropped (the ANN index holds quantised
        embeddings), every older version's files deleted (``optimize``, with no index to fold
        rows into), and the indices built again from the rows left. A search reading an older
        version meanwhile reads again (:func:`_reread`)."""
        gone = set(ids)
        if not gone:
            return
        listed = self.table.search().select(["id"]).with_row_id(True).limit(None).to_arrow()
        fragments = sorted({r >> 32 for i, r in zip(listed["id"].to_pylist(),
                                                     listed["_rowid"].to_pylist(), strict=True)
                            if i in gone})
        deleted = f"id IN ({', '.join(_quote(i) for i in sorted(gone))})"
        within = " OR ".join(f"(_rowid >= {f << 32} AND _rowid < {(f + 1) << 32})"
                             for f in fragments)
        survivors = self.table.search().where(f"({within}) AND NOT ({deleted})").limit(
            None).to_arrow()
        if survivors.num_rows:
            (self.table.merge_insert("id").when_matched_update_all()
             .when_not_matched_by_source_delete(deleted).execute(survivors))
        else:
            self.table.delete(deleted)
        indexed = self._vector_index() is not None
        for index in self.table.list_indices():  # built again below, without the rows
            self.table.drop_index(index.name)
        with warnings.catch_warnings():  # "removes every version except the latest": meant
            warnings.simplefilter("ignore", UserWarning)
            self.table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)
        if indexed:
            self._maybe_build_index()  # not below ann_min_rows: searches are exact there

    @_reread
    def vectors(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        n = self.count()
        if not n:
            return [], np.zeros((0, self.dim), np.float32)
        cols = ["id", "source", "track_id", "identity", "vector"]
        rows = self.table.search().select(cols).limit(n).to_list()
        rows.sort(key=lambda r: r["id"])
        meta = [{k: r[k] for k in cols if k != "vector"} for r in rows]
        return meta, np.asarray([r["vector"] for r in rows], np.float32).reshape(-1, self.dim)


def _check_columns(where: Mapping[str, Any], names: set[str]) -> None:
    """A FilterError, saying to index again, for a filter on columns a table made before
    them lacks: probabilities and capture times."""
    missing = [k for k, v in where.items() if isinstance(v, tuple)
               and f"prob_{k}" not in names]
    if missing:
        raise FilterError(f"this index was made before it kept probabilities, so "
                          f"{missing[0]}{where[missing[0]][0]}{where[missing[0]][1]:g} "
                          f"cannot be answered: filter on the decision "
                          f"({missing[0]}=LABEL), or index the sources again")
    timed = [k for k in where if k in TIME_TERMS and TIME_TERMS[k][0] not in names]
    if timed:
        raise FilterError(f"this index was made before it kept capture times, so none of its "
                          f"people has one and {timed[0]}={where[timed[0]]} passes nobody: "
                          f"index the sources again to give them times")


def sort_hits(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nearest first, ties by id (stores differ in how they order equal distances)."""
    return sorted(hits, key=lambda h: (h["distance"] if h["distance"] is not None else 0.0,
                                       h["id"]))

