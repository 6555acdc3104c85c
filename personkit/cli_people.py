"""The ``personkit`` subcommands that find people: ``index``, ``search`` and ``serve``
(registered when :mod:`personkit.cli` imports this module)."""

from __future__ import annotations

import argparse
import json
import sys

from personkit.cli_objects import (
    index_model,
    open_person_detector,
    open_predictor,
    pipeline_threads,
)
from personkit.cli_options import (
    DETECTOR_FORMS,
    MODEL_FILE,
    comma_list,
    command,
    model_option,
    network_options,
    opt,
    positive_int,
    shared,
)
from personkit.index.entries import DEFAULT_K
from personkit.index.people import BACKENDS, DEFAULT_BACKEND
from personkit.serve.settings import (
    CHECKPOINT_SECONDS,
    HOST,
    MAX_BATCH,
    MAX_WAIT_MS,
    PORT,
    Limits,
    camera_specs,
)


@command("index", "put people into a persistent index: from personkit track output, MOT "
         "sequences, videos or streams (tracked first) or folders of crops",
         opt("index", help="index folder (created when missing)"),
         opt("sources", nargs="*", help="personkit track output folders, MOT sequences, "
             "videos, streams or (with --crops) folders of person crops, each a recording of "
             "a camera; a recording indexed again replaces its earlier entries, another "
             "recording of the camera (--name) adds to it"),
         model_option(required=False, help=MODEL_FILE + " with ReID and attribute heads "
                      "(default: the one the index was made with)"),
         opt("--crops", action="store_true", help="the folders hold person crops, one person "
             "each"),
         opt("--name", default=None, help="camera name of a single source (default: the "
             "sequence's or file's name); a new recording of a camera already indexed adds "
             "to it"),
         opt("--store", default=DEFAULT_BACKEND, choices=BACKENDS,
             help="vector store of a new index (docs/search.md)"),
         opt("--qdrant-url", default=None, help="a Qdrant server for --store qdrant (default: "
             "qdrant-client's local mode in the index folder)"),
         opt("--detections", default=None, help="video input: MOT-format det.txt"),
         shared("--detector"), shared("--detector-score"), shared("--mot-source"),
         shared("--start-time"), *network_options(), shared("--no-progress"),
         opt("--stats", action="store_true", help="print what the index holds (entries per "
             "camera, recordings, first and last capture time, table versions, bytes on "
             "disk) and stop"))
def _cmd_index(args: argparse.Namespace) -> int:
    from personkit.data.times import parse_time
    from personkit.index.build import index_sources

    if args.stats:
        return _index_stats(args.index)
    if not args.sources:
        raise ValueError("give the sources to index, or --stats to see what the index holds")

    if args.start_time:  # an unreadable time is told before the model loads
        parse_time(args.start_time, "--start-time", relative=False)
    model = index_model(args.model, args.index)
    threads = pipeline_threads(args)
    out = index_sources(args.index, args.sources, open_predictor(model, args, **threads),
                        crops=args.crops, name=args.name, backend=args.store,
                        qdrant_url=args.qdrant_url, progress=not args.no_progress,
                        detector=open_person_detector(args, **threads),
                        detections=args.detections,
                        mot_source=args.mot_source, start_time=args.start_time)
    summary = out["index"]
    added = ", ".join(f"{s}: {n}" for s, n in out["added"].items())
    print(f"indexed {added} -> {args.index} ({summary['entries']} people from "
          f"{len(summary['sources'])} camera(s), {summary['store']})")
    return 0


def _index_stats(path: str) -> int:
    """``personkit index INDEX --stats``."""
    from personkit.index.people import PeopleIndex

    stats = PeopleIndex.open(path).stats()
    size = stats["bytes"]
    cameras = ", ".join(f"{c} {n}" for c, n in stats["cameras"].items()) or "none"
    print(f"{stats['path']}: {stats['entries']} people ({stats['store']}); cameras: {cameras}; "
          f"{stats['recordings']} recording(s)")
    versions = stats["table_versions"]
    print(f"seen from {stats['first_seen'] or 'unknown'} to {stats['last_seen'] or 'unknown'}; "
          f"table versions: {'none (Qdrant)' if versions is None else versions}; "
          f"{size['store'] / 1e6:.1f} MB in the store, {size['total'] / 1e6:.1f} MB in the "
          f"folder")
    return 0


@command("search", "find people in an index by example, by attributes, or both",
         opt("index", help="index folder (personkit index)"),
         opt("--example", default=None, help="an entry id (SOURCE:TRACK), a person crop, or "
             "an image with --box"),
         opt("--box", default=None, help="x1,y1,x2,y2: the person in --example's image"),
         opt("--where", default=None, help="attribute filters, e.g. \"gender=female "
             "backpack=yes upcolor=red\" (the decisions), \"hat>=0.3\" (a yes/no "
             "attribute's probability); camera=NAME (or source=NAME): one camera"),
         opt("--since", default=None, metavar="TIME", help="people seen at or after TIME: "
             "ISO-8601 (UTC without a zone) or a span before now (30m, 2h, 7d)"),
         opt("--until", default=None, metavar="TIME", help="people seen at or before TIME "
             "(as --since)"),
         opt("-k", "--top", type=positive_int, default=DEFAULT_K, help="results"),
         opt("--offset", type=int, default=0, help="results to skip (the next page: "
             "--offset K)"),
         model_option(required=False, help="the index's model, loaded only for an image "
                      "example (default: the one the index was made with)"),
         opt("--out", default=None, help="folder for results.json and sheet.html (a contact "
             "sheet of thumbnails)"),
         shared("--overwrite", help="replace an earlier search's results.json and sheet.html "
                "in --out"),
         opt("--evaluate", action="store_true", help="cross-camera rank-1 and mAP of the whole "
             "index against the sources' ground truth (synthetic sequences)"),
         shared("--detector", help="find the person of an --example image without --box (its "
                "best-scoring person, as the service does; default: the whole image) with "
                + DETECTOR_FORMS),
         shared("--detector-score"), *network_options())
def _cmd_search(args: argparse.Namespace) -> int:
    # Searches by attributes or by an entry read the index only: no torch (issue 35).
    from pathlib import Path

    from personkit.cli_objects import predictor_options
    from personkit.data.times import time_range
    from personkit.index.people import PeopleIndex
    from personkit.index.search import search, write_results
    from personkit.outputs import claim_outputs

    since, until = time_range(args.since, args.until)  # told before the index opens
    if args.offset < 0:
        raise ValueError(f"--offset {args.offset}: give 0 or more results to skip")
    index = PeopleIndex.open(args.index)
    if args.evaluate:
        print(json.dumps(index.evaluate(), indent=1))
        return 0
    if args.out:
        claim_outputs(args.out, ("results.json", "sheet.html"), args.overwrite, "search")
    finder = (open_person_detector(args) if args.detector and args.example and not args.box
              and Path(args.example).is_file() else None)  # a bad path is told first
    options = predictor_options(args)
    result = search(index, args.example, args.box, args.where, args.top, args.model,
                    options.pop("device"), options.pop("flip_tta"), finder, since=since,
                    until=until, offset=args.offset, **options)
    _print_results(result, write_results(result, index, args.out) if args.out else None)
    return 0


def _print_results(result: dict, sheet: object) -> None:
    """A search's warning, its hits one a line (or that none matched), and the sheet written."""
    if result["query"].get("warning"):
        print(f"personkit search: {result['query']['warning']}", file=sys.stderr)
    for h in result["hits"]:
        print(_hit_line(h))
    if not result["hits"]:
        print("no person matches", file=sys.stderr)
    if sheet is not None:
        print(f"wrote {sheet}")


def _hit_line(h: dict) -> str:
    """One result of ``personkit search``: id, frames, when seen, distance, attributes."""
    dist = "" if h["distance"] is None else f" distance {h['distance']:.4f}"
    same = " (same person)" if h["same_person"] else ""
    seen = (f"seen {h['first_seen']} - {h['last_seen']}" if h.get("first_seen")
            else "time unknown")
    attrs = " ".join(f"{a}={v['label']}" for a, v in h["attributes"].items())
    return f"{h['id']}: frames {h['first_frame']}-{h['last_frame']}, {seen}{dist}{same}  {attrs}"


@command("audit", "who searched and looked at which people: the index's audit log, written "
         "by personkit serve",
         opt("index", help="index folder (personkit index)"),
         opt("--since", default=None, help="records at or after: ISO-8601 or a span before "
             "now (30m, 2h, 1d)"),
         opt("--json", action="store_true", help="one JSON record per line, as stored"))
def _cmd_audit(args: argparse.Namespace) -> int:
    from personkit.index.audit import read_audit

    records = read_audit(args.index, args.since)
    for r in records:
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
            continue
        rest = " ".join(f"{k}={v}" for k, v in r.items()
                        if k not in ("time", "event", "client", "key") and v not in (None, ""))
        print(f"{r['time']} {r['client']} {r['key']} {r['event']} {rest}")
    print(f"{len(records)} record(s)", file=sys.stderr)
    return 0


@command("forget", "remove people from an index so that no file of it keeps them: by entry "
         "id, camera or capture time (docs/search.md, Privacy and security)",
         opt("index", help="index folder (personkit index)"),
         opt("--entry", action="append", default=[], help="an entry id to forget (as search "
             "prints it, e.g. cam1:3); repeatable"),
         opt("--camera", default=None, help="forget every entry of this camera (with "
             "--before: those last seen before it)"),
         opt("--before", default=None, help="forget the entries last seen before this time: "
             "ISO-8601 or a span before now (7d)"),
         opt("--retain", default=None, help="keep this span, forget the entries last seen "
             "earlier (7d: --before 7d)"),
         opt("--dry-run", action="store_true", help="say whom it would forget, delete "
             "nothing"),
         opt("--json", action="store_true", help="print the result as JSON"))
def _cmd_forget(args: argparse.Namespace) -> int:
    from personkit.data.times import parse_span
    from personkit.index.audit import AuditLog
    from personkit.index.forget import forget
    from personkit.index.people import PeopleIndex

    before = args.before
    if args.retain is not None:
        if before is not None:
            raise ValueError("give --before or --retain, not both (--retain 7d is --before 7d)")
        parse_span(args.retain, "--retain")
        before = args.retain
    index = PeopleIndex.open(args.index)
    out = forget(index, args.entry, args.camera, before, dry_run=args.dry_run)
    if not args.dry_run:
        AuditLog(index.path).write("forget", "command line", "local",
                                   forgotten=len(out["forgotten"]), ids=out["forgotten"],
                                   camera=args.camera, before=before)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    ids = out["forgotten"]
    shown = f" ({', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''})" if ids else ""
    print(f"forget: {'would forget' if args.dry_run else 'forgot'} {len(ids)} "
          f"entr{'y' if len(ids) == 1 else 'ies'}{shown}; {out['entries']} left in {args.index}")
    if out["undated"]:
        print(f"forget: {out['undated']} entries have no capture time and were kept (a time "
              f"cannot select them; forget them by --entry or --camera)")
    if out["files"]:
        print(f"forget: {len(out['files'])} file(s) of the tracking output rewritten or deleted")
    return 0


#: ``serve``'s limits on the load and on one request (:class:`Limits`).
SERVE_LIMITS = (
    opt("--max-batch", type=positive_int, default=MAX_BATCH, help="concurrent /predict "
        "requests run as one batch, up to this many (1: no batching)"),
    opt("--max-wait-ms", type=float, default=MAX_WAIT_MS, help="how long a request waits "
        "for others to batch with"),
    opt("--max-upload-mb", type=float, default=Limits.max_upload_mb,
        help="largest upload accepted"),
    opt("--max-pixels", type=positive_int, default=Limits.max_pixels, help="most pixels "
        "an uploaded image may declare (read from its header before decoding; 413 above)"),
    opt("--max-boxes", type=positive_int, default=Limits.max_boxes, help="most person "
        "boxes per image (given or detected; 413 above)"),
    opt("--max-concurrency", type=positive_int, default=Limits.max_concurrency,
        help="requests worked on at once (/predict, /search)"),
    opt("--max-queue", type=int, default=Limits.max_queue, help="requests that may wait "
        "for one of those slots; further ones get 503 with Retry-After"),
)
#: ``serve``'s live cameras (docs/search.md, Live cameras).
LIVE_CAMERA_OPTIONS = (
    opt("--camera", action="append", default=[], metavar="NAME=SOURCE",
        help="a live camera tracked into --index while the server runs: SOURCE is "
        "anything personkit track reads (stream URL, camera device, video file, MOT "
        "sequence); repeatable (docs/search.md, Live cameras)"),
    opt("--cameras", default=None, metavar="FILE", help="a YAML list of cameras (name, "
        "source; optional detector, detector_score, start_time, tracker, retries)"),
    opt("--checkpoint-seconds", type=float, default=CHECKPOINT_SECONDS, help="a live "
        "camera's running tracks are written to the index this often (searchable while "
        "in view; a kill loses at most this much of them)"),
)


@command("serve", "an HTTP service and web page: predict on uploaded images, search an index "
         "(needs [serve])",
         model_option(required=False, help=MODEL_FILE + " (default: the one --index was made "
                      "with)"),
         opt("--index", default=None, help="people index to search (personkit index)"),
         opt("--host", default=HOST, help="address to listen on (another than loopback "
             "needs an API key)"),
         opt("--port", type=int, default=PORT, help="port (0: any free one)"),
         opt("--api-key-file", default=None, help="file holding the API key every request "
             "but /healthz must send (Authorization: Bearer KEY); mode 600. Or set "
             "PERSONKIT_API_KEY; never on the command line"),
         opt("--allowed-hosts", default=None, help="comma-separated host names requests may "
             "be addressed to, besides loopback and --host (against DNS rebinding)"),
         opt("--cors-origin", default=None, help="the one other site whose pages may call "
             "the API, e.g. https://example.org (default: none)"),
         opt("--tls-cert", default=None, help="certificate file for HTTPS (with --tls-key)"),
         opt("--tls-key", default=None, help="private key file for HTTPS (with --tls-cert)"),
         opt("--retain", default=None, help="forget the index's entries last seen longer ago "
             "than this span (7d), at start and every hour (docs/search.md)"),
         *SERVE_LIMITS, *LIVE_CAMERA_OPTIONS,
         shared("--detector"), shared("--detector-score"),
         *network_options(batch_size="most crops per forward pass (default: the larger of 32 "
                          "and --max-batch)"))
def _cmd_serve(args: argparse.Namespace) -> int:
    from personkit.serve.access import access_for, read_api_key
    from personkit.serve.app import serve

    limits = Limits(args.max_pixels, args.max_boxes, args.max_concurrency, args.max_queue,
                    args.max_upload_mb)
    access = access_for(args.host, read_api_key(args.api_key_file),
                        comma_list(args.allowed_hosts), args.cors_origin)  # before the model
    specs = _checked_serve_options(args)
    predictor = open_predictor(index_model(args.model, args.index), args,
                               batch_size=max(args.batch_size, args.max_batch))
    detector = open_person_detector(args)
    serve(predictor, args.index, detector=detector, host=args.host,
          port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          limits=limits, access=access,
          tls=(args.tls_cert, args.tls_key) if args.tls_cert else None, retain=args.retain,
          cameras=_camera_detectors(specs, args, detector),
          checkpoint_seconds=args.checkpoint_seconds)
    return 0


def _checked_serve_options(args: argparse.Namespace) -> list:
    """``serve``'s options that must be told before the model loads: TLS in pairs, a
    readable ``--retain`` with an index, cameras well formed and with an index; returns the
    cameras (:func:`camera_specs`)."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("HTTPS needs both --tls-cert and --tls-key")
    if args.retain is not None:
        from personkit.data.times import parse_span

        parse_span(args.retain, "--retain")
        if args.index is None:
            raise ValueError(f"--retain {args.retain} needs the index whose entries it "
                             f"forgets (--index)")
    specs = camera_specs(args.camera, args.cameras)
    if specs and not args.index:
        raise ValueError(f"--camera {specs[0].name}=...: live cameras need --index, the index "
                         f"their people go to (created when missing)")
    return specs


def _camera_detectors(specs: list, args: argparse.Namespace, default: object) -> list:
    """Each camera with its person detector: its own (``detector``, ``detector_score`` of
    ``--cameras FILE``) or the server's ``--detector``; each kind opened once."""
    from personkit.inference.detectors import open_detector
    from personkit.runtime import resolve_device

    opened: dict[tuple[str, float], object] = {(args.detector, args.detector_score): default}
    out = []
    for spec in specs:
        name = spec.detector or args.detector
        score = args.detector_score if spec.detector_score is None else spec.detector_score
        if name is not None and (name, score) not in opened:
            opened[name, score] = open_detector(name, resolve_device(args.device).type, score,
                                                args.threads or None)
        out.append((spec, None if name is None else opened[name, score]))
    return out
