"""``personkit search``: people of an index by example (an entry, a crop, or an image and a
box), by attribute filters, or both; results as JSON and as an HTML contact sheet.

Distances are cosine distances between L2-normalised embeddings; a hit is marked the same
person when its distance is within the model's calibrated threshold
(:mod:`personkit.metrics.matching`: on the ReID evaluation set it accepts about 1 % of
strangers), which the index keeps from the model it was built with.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from personkit.checkpoint import write_json
from personkit.index.entries import DEFAULT_K
from personkit.index.people import PeopleIndex

if TYPE_CHECKING:  # the model (torch) is loaded only for an image example
    from personkit.inference.predictor import PersonResult, Predictor


def parse_box(text: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``"x1,y1,x2,y2"`` (pixels) -> a box; ValueError naming the text otherwise."""
    values = text if not isinstance(text, str) else text.replace(" ", "").split(",")
    try:
        box = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"a box is x1,y1,x2,y2 with x2 > x1 and y2 > y1, got {text!r}")
    return box  # type: ignore[return-value]


#: Said when an example image became one person whole (no box, no detector).
WHOLE_IMAGE_EXAMPLE = ("no --box and no detector: the whole example image was taken as one "
                       "person")


def example_boxes(image: np.ndarray, box: Sequence[float] | np.ndarray | None,
                  detector: Any = None) -> tuple[np.ndarray | None, str | None]:
    """Where the person of an example image is, the one rule of ``personkit search`` and
    ``POST /search``: the given ``box``; else the highest-scoring person ``detector`` finds;
    else None (the whole image is the person), with a warning saying so.

    Raises:
        ValueError: the detector finds no person in the image.
    """
    if box is not None:
        return np.asarray(box, np.float64).reshape(1, 4), None
    if detector is None:
        return None, WHOLE_IMAGE_EXAMPLE
    found = detector.detect([image])[0]
    if not len(found):
        raise ValueError("no person found in the example image: give the person's box")
    return found[[int(np.argmax(found[:, 4]))], :4].astype(np.float64), None


def example_result(predictor: Predictor, image: np.ndarray, box: Sequence[float] | None,
                   detector: Any = None) -> tuple[PersonResult, str | None]:
    """The network's view of the example's person (:func:`example_boxes`) and the warning,
    if any."""
    boxes, warning = example_boxes(image, box, detector)
    return predictor.predict_many([(image, boxes)])[0][0], warning


def open_predictor(index: PeopleIndex, model: str | Path | None, device: str = "auto",
                   flip_tta: bool = True, **options: Any) -> Predictor:
    """The model of ``index`` (``model``, or the path the index was built from), checked to
    be the same embedding space; ``options``: more keywords of ``Predictor.from_checkpoint``
    (``engine``, also ``auto``; ``threads``, ``precision``, ``batch_size``).

    Raises:
        ValueError: no model known, or a model of another embedding space (naming both).
    """
    path = model or index.info.model_path
    if not path:
        raise ValueError(f"searching {index.path} by an image needs its model: give --model")
    if not Path(path).exists():  # said before torch loads
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from personkit.deploy.auto import open_predictor as open_on_engine

    predictor = open_on_engine(path, options.pop("engine", "torch"), device, flip_tta=flip_tta,
                               **options)  # engine "auto" chooses (personkit.deploy.auto)
    if predictor.model_id != index.info.model:
        raise ValueError(f"{path} is model {predictor.model_id}, the index {index.path} holds "
                         f"people of model {index.info.model}: give the model it was built with")
    return predictor


def search(index: PeopleIndex, example: str | None = None, box: str | None = None,
           where: str | None = None, k: int = DEFAULT_K, model: str | Path | None = None,
           device: str = "auto", flip_tta: bool = True, detector: Any = None,
           since: str | None = None, until: str | None = None, offset: int = 0,
           **options: Any) -> dict[str, Any]:
    """Search ``index``: ``example`` an entry id (``CAMERA:TRACK``) or an image file (its
    person: :func:`example_boxes`, with ``detector`` an opened detector or None; the model
    loaded by :func:`open_predictor` with ``options``); ``where`` attribute filters;
    ``since``/``until`` a time range; results ``offset`` to ``offset + k - 1``. Returns
    :meth:`PeopleIndex.search`'s result with a ``query`` record."""
    query: dict[str, Any] = {"where": where or ""}
    vector, exclude = None, None
    if example is not None and not Path(example).exists() and ":" in example:
        try:
            entry = index.get(example)
        except KeyError:
            raise FileNotFoundError(f"--example {example}: no such image file, and no entry "
                                    f"of that id in {index.path}") from None
        vector, exclude = entry.embedding, example
        query.update(example=example, thumbnail=entry.thumbnail)
    elif example is not None:
        from personkit.data.io import encode_jpeg, read_image

        # a bad box, image or model path is told before the model's libraries load (seconds)
        given = None if box is None else parse_box(box)
        image = read_image(example)
        predictor = open_predictor(index, model, device, flip_tta, **options)
        from personkit.inference.visualize import thumbnail

        r, warning = example_result(predictor, image, given, detector)
        vector = r.embedding
        query.update(example=str(example), box=list(r.box), thumbnail=encode_jpeg(thumbnail(
            image, r, margin=0.0 if warning else 0.1)), attributes={
            a: {"label": p.label, "confidence": round(p.probability, 4)}
            for a, p in (r.attributes or {}).items()}, **({"warning": warning} if warning
                                                          else {}))
    elif box is not None:
        raise ValueError("--box needs --example IMAGE")
    out = index.search(vector, where, k + offset, exclude=exclude, since=since, until=until)
    out.update(k=k, offset=offset, hits=out["hits"][offset:])
    return {"query": query, **out}


def _data_uri(jpeg: bytes | None) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg or b"").decode("ascii")


def _card(h: dict[str, Any], thumb: bytes | None) -> str:
    attrs = ", ".join(f"{a} {v['label']}" for a, v in h["attributes"].items())
    dist = "" if h["distance"] is None else f"distance {h['distance']:.4f}"
    same = {True: " same person", False: "", None: ""}[h.get("same_person")]
    span = (f"frames {h['first_frame']}-{h['last_frame']} ({h['first_time']:.1f}-"
            f"{h['last_time']:.1f} s)" if h["last_frame"] else "crop")
    seen = (f"seen {h['first_seen']} - {h['last_seen']}" if h.get("first_seen")
            else "time unknown")
    return (f'<figure class="hit{" same" if same else ""}"><img src="{_data_uri(thumb)}" '
            f'alt="{html.escape(h["id"])}"><figcaption><b>{html.escape(h["id"])}</b><br>'
            f'{html.escape(span)}<br>{html.escape(seen)}<br>{dist}{same}<br>'
            f'<small>{html.escape(attrs)}</small></figcaption></figure>')


def write_results(result: dict[str, Any], index: PeopleIndex, out_dir: str | Path) -> Path:
    """``results.json`` (thumbnails left out) and ``sheet.html`` (a contact sheet with the
    thumbnails inline) in ``out_dir``; returns the sheet's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    query = {k: v for k, v in result["query"].items() if k != "thumbnail"}
    write_json(out_dir / "results.json", {**result, "query": query}, indent=1, end="")
    cards = [_card(h, index.get(h["id"]).thumbnail) for h in result["hits"]]
    q = result["query"]
    head = (f'<figure class="query"><img src="{_data_uri(q["thumbnail"])}" alt="query">'
            f'<figcaption>query {html.escape(str(q.get("example")))}</figcaption></figure>'
            if q.get("thumbnail") else "")
    thr = result["threshold"]
    title = (f"{len(cards)} people; filter: {html.escape(json.dumps(result['where']))}; "
             f"same-person threshold: {'none' if thr is None else f'{thr:.4f}'}")
    (out_dir / "sheet.html").write_text(
        "<!doctype html><meta charset=utf-8><title>personkit search</title><style>"
        "body{font:13px sans-serif}figure{display:inline-block;margin:4px;vertical-align:top;"
        "width:140px}img{height:128px}.same{outline:3px solid #2a2}.query{outline:3px solid"
        f" #22a}}</style><p>{title}</p>{head}{''.join(cards)}", encoding="utf-8")
    return out_dir / "sheet.html"
