"""`personkit serve` under hostile input and load (issue #32), over real HTTP on 127.0.0.1:
sizes read from headers before decoding, bounded requests, 503 with Retry-After when full,
failures that stay with their request, JSON for every error, URL-safe links, and one query
embedding for an image example on the CLI and over HTTP."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest
from hostile_images import HOSTILE
from serve_utils import gt_boxes, start

LIMITS = {"max_pixels": 1_000_000, "max_boxes": 16, "max_concurrency": 2, "max_queue": 1}


@pytest.fixture(scope="module")
def limited(checkpoint, index_dir):
    srv, service = start(checkpoint, index_dir, max_batch=4, max_wait_ms=20, limits=LIMITS)
    srv.service = service
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(limited):
    with httpx.Client(base_url=limited.url, timeout=60) as c:
        yield c


def frame(scene_dir, t=5) -> bytes:
    return (scene_dir / "img1" / f"{t:06d}.jpg").read_bytes()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_uploads_are_refused_from_their_header(client, kind):
    """A few hundred bytes declaring 16000² to 30000² pixels (PNG, JPEG with fill bytes
    before its SOF, TIFF, WebP) are 413 on /predict and /search, nothing decoded."""
    r = client.post("/predict", files={"image": HOSTILE[kind]})
    assert r.status_code == 413 and r.json()["field"] == "image", r.text
    assert "more than the limit of 1,000,000" in r.json()["error"]
    assert "--max-pixels" in r.json()["error"]
    r = client.post("/search", files={"example": HOSTILE[kind]})
    assert r.status_code == 413 and r.json()["field"] == "example"
    assert client.get("/healthz").json()["status"] == "ok"


def test_too_many_boxes_is_413_naming_the_field(client, scene_dir):
    boxes = [[0, 0, 10 + i, 20 + i] for i in range(17)]
    r = client.post("/predict", files={"image": frame(scene_dir)}, data={"boxes": str(boxes)})
    assert r.status_code == 413 and r.json()["field"] == "boxes"
    assert "17 boxes, more than the limit of 16" in r.json()["error"]
    r = client.post("/predict", files={"image": frame(scene_dir)},
                    data={"boxes": str(boxes[:16])})
    assert r.status_code == 200 and len(r.json()["people"]) == 16


def test_a_whole_image_as_one_person_is_said(client, scene_dir):
    out = client.post("/predict", files={"image": frame(scene_dir)}).json()
    assert len(out["people"]) == 1 and "whole image was taken as one person" in out["warning"]
    with_boxes = client.post("/predict", files={"image": frame(scene_dir)},
                             data={"boxes": str(gt_boxes(scene_dir, 5).tolist())}).json()
    assert "warning" not in with_boxes


class Gate:
    """Holds every forward pass until released, counting those that started."""

    def __init__(self, predictor):
        self.predictor, self.run = predictor, predictor.predict_many
        self.open, self.started = threading.Event(), threading.Semaphore(0)

    def __call__(self, items, stop=None):
        self.started.release()
        assert self.open.wait(30)
        return self.run(items, stop)


def test_overload_is_503_with_retry_after_and_every_answer_is_its_own(limited, scene_dir,
                                                                       monkeypatch):
    """Two requests in work and one waiting fill the server (max_concurrency 2, max_queue
    1): the next ones are refused at once with 503 and Retry-After; once the work goes on,
    every admitted request gets its own people (none lost, none mixed)."""
    gate = Gate(limited.service.predictor)
    monkeypatch.setattr(limited.service.predictor, "predict_many", gate)
    boxes = gt_boxes(scene_dir, 6)
    answers = {}

    def call(i: int) -> None:
        mine = boxes[: 1 + i % len(boxes)]
        with httpx.Client(base_url=limited.url, timeout=60) as c:
            answers[i] = (mine, c.post("/predict", files={"image": frame(scene_dir, 6)},
                                       data={"boxes": str(mine.tolist())}))

    held = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in held:
        t.start()
    assert gate.started.acquire(timeout=30)  # one batch in the network, the rest waiting
    metrics = limited.service.metrics
    while metrics.in_work._value.get() + metrics.waiting._value.get() < 3:
        threading.Event().wait(0.01)
    refused = []
    for i in range(3, 6):
        call(i)
        refused.append(answers.pop(i)[1])
    gate.open.set()
    for t in held:
        t.join()
    assert all(r.status_code == 503 and r.headers["retry-after"] == "1" for r in refused)
    assert all("the server is busy" in r.json()["error"] for r in refused)
    for mine, r in answers.values():
        assert r.status_code == 200, r.text
        got = np.array([p["box"] for p in r.json()["people"]])
        np.testing.assert_allclose(got, mine, atol=0.01)
    metrics = httpx.get(f"{limited.url}/metrics").text
    assert 'personkit_refused_total{route="/predict"} 3.0' in metrics
    assert 'personkit_requests_total{route="/predict",status="503"} 3.0' in metrics


def test_a_failing_item_fails_only_its_own_request(limited, scene_dir, monkeypatch):
    """A batch that raises is rerun item by item: the request whose image breaks the
    network gets a JSON 500, the others of its batch their results."""
    run = limited.service.predictor.predict_many

    def fragile(items, stop=None):
        if any(image.shape[1] == 77 for image, _ in items):
            raise RuntimeError("this image breaks the network")
        return run(items, stop)

    monkeypatch.setattr(limited.service.predictor, "predict_many", fragile)
    import cv2

    bad = cv2.imencode(".png", np.zeros((40, 77, 3), np.uint8))[1].tobytes()
    uploads = [bad, frame(scene_dir), frame(scene_dir, 7)]
    out = [None] * 3

    def call(i):
        out[i] = httpx.post(f"{limited.url}/predict", files={"image": uploads[i]}, timeout=60)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out[0].status_code == 500 and out[0].json() == {
        "error": "internal error (RuntimeError); the server log has the details", "field": None}
    assert [o.status_code for o in out[1:]] == [200, 200]


def test_every_error_is_json(client, limited, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(limited.service.index, "search", broken)
    r = client.post("/search", data={"where": "gender=male"})
    assert r.status_code == 500 and r.json()["error"].startswith("internal error (Runtime")
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"] == "Not Found"
    r = client.post("/predict", content=b"--x\r\nbroken",
                    headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    r = client.post("/search", data={"k": "0"})
    assert r.status_code == 400 and r.json() == {"error": "must be >= 1, got 0",
                                                 "field": "k"}


def test_openapi_documents_every_answer(client):
    spec = client.get("/openapi.json").json()
    for path, method in (("/predict", "post"), ("/search", "post"),
                         ("/tracks/{entry_id}", "get"), ("/healthz", "get")):
        responses = spec["paths"][path][method]["responses"]
        assert "$ref" in responses["200"]["content"]["application/json"]["schema"], path
        for code in ("400", "413", "503"):
            assert responses[code]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ErrorOut")
    people = spec["components"]["schemas"]["PersonOut"]["properties"]
    assert {"box", "attributes", "keypoints", "part_fractions", "embedding"} <= set(people)


def test_entry_ids_with_odd_characters_are_url_encoded(checkpoint, tmp_path):
    """Sources may hold ``#``, ``?``, ``%``, spaces and commas: the links the service gives
    fetch the right entry and thumbnail, and such a source can be filtered (quoted)."""
    from index_utils import make_entries

    from personkit.index.build import index_info
    from personkit.index.people import PeopleIndex
    from personkit.inference import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    info = index_info(predictor, str(checkpoint))
    index = PeopleIndex.create_or_open(tmp_path / "odd", info)
    names = ["cam #1?", "50% off", "a,b c/d"]
    for name in names:
        entries = make_entries(name, 2, info.dim)
        for e in entries:
            e.attributes = {a: (labels[0], 0.9) for a, labels in info.attributes.items()}
        index.add(name, entries)
    srv, _ = start(checkpoint, tmp_path / "odd")
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            for name in names:
                quoted = '"' + name + '"'
                hits = c.post("/search", data={"where": f"source={quoted}"}).json()["hits"]
                assert [h["id"] for h in hits] == [f"{name}:1", f"{name}:2"]
                for h in hits:
                    thumb = c.get(h["thumbnail"])
                    assert thumb.status_code == 200
                    assert thumb.content == index.get(h["id"]).thumbnail
    finally:
        srv.stop()


def test_an_image_example_gives_one_embedding_on_the_cli_and_over_http(client, checkpoint,
                                                                       index_dir, scene_dir,
                                                                       tmp_path):
    """The same image and box give the same query on ``personkit search`` and ``POST
    /search`` (the same hits, distances within float32 rounding); without a box and without
    a detector both take the whole image as the person and say so."""
    from tiny_models import make_model

    from personkit.index.people import PeopleIndex
    from personkit.index.search import search
    from personkit.models.numerics import fp32_tolerance

    image = tmp_path / "frame.jpg"
    image.write_bytes(frame(scene_dir, 7))
    box = ",".join(str(round(v, 1)) for v in gt_boxes(scene_dir, 7)[0])
    tol = fp32_tolerance(make_model())
    for form in ({"box": box}, {}):
        cli = search(PeopleIndex.open(index_dir), str(image), form.get("box"), k=5,
                     model=checkpoint, device="cpu")
        http = client.post("/search", data={"k": "5", **form},
                           files={"example": image.read_bytes()}).json()
        assert [h["id"] for h in http["hits"]] == [h["id"] for h in cli["hits"]]
        for a, b in zip(http["hits"], cli["hits"], strict=True):
            assert abs(a["distance"] - b["distance"]) <= 2 * tol
        assert http["query"]["box"] == pytest.approx(cli["query"]["box"])
        assert (http["query"].get("warning") is None) == ("box" in form)
        assert (cli["query"].get("warning") is None) == ("box" in form)


def test_the_detector_runs_on_the_service_device(checkpoint, monkeypatch):
    """``personkit serve --device cuda --detector ...`` opened its detector on the CPU; it
    now gets the device the network runs on (resolved once, ``auto`` included). The command
    builds the predictor and the detector once and hands both to the service (issue #33)."""
    import torch

    import personkit.inference.detectors as detectors
    import personkit.runtime as runtime
    import personkit.serve.app as app
    from personkit.cli import main
    from personkit.inference import Predictor

    opened, served, loaded = {}, {}, []
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    monkeypatch.setattr(runtime, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(Predictor, "from_checkpoint",
                        lambda *a, **k: loaded.append(k) or predictor)
    monkeypatch.setattr(detectors, "open_detector",
                        lambda spec, device, *a: opened.setdefault("device", device))

    def no_server(base, service):
        served["detector"], served["predictor"] = service.detector, service.predictor
        return lambda config: type("Run", (), {"run": lambda self: None})()

    monkeypatch.setattr(app, "stopping_server", no_server)
    assert main(["serve", "--model", str(checkpoint), "--max-batch", "40", "--detector",
                 "fasterrcnn_mobilenet_v3_large_320_fpn"]) == 0
    assert opened == {"device": "cuda"} and served == {"detector": "cuda", "predictor": predictor}
    assert loaded == [{"device": "auto", "engine": "torch", "threads": None,
                       "precision": "fp32", "flip_tta": True, "batch_size": 40}]
