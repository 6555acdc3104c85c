"""What ``personkit serve`` can be told, each with one default for the command line and the
Python API alike: where it listens, how it batches ``/predict`` requests, and the
:class:`Limits` of one request. Light on purpose: the command line reads it to build its
parser, before anything heavy is imported."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

#: The address and port the server listens on (port 0: any free one).
HOST, PORT = "127.0.0.1", 8000
#: Concurrent ``/predict`` requests run as one batch, up to this many (1: no batching), and
#: how long (ms) a request waits for others to batch with
#: (:class:`~personkit.serve.batching.Batcher`).
MAX_BATCH, MAX_WAIT_MS = 8, 5.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (``personkit serve --max-...``).

    Attributes:
        max_pixels: the most pixels an uploaded image may declare (40 MP: a 7700×5200 photo).
        max_boxes: the most person boxes one image may carry (given or detected).
        max_concurrency: requests worked on at once (decoding, detecting, predicting,
            searching); ``max_queue`` more may wait, further ones get 503.
        max_upload_mb: the largest request body.
    """

    max_pixels: int = 40_000_000
    max_boxes: int = 256
    max_concurrency: int = 8
    max_queue: int = 16
    max_upload_mb: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_boxes", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0 or self.max_upload_mb <= 0:
            raise ValueError(f"max_queue must be >= 0 and max_upload_mb > 0, got "
                             f"{self.max_queue} and {self.max_upload_mb}")


# ------------------------------------------------------------------ live cameras (issue 36)

#: A running track's entry is written again at most this often (seconds): a person in view is
#: searchable within about this long, and a kill loses at most this much of a running track.
CHECKPOINT_SECONDS = 5.0
#: A dropped stream is opened again after this many seconds, doubled after each failed try up
#: to the second number (and back to the first once frames flow again).
RECONNECT_SECONDS = (1.0, 30.0)
#: What a camera of ``--cameras FILE`` may say.
CAMERA_KEYS = ("name", "source", "detector", "detector_score", "start_time", "tracker",
               "retries")
#: The type of each optional key of a camera in ``--cameras FILE`` (a time may be written
#: bare in YAML: a datetime is taken as it is).
CAMERA_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "detector": (str, "text"), "detector_score": ((int, float), "a number"),
    "start_time": ((str, datetime, date), "an ISO-8601 time"), "tracker": (str, "text"),
    "retries": (int, "an integer")}
#: A camera's name: no space, ``/`` (it separates a camera from its recording in entry ids)
#: or ``=``.
CAMERA_NAME = re.compile(r"^[^\s/=]+$")


@dataclass(frozen=True)
class CameraSpec:
    """One camera of ``personkit serve --camera NAME=SOURCE`` or ``--cameras FILE``.

    Attributes:
        name: what ``camera=NAME`` filters on.
        source: anything ``personkit track`` reads: a stream URL, a camera device, a video
            file, a MOT sequence folder or a folder of frames.
        detector: this camera's person detector (default: the server's ``--detector``).
        detector_score: its minimum score (default: ``--detector-score``).
        start_time: a file's or folder's start (ISO-8601; default as ``personkit track``).
        tracker: the BoxMOT tracker (``botsort``, ``deepocsort``).
        retries: failed connections in a row before the camera gives up (None: never).
    """

    name: str
    source: str
    detector: str | None = None
    detector_score: float | None = None
    start_time: str | None = None
    tracker: str = "botsort"
    retries: int | None = None

    def __post_init__(self) -> None:
        if not CAMERA_NAME.match(self.name):
            raise ValueError(f"camera name {self.name!r}: a name cannot be empty or hold "
                             f"spaces, '/' or '='")
        if not str(self.source).strip():
            raise ValueError(f"camera {self.name!r}: its source is empty")
        if self.tracker not in ("botsort", "deepocsort"):
            raise ValueError(f"camera {self.name!r}: tracker {self.tracker!r}; live cameras "
                             f"track with botsort or deepocsort (their embeddings)")
        if self.retries is not None and self.retries < 0:
            raise ValueError(f"camera {self.name!r}: retries must be >= 0, got {self.retries}")


def parse_camera(text: str) -> CameraSpec:
    """``--camera NAME=SOURCE`` as a :class:`CameraSpec`, or a ValueError naming ``text``
    (its password hidden)."""
    from personkit.data.urls import redact

    name, sep, source = str(text).partition("=")
    if not sep or not name.strip() or not source.strip() or "://" in name:
        raise ValueError(f"--camera {redact(str(text))!r}: expected NAME=SOURCE, e.g. "
                         f"door=rtsp://cam1/stream or lobby=videos/lobby.mp4")
    return CameraSpec(name.strip(), source.strip())


def read_cameras_file(path: str | Path) -> list[CameraSpec]:
    """The cameras of a YAML file: a list of cameras, or ``cameras:`` holding one; each a
    mapping of :data:`CAMERA_KEYS` (``name`` and ``source`` required). An unknown key, a
    missing or mistyped value is a ValueError naming the file, the camera and the key."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--cameras {path}: unreadable ({e})") from None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"cameras"})
        if unknown:
            raise ValueError(f"{path}: unknown key {unknown[0]!r} (the file holds "
                             f"'cameras:', a list of cameras)")
        data = data.get("cameras")
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a list of cameras (each with name: and source:)")
    return [_camera_entry(item, i, path) for i, item in enumerate(data, start=1)]


def _camera_entry(item: object, i: int, path: Path) -> CameraSpec:
    """Camera ``i`` (1-based) of a cameras file."""
    from personkit.data.urls import redact

    if not isinstance(item, dict):
        raise ValueError(f"{path}: camera {i} is not a mapping of {', '.join(CAMERA_KEYS)}")
    label = f"camera {i}" + (f" ({item['name']!r})" if "name" in item else "")
    unknown = sorted(str(k) for k in set(item) - set(CAMERA_KEYS))
    if unknown:
        raise ValueError(f"{path}: {label}: unknown key {unknown[0]!r}; a camera may have "
                         f"{', '.join(CAMERA_KEYS)}")
    for key in ("name", "source"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise ValueError(f"{path}: {label}: {key}: must be given, as text")
    for key, (kind, words) in CAMERA_TYPES.items():
        if item.get(key) is not None and (not isinstance(item[key], kind)
                                          or isinstance(item[key], bool)):
            raise ValueError(f"{path}: {label}: {key}: {redact(repr(item[key]))} is not "
                             f"{words}")
    try:
        return CameraSpec(**{k: v.isoformat() if isinstance(v, date) else v
                             for k, v in item.items()})
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def camera_specs(given: list[str] | None, file: str | Path | None) -> list[CameraSpec]:
    """Every camera of ``--camera`` (``given``) and ``--cameras FILE``; a name given twice is
    a ValueError naming it and both its sources."""
    from personkit.data.urls import redact

    specs = [parse_camera(text) for text in given or []]
    specs += read_cameras_file(file) if file else []
    seen: dict[str, CameraSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"camera name {spec.name!r} is given twice (for "
                             f"{redact(seen[spec.name].source)} and {redact(spec.source)})")
        seen[spec.name] = spec
    return specs
