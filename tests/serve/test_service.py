"""`personkit serve` over real HTTP on 127.0.0.1 (issue #25): predict, search, entries,
health and metrics; every user mistake a 4xx naming the field, the server serving on."""

from __future__ import annotations

import base64
import threading

import cv2
import numpy as np
import pytest
from serve_utils import gt_boxes, start
from tiny_models import make_model

from personkit.models.numerics import fp32_tolerance, relative_difference


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def frame_bytes(scene_dir, frame=5) -> bytes:
    return (scene_dir / "img1" / f"{frame:06d}.jpg").read_bytes()


def test_predict_boxes_and_overlay(client, scene_dir):
    boxes = gt_boxes(scene_dir, 5)
    r = client.post("/predict?overlay=1&embedding=1", files={"image": frame_bytes(scene_dir)},
                    data={"boxes": str(boxes.tolist())})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"]) == (256, 192) and len(out["people"]) == len(boxes)
    person = out["people"][0]
    assert set(person) >= {"box", "attributes", "keypoints", "part_fractions", "embedding"}
    assert len(person["keypoints"]) == 16 and len(person["embedding"]) == 512
    assert person["box"] == pytest.approx(boxes[0].tolist(), abs=0.01)
    jpeg = base64.b64decode(out["overlay"].split(",", 1)[1])
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (192, 256, 3)
    whole = client.post("/predict", files={"image": frame_bytes(scene_dir)}).json()
    assert [p["box"] for p in whole["people"]] == [[0.0, 0.0, 256.0, 192.0]]  # one crop
    none = client.post("/predict", files={"image": frame_bytes(scene_dir)},
                       data={"boxes": "[]"}).json()
    assert none["people"] == []


def test_concurrent_requests_are_batched_with_the_same_results(server, client, scene_dir):
    from personkit.inference import Predictor

    boxes = gt_boxes(scene_dir, 6)
    reference = Predictor.from_checkpoint(server.checkpoint, "cpu")
    image = cv2.imdecode(np.frombuffer(frame_bytes(scene_dir, 6), np.uint8), cv2.IMREAD_COLOR)
    want = reference.predict(image[:, :, ::-1], boxes)
    before = server.service.metrics.batch_size.collect()[0].samples
    results, errors = [None] * 8, []

    def call(i: int) -> None:
        try:
            results[i] = client.post("/predict?embedding=1", files={
                "image": frame_bytes(scene_dir, 6)}, data={"boxes": str(boxes.tolist())}).json()
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    after = server.service.metrics.batch_size.collect()[0].samples
    count = {s.name: s.value for s in after}["personkit_batch_size_count"] - {
        s.name: s.value for s in before}["personkit_batch_size_count"]
    assert count < 8  # at least two requests shared a forward pass
    tol = fp32_tolerance(make_model())  # other batch sizes: other kernels, within float32 rounding
    for res in results:
        for got, ref in zip(res["people"], want, strict=True):
            assert relative_difference(ref.embedding, np.array(got["embedding"])) <= tol


@pytest.mark.parametrize("files, data, status, field, message", [
    ({"image": b"hello, not an image"}, {}, 400, "image", "cannot decode the uploaded 'image'"),
    ({"image": b""}, {}, 400, "image", "is empty"),
    ({"other": b"x"}, {}, 400, "image", "missing: send the image"),
    (None, {"boxes": "[[1, 2, 3"}, 400, "boxes", "not a JSON list of"),
    (None, {"boxes": "[[1, 2, 3]]"}, 400, "boxes", "expected a list of"),
    (None, {"boxes": "[[300, 300, 400, 400]]"}, 400, "boxes", "no area inside"),
])
def test_bad_uploads_are_4xx_naming_the_field(client, scene_dir, files, data, status, field,
                                              message):
    r = client.post("/predict", files=files or {"image": frame_bytes(scene_dir)}, data=data)
    assert r.status_code == status and r.json()["field"] == field
    assert message in r.json()["error"]
    assert client.get("/healthz").json()["status"] == "ok"  # still serving


def test_truncated_and_oversized_uploads(client, scene_dir):
    data = frame_bytes(scene_dir)
    r = client.post("/predict", files={"image": data[: len(data) // 2]})
    assert r.status_code == 400 and "truncated" in r.json()["error"]
    big = np.random.default_rng(0).integers(0, 255, (800, 800, 3), np.uint8)
    ok, png = cv2.imencode(".png", big)  # ~1.9 MB, over the fixture's 1 MB limit
    r = client.post("/predict", files={"image": png.tobytes()})
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert "more than the limit of 1,048,576 bytes" in r.json()["error"]

    def chunks():  # a chunked upload without Content-Length is capped too
        for _ in range(40):
            yield b"x" * 65536

    r = client.post("/predict", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "over" in r.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_search_entries_thumbnails_and_metrics(client, index_dir):
    from personkit.index import PeopleIndex

    index = PeopleIndex.open(index_dir)
    r = client.post("/search", data={"where": "gender=male", "k": "50"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert [h["id"] for h in hits] == [h["id"] for h in index.search(where="gender=male",
                                                                      k=50)["hits"]]
    entry = "door:2"
    r = client.post("/search", data={"entry": entry, "k": "3"}).json()
    assert len(r["hits"]) == 3 and entry not in [h["id"] for h in r["hits"]]
    assert r["hits"][0]["thumbnail"].startswith("/thumbs/")
    assert client.get(f"/tracks/{entry}").json()["source"] == "door"
    thumb = client.get(f"/thumbs/{entry}")
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content == index.get(
        entry).thumbnail
    for data, field, text in (({"where": "colour=red"}, "where", "valid: gender, backpack"),
                              ({"where": "source=hall", "entry": entry}, "where",
                               "unknown camera source='hall' in the filter: the people index "
                               "… has 1 camera(s): 'door'"),  # no server path (issue 37)
                              ({"k": "0"}, "k", "must be >= 1"),
                              ({"k": "1001"}, "k", "must be <= 1000"),
                              ({"k": "many"}, "k", "expected an integer"),
                              ({"box": "1,2,3,4"}, "box", "needs the example image")):
        r = client.post("/search", data=data)
        assert r.status_code == 400 and r.json()["field"] == field and text in r.json()["error"]
    r = client.get("/tracks/door:999")
    assert r.status_code == 404 and r.json()["field"] == "id"
    metrics = client.get("/metrics").text
    assert 'personkit_requests_total{route="/search",status="400"}' in metrics
    assert "personkit_batch_size_bucket" in metrics


def test_search_needs_an_index_and_the_index_its_model(checkpoint, index_dir, client):
    srv, _ = start(checkpoint, None)
    try:
        import httpx

        r = httpx.post(f"{srv.url}/search", data={"where": "gender=male"})
        assert r.status_code == 404 and "no people index" in r.json()["error"]
    finally:
        srv.stop()
    from personkit.index import PeopleIndex
    from personkit.inference import Predictor
    from personkit.serve.service import Service

    predictor = Predictor.from_checkpoint(checkpoint, "cpu", flip_tta=False)  # another space
    with pytest.raises(ValueError, match="holds people of model .* the served model is"):
        Service(predictor, PeopleIndex.open(index_dir))


def test_cameras_and_pages_of_a_search(client, index_dir):
    """``GET /cameras`` lists the sources (documented in /openapi.json); ``offset`` pages a
    search: the pages joined are the one long answer, ``next_offset`` ends with the results."""
    from personkit.index import PeopleIndex

    index = PeopleIndex.open(index_dir)
    assert client.get("/cameras").json() == {"cameras": [{"name": "door", "entries": 7}]}
    spec = client.get("/openapi.json").json()
    answer = spec["paths"]["/cameras"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"]["$ref"].endswith("/CamerasOut")
    assert {"name", "entries", "state", "fps", "error"} <= set(
        spec["components"]["schemas"]["CameraOut"]["properties"])  # live cameras' health too
    for form in ({"where": "source=door"}, {"entry": "door:2"}):
        whole = client.post("/search", data={**form, "k": "50"}).json()
        pages, offset = [], 0
        while offset is not None:
            r = client.post("/search", data={**form, "k": "3", "offset": str(offset)}).json()
            assert r["offset"] == offset and len(r["hits"]) <= 3
            pages += r["hits"]
            offset = r["next_offset"]
        assert [h["id"] for h in pages] == [h["id"] for h in whole["hits"]]
        assert whole["next_offset"] is None and len(pages) == 7 - ("entry" in form)
    assert client.post("/search", data={"k": "3"}).json()["hits"] == client.post(
        "/search", data={"k": "3", "offset": "0"}).json()["hits"]
    assert [h["id"] for h in client.post("/search", data={"k": "2", "offset": "6"}).json()[
        "hits"]] == [h["id"] for h in index.search(k=7)["hits"][6:]]
    for data, text in (({"offset": "-1"}, "must be >= 0"),
                       ({"offset": "two"}, "expected an integer"),
                       ({"k": "600", "offset": "401"}, "k + offset must be <= 1000, got 1001")):
        r = client.post("/search", data=data)
        assert r.status_code == 400 and r.json() == {"error": r.json()["error"],
                                                     "field": "offset"}
        assert text in r.json()["error"]


def test_a_whole_example_image_is_said_in_the_search_answer(client, scene_dir):
    image = {"example": frame_bytes(scene_dir)}
    whole = client.post("/search", data={"k": "2"}, files=image).json()
    assert whole["warning"] == whole["query"]["warning"]
    assert "the whole example image was taken as one person" in whole["warning"]
    assert "--box" not in whole["warning"]  # the CLI's words are not the API's
    box = ",".join(str(round(v)) for v in gt_boxes(scene_dir, 5)[0])
    boxed = client.post("/search", data={"k": "2", "box": box}, files=image).json()
    assert boxed["warning"] is None and boxed["query"]["warning"] is None


def test_search_by_time_range_and_entries_say_when(client):
    """Issue #36: ``since``/``until`` form fields (a crop has no time, so passes none); every
    entry says its camera, recording and times (None when unknown); a bad time is a 400
    naming its field."""
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"since", "until"} <= set(spec["Body_search_search_post"]["properties"])
    assert {"camera", "recording", "first_seen", "last_seen", "time_source"} <= set(
        spec["HitOut"]["properties"])
    hit = client.post("/search", data={"where": "camera=door", "k": "1"}).json()["hits"][0]
    assert (hit["camera"], hit["recording"], hit["first_seen"]) == ("door", "door", None)
    assert client.get(f"/tracks/{hit['id']}").json()["last_seen"] is None
    r = client.post("/search", data={"since": "2h", "until": "2030-01-01"})
    assert r.status_code == 200 and r.json()["hits"] == []
    assert r.json()["where"]["until"] == "2030-01-01T00:00:00.000000Z"
    for data, field, text in (({"since": "soon"}, "since", "since 'soon' is not an ISO-8601"),
                              ({"until": "13:00 today"}, "until", "until '13:00 today' is not"),
                              ({"since": "1h", "until": "2h"}, "since", "since 1h (")):
        r = client.post("/search", data=data)
        assert r.status_code == 400 and r.json()["field"] == field and text in r.json()["error"]
