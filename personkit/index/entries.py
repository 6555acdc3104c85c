"""What a people index holds: one :class:`Entry` per person (a track, or a crop), the
:class:`IndexInfo` that says which model's embedding space and attribute vocabulary it is in,
and attribute filters (:func:`parse_where`).

An entry is what the paper's multi-task network says about one person, merged over a track
(Pfeiffer et al., GCPR 2019, Sec. 1: ReID "enables tracking and merging person information
across longer timespans"): the L2-normalised mean embedding, each attribute's merged decision
with its confidence (and a binary attribute's probability of class 1), where and when it was
seen, and a thumbnail of its best view.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Other spellings of the Market-1501 attribute names accepted in filters, and ``camera``, the
#: camera's name (kept in the ``source`` column; ``source=`` is its older spelling).
ALIASES = {"upper_color": "upcolor", "lower_color": "downcolor", "upper_colour": "upcolor",
           "lower_colour": "downcolor", "sleeve": "up", "lower_length": "down",
           "camera": "source"}
#: Filter keys that are not attributes.
FIELDS = ("source",)
#: Separates a camera from its recording in an entry id (never part of a camera's name).
RECORDING_SEP = "/"


class FilterError(ValueError):
    """A bad attribute filter: malformed, an unknown name or value, or conflicting terms."""


class EmptyIndexError(ValueError):
    """A search of an index that holds nobody yet."""


class ExampleError(ValueError):
    """A search example that does not fit the index (an embedding of another width)."""


@dataclass
class Entry:
    """One person in the index.

    Attributes:
        source: the camera it was seen by (a sequence's, file's or stream's name, or
            ``--name``).
        track_id: its track id in its recording (a crop's number for a folder of crops).
        first_frame, last_frame: the track's frame span (1-based; 0 for a crop).
        first_time, last_time: the same in seconds from the recording's first frame.
        embedding: ``D`` float32, L2-normalised.
        attributes: name -> (label, confidence) or (label, confidence, positive): the decided
            label, its merged probability, and for a binary attribute the merged probability
            of class 1 ("yes", "female", ...; None when unknown).
        thumbnail: JPEG bytes of its best view.
        identity: the person's ground-truth identity when the source has one ("" otherwise):
            ``synth:SEED:ID`` for a synthetic sequence (the same person in every sequence of
            that seed), ``SEQUENCE:ID`` for other MOT ground truth (never equal across
            sources); used by :meth:`~personkit.index.people.PeopleIndex.evaluate` only.
        recording: the recording of the camera it came from ("": the one named as the camera);
            indexing a recording again replaces its entries, another recording adds.
        origin: where the recording came from (a file's or folder's absolute path, a stream's
            address and when it was opened; "" when unknown: an older index).
        first_seen, last_seen: when it was first and last seen, ISO-8601 UTC (None when the
            recording's start is unknown).
        time_source: how the start was known (``start_time``, ``creation_time``, ``mtime``,
            ``wall_clock``: :data:`personkit.data.times.TIME_SOURCES`; "" when unknown).
    """

    source: str
    track_id: int
    embedding: np.ndarray
    attributes: dict[str, tuple[Any, ...]]
    thumbnail: bytes
    first_frame: int = 0
    last_frame: int = 0
    first_time: float = 0.0
    last_time: float = 0.0
    identity: str = ""
    recording: str = ""
    origin: str = ""
    first_seen: str | None = None
    last_seen: str | None = None
    time_source: str = ""

    @property
    def id(self) -> str:
        return entry_id(self.source, self.track_id, self.recording)

    @property
    def key(self) -> str:
        """Its recording's key (:func:`recording_key`)."""
        return recording_key(self.source, self.recording)


def recording_key(camera: str, recording: str = "") -> str:
    """A recording's key, its entries' id prefix: ``CAMERA`` for the recording named as its
    camera (or ""), else ``CAMERA/RECORDING``."""
    return camera if recording in ("", camera) else f"{camera}{RECORDING_SEP}{recording}"


def entry_id(source: str, track_id: int, recording: str = "") -> str:
    """The id of an entry: ``CAMERA:TRACK``, or ``CAMERA/RECORDING:TRACK`` for a recording
    not named as its camera."""
    return f"{recording_key(source, recording)}:{int(track_id)}"


def split_entry_id(text: str) -> tuple[str, int]:
    """``SOURCE:TRACK`` -> (source, track id); ValueError naming ``text`` otherwise."""
    source, _, track = text.rpartition(":")
    if not source or not track.lstrip("-").isdigit():
        raise ValueError(f"{text!r} is not an entry id (SOURCE:TRACK, e.g. cam1:3)")
    return source, int(track)


@dataclass
class IndexInfo:
    """The embedding space and attribute vocabulary of an index (``index.json``).

    Attributes:
        model: the model identity (:func:`~personkit.inference.contract.model_identity`).
        dim: embedding width.
        attributes: attribute name -> its labels, in the model's order.
        calibration: the model's calibrated same-person threshold
            (:mod:`personkit.metrics.matching`), or None when the model has none.
        model_path: where the model was loaded from when the index was made (a hint for
            search by image).
    """

    model: str
    dim: int
    attributes: dict[str, list[str]]
    calibration: dict[str, Any] | None = None
    model_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def same_person_threshold(self) -> float | None:
        """The same-person threshold for entries, which are track means: the one the model's
        evaluation calibrated between track means (``calibration["tracks"]``,
        :func:`~personkit.metrics.matching.calibrate_track_threshold`), else, for a model
        evaluated before that existed, the crop-level one (which accepts far more strangers
        among track means: docs/search.md); None without a calibration. (The threshold
        between video track means, ``track_match``, is measured but not applied yet:
        docs/search.md, *Same person on index entries*.)"""
        calibration = self.calibration or {}
        tracks = calibration.get("tracks") or {}
        return tracks.get("threshold", calibration.get("threshold"))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.dim, "attributes": self.attributes,
                "calibration": self.calibration, "model_path": self.model_path, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexInfo:
        known = ("model", "dim", "attributes", "calibration", "model_path")
        return cls(str(data["model"]), int(data["dim"]),
                   {k: list(v) for k, v in data["attributes"].items()},
                   data.get("calibration"), data.get("model_path"),
                   {k: v for k, v in data.items() if k not in known})

    def check_same_space(self, other: IndexInfo, where: str) -> None:
        """Raise ValueError (naming both models) unless ``other`` is the same embedding space
        and vocabulary."""
        if (self.model, self.dim, self.attributes) != (other.model, other.dim, other.attributes):
            raise ValueError(
                f"{where} holds people of model {self.model} (embedding width {self.dim}, "
                f"attributes {sorted(self.attributes)}), these come from model {other.model} "
                f"(width {other.dim}, attributes {sorted(other.attributes)}): distances "
                f"between two embedding spaces mean nothing; use a new index for this model")


#: Probability comparisons in filters (``backpack>=0.3``), as written and in SQL.
COMPARISONS = (">=", "<=", ">", "<")


def parse_where(text: str | Mapping[str, Any] | None,
                attributes: Mapping[str, list[str]]) -> dict[str, Any]:
    """``"gender=female backpack=yes upcolor=red"`` (or a mapping) -> ``{name: label}``,
    checked against the index's vocabulary (``camera=NAME``, or ``source=NAME``, filters by
    camera: key ``source``). Terms are separated by spaces or commas; a value holding either
    is quoted (``camera="cam 1"``, ``camera='a,b'``). A term given twice must say the same
    both times.

    ``NAME=LABEL`` is the decision the index holds (for a binary attribute: the calibrated
    one); ``NAME>=P`` (also ``>``, ``<=``, ``<``) compares a binary attribute's probability of
    class 1 with ``P`` in [0, 1], as ``{name: (op, P)}``.

    Raises:
        FilterError: a malformed term or quote, an unknown name or label (listing the valid
            ones), a probability outside [0, 1] or on an attribute with more than two
            classes, or two different terms for one name (naming both).
    """
    if not text:
        return {}
    triples = ([(k, *_split_value(v)) for k, v in text.items()] if isinstance(text, Mapping)
               else _terms(str(text)))
    out: dict[str, Any] = {}
    for name, op, value in triples:
        key, term = _checked(name, op, value, attributes)
        if key in out and out[key] != term:
            raise FilterError(f"conflicting filter terms {_show(key, out[key])} and "
                              f"{_show(key, term)}: give one term per name")
        out[key] = term
    return out


def _show(key: str, term: Any) -> str:
    return f"{key}{term[0]}{term[1]:g}" if isinstance(term, tuple) else f"{key}={term!r}"


def _split_value(value: Any) -> tuple[str, Any]:
    """A mapping's value: a label, ``(op, number)``, or a string ``">=0.3"``."""
    if isinstance(value, tuple | list) and len(value) == 2:
        return str(value[0]), value[1]
    text = str(value).strip()
    op = next((o for o in COMPARISONS if text.startswith(o)), "=")
    return op, text[len(op):] if op != "=" else text


def _checked(name: str, op: str, value: Any,
             attributes: Mapping[str, list[str]]) -> tuple[str, Any]:
    """One filter term as (key, label or (op, probability)), the name's aliases resolved and
    the value checked."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in FIELDS and op == "=":
        return key, str(value).strip()
    if key not in attributes:
        raise FilterError(f"unknown attribute {name!r} in the filter; valid: "
                          f"{', '.join(attributes)}, camera (also source)")
    if op != "=":
        return key, (op, _probability(key, op, value, attributes[key]))
    label = str(value).strip().lower()
    if label not in attributes[key]:
        raise FilterError(f"unknown value {value!r} for attribute {key!r}; valid: "
                          f"{', '.join(attributes[key])}")
    return key, label


def _probability(key: str, op: str, value: Any, labels: list[str]) -> float:
    if len(labels) != 2:
        raise FilterError(f"{key}{op}{value}: a probability filter needs a yes/no attribute; "
                          f"{key} has {len(labels)} classes: filter it as {key}=LABEL "
                          f"({', '.join(labels)})")
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = float("nan")
    if not 0.0 <= p <= 1.0:
        raise FilterError(f"{key}{op}{value}: the probability of {key}={labels[1]} must be a "
                          f"number in [0, 1] (e.g. {key}>=0.3)")
    return p


def _terms(text: str) -> list[tuple[str, str, str]]:
    """``NAME=VALUE`` or ``NAME>=P`` terms split on spaces and commas outside quotes
    (``source="cam 1"``, ``source='a,b'``; the quotes are removed, a backslash is an ordinary
    character)."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split, lexer.whitespace = True, " \t\r\n,"
    lexer.commenters, lexer.escape = "", ""
    try:
        words: Iterable[str] = list(lexer)
    except ValueError:
        raise FilterError(f"unclosed quote in the filter {text!r}: quote a value as "
                          f"source=\"cam 1\" or source='cam 1'") from None
    terms = []
    for term in words:
        found = re.match(r"^([^<>=]+)(>=|<=|>|<|=)(.+)$", term)
        if not found:
            raise FilterError(f"filter term {term!r} is not NAME=VALUE or NAME>=PROBABILITY "
                              f"(e.g. \"gender=female backpack=yes\", \"hat>=0.3\")")
        terms.append(found.groups())
    return terms

#: Results a search returns unless asked for more: ``personkit search -k``, HTTP ``/search``
#: and the web page alike.
DEFAULT_K = 10
