"""The web page in a real browser (issues #25 and #35): headless Chromium from Debian driven by
Playwright (`executable_path`: Playwright's own browser download cannot work offline) uploads
an image, sees the overlays, edits its boxes, and searches a small index of two cameras: by
attributes and camera, page by page, "find similar" on a result, and by an example image with
a typed or dragged box. Skips, saying why, where Chromium or Playwright is missing (`.ci/run`
installs Chromium)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time

import pytest
from serve_utils import gt_boxes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
GALLERY = "[...document.querySelectorAll('#gallery img')].map(img => img.alt)"


@pytest.fixture(scope="module")
def index_dir(index_dir, tmp_path_factory):
    """The shared index's people seen by a second camera too, "lobby", entry i from 14:00 +
    5 i minutes for a minute (in a copy: the shared index stays as it is)."""
    from personkit.index import PeopleIndex

    path = tmp_path_factory.mktemp("cameras") / "people"
    shutil.copytree(index_dir, path)
    index = PeopleIndex.open(path)
    door = [index.get(h["id"]) for h in index.search(where="source=door", k=100)["hits"]]
    index.add("lobby", [dataclasses.replace(
        e, source="lobby", first_seen=f"2026-01-05T14:{5 * i:02d}:00.000000Z",
        last_seen=f"2026-01-05T14:{5 * i + 1:02d}:00.000000Z", time_source="start_time")
        for i, e in enumerate(door)])
    return path


@pytest.fixture(scope="module")
def index(index_dir):
    from personkit.index import PeopleIndex

    return PeopleIndex.open(index_dir)


@pytest.fixture(scope="module")
def page(server):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        yield page
        browser.close()


def ids(hits: list[dict]) -> list[str]:
    return [h["id"] for h in hits]


def wait_for_gallery(page, want: list[str]) -> None:
    """Until the gallery shows the entries ``want``, in order."""
    page.wait_for_function(f"want => JSON.stringify({GALLERY}) === JSON.stringify(want)",
                           arg=want, timeout=30_000)


def searched(page, action) -> dict:
    """The answer of the ``/search`` that ``action`` (a callable) sends."""
    with page.expect_response(lambda r: r.url.endswith("/search"), timeout=30_000) as info:
        action()
    assert info.value.ok, info.value.text()
    return info.value.json()


def test_upload_shows_overlay_and_attributes(page, scene_dir, tmp_path):
    """Without boxes the whole frame is one person, said; edited boxes run it again."""
    page.fill("#boxes", "")
    page.set_input_files("#image-input", str(scene_dir / "img1" / "000005.jpg"))
    page.wait_for_selector("#predict-warning:not([hidden])", timeout=30_000)
    assert "whole image was taken as one person" in page.inner_text("#predict-warning")
    assert page.locator("#people li.person").count() == 1
    boxes = gt_boxes(scene_dir, 5)
    page.fill("#boxes", json.dumps(boxes.round(1).tolist()))
    page.press("#boxes", "Enter")
    page.wait_for_selector("#predict-warning", state="hidden", timeout=30_000)
    people = page.locator("#people li.person")
    assert people.count() == len(boxes)
    want = ", ".join(str(round(v)) for v in boxes[0])
    assert f"box [{want}]" in people.first.inner_text()
    assert "gender" in people.first.inner_text() and "upcolor" in people.first.inner_text()
    size = page.evaluate("[document.querySelector('#overlay').naturalWidth, "
                         "document.querySelector('#overlay').naturalHeight]")
    assert size == [256, 192]
    page.screenshot(path=str(tmp_path / "predict.png"), full_page=True)
    assert (tmp_path / "predict.png").stat().st_size > 10_000


def test_filtered_search_shows_the_matching_people(page, index, server, tmp_path):
    from personkit.cli import build_parser

    spec = page.request.get(server.url + "/openapi.json").json()
    form = spec["components"]["schemas"]["Body_search_search_post"]["properties"]
    cli = build_parser().parse_args(["search", "INDEX"]).top
    assert page.input_value("#k") == str(form["k"]["default"]) == str(cli)  # the same k
    label = index.search(k=1)["hits"][0]["attributes"]["upcolor"]["label"]
    want = ids(index.search(where=f"upcolor={label}", k=10)["hits"])
    page.select_option("#filter-upcolor", label)
    page.click("#search-button")
    wait_for_gallery(page, want)
    figures = page.locator("#gallery figure.hit")
    assert all(f"upcolor {label}" in figures.nth(i).inner_text() for i in range(len(want)))
    # the thumbnails come from /thumbs/ID: every one loads, 128 pixels high
    page.wait_for_function("[...document.querySelectorAll('#gallery img')]"
                           ".every(img => img.complete && img.naturalHeight === 128)",
                           timeout=30_000)
    assert f"with upcolor={label}" in page.inner_text("#search-summary")
    page.select_option("#filter-upcolor", "")
    page.fill("#entry", want[0])
    page.click("#search-button")
    similar = index.search(index.get(want[0]).embedding, k=10, exclude=want[0])["hits"]
    wait_for_gallery(page, ids(similar))
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    assert (tmp_path / "search.png").stat().st_size > 10_000


def test_a_camera_page_by_page(page, index):
    """The camera selector lists /cameras and filters on source=NAME; the pages follow one
    another and end where the results do."""
    options = page.eval_on_selector_all("#camera option", "o => o.map(x => x.textContent)")
    assert options == ["any", "door (7)", "lobby (7)"]
    page.fill("#entry", "")
    page.select_option("#camera", "lobby")
    page.fill("#k", "3")
    lobby = ids(index.search(where="source=lobby", k=100)["hits"])
    assert len(lobby) == 7 and all(i.startswith("lobby:") for i in lobby)
    page.click("#search-button")
    wait_for_gallery(page, lobby[:3])
    assert page.is_disabled("#prev-page") and "with source=lobby" in page.inner_text(
        "#search-summary")
    for first in (3, 6):
        page.click("#next-page")
        wait_for_gallery(page, lobby[first:first + 3])
    assert page.is_disabled("#next-page") and "people 7–7" in page.inner_text("#search-summary")
    page.click("#prev-page")
    wait_for_gallery(page, lobby[3:6])
    page.select_option("#camera", "")
    page.fill("#k", "10")


def test_a_time_range(page, index):
    """Issue #36: the time range sends since/until; the results are those seen in it, newest
    first, each saying when; a bad time is the server's message naming the field."""
    page.fill("#since", "2026-01-05T14:07Z")
    page.fill("#until", "2026-01-05T14:22Z")
    want = ids(index.search(since="2026-01-05T14:07Z", until="2026-01-05T14:22Z")["hits"])
    assert want == ["lobby:5", "lobby:4", "lobby:3"]  # seen 14:20, 14:15, 14:10
    assert ids(searched(page, lambda: page.click("#search-button"))["hits"]) == want
    wait_for_gallery(page, want)
    assert "seen 2026-01-05 14:20:00–14:21:00 UTC" in page.locator(
        "#gallery figure.hit").first.inner_text()
    assert "seen since 2026-01-05T14:07Z until 2026-01-05T14:22Z" in page.inner_text(
        "#search-summary")
    page.fill("#since", "soon")
    page.click("#search-button")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "since: since 'soon' is not an ISO-8601 time" in page.inner_text("#error")
    page.fill("#since", "")
    page.fill("#until", "")


def test_find_similar_searches_by_a_result(page, index):
    page.click("#search-button")
    wait_for_gallery(page, ids(index.search(k=10)["hits"]))
    chosen = page.locator("#gallery figure.hit").nth(1)
    entry = chosen.locator("img").get_attribute("alt")
    answer = searched(page, lambda: chosen.locator("button.similar").click())
    want = ids(index.search(index.get(entry).embedding, k=10, exclude=entry)["hits"])
    assert answer["query"]["entry"] == entry and ids(answer["hits"]) == want
    wait_for_gallery(page, want)
    assert page.input_value("#entry") == entry
    assert f"similar to {entry}" in page.inner_text("#search-summary")


def test_an_example_image_and_its_box_typed_or_dragged(page, scene_dir):
    """An example frame alone is one person, said; a typed box, then a dragged one, run the
    search again with that box."""
    frame = scene_dir / "img1" / "000005.jpg"
    answer = searched(page, lambda: page.set_input_files("#example", str(frame)))
    assert answer["query"]["box"] == [0, 0, 256, 192]
    assert "the whole example image was taken as one person" in answer["warning"]
    page.wait_for_selector("#search-warning:not([hidden])", timeout=30_000)
    assert page.inner_text("#search-warning") == answer["warning"]
    assert page.input_value("#entry") == ""  # the image is the example now
    box = [round(v) for v in gt_boxes(scene_dir, 5)[0]]
    page.fill("#example-box", ",".join(map(str, box)))
    answer = searched(page, lambda: page.press("#example-box", "Enter"))
    assert answer["query"]["box"] == box and answer["warning"] is None
    page.wait_for_selector("#search-warning", state="hidden", timeout=30_000)
    page.wait_for_selector("#example-rect:not([hidden])")
    shown = page.locator("#example-image").bounding_box()
    scale = 256 / shown["width"]
    start, end = (20, 30), (90, 150)  # CSS pixels on the shown image

    def drag() -> None:
        page.mouse.move(shown["x"] + start[0], shown["y"] + start[1])
        page.mouse.down()
        page.mouse.move(shown["x"] + end[0], shown["y"] + end[1], steps=4)
        page.mouse.up()

    answer = searched(page, drag)
    want = [round(v * scale) for v in (*start, *end)]
    assert answer["query"]["box"] == want and page.input_value("#example-box") == ",".join(
        map(str, want))
    rect = page.locator("#example-rect").bounding_box()
    assert rect["width"] == pytest.approx((end[0] - start[0]), abs=2)


def test_a_bad_upload_shows_the_servers_message(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not really a picture")
    page.fill("#boxes", "")
    page.set_input_files("#image-input", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "image: cannot decode the uploaded 'image'" in page.inner_text("#error")


def test_a_server_with_a_key_asks_for_it_once(page, checkpoint, index_dir):
    """Issue #37: with an API key, the page asks for it once (a prompt), sends it with every
    request (thumbnails too: fetched, as an <img> cannot send it) and keeps it for the tab."""
    from serve_utils import start

    from personkit.serve.access import access_for

    srv, _ = start(checkpoint, index_dir, access=access_for("127.0.0.1", "tab-key"))
    keyed = page.context.browser.new_page(viewport={"width": 1100, "height": 900})
    asked = []
    keyed.on("dialog", lambda d: (asked.append(d.message), d.accept("tab-key")))
    try:
        keyed.goto(srv.url + "/")
        keyed.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert keyed.locator("#camera option").count() >= 2  # /cameras answered with the key
        keyed.click("#search-button")
        keyed.wait_for_function("document.querySelectorAll('#gallery img').length > 0 && "
                                "[...document.querySelectorAll('#gallery img')]"
                                ".every(img => img.complete && img.naturalHeight === 128)",
                                timeout=30_000)
        assert asked == ["This server needs its API key:"]  # once, then kept for the tab
    finally:
        keyed.close()
        srv.stop()


def test_the_live_cameras_table(page, checkpoint, scene_dir, tmp_path):
    """Issue #36: with live cameras the page shows their health, refreshed: a camera that
    tracked its MOT sequence to the end (its people indexed), one whose source cannot be
    opened (failed, with the reason); the camera selector lists them."""
    from serve_utils import Server

    from personkit.inference import Predictor
    from personkit.serve.app import create_app
    from personkit.serve.ingest import open_served_index
    from personkit.serve.service import Service
    from personkit.serve.settings import CameraSpec

    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    cameras = [(CameraSpec("door", str(scene_dir)), None),
               (CameraSpec("gone", str(tmp_path / "no-such-sequence")), None)]
    index = open_served_index(tmp_path / "people", predictor, live=True)
    service = Service(predictor, index, cameras=cameras, checkpoint_seconds=0.5)
    srv = Server(create_app(service))
    live = page.context.browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        live.goto(srv.url + "/")  # the table refreshes every 5 s: waited for once door ended
        live.wait_for_selector("#cameras-section:not([hidden])", timeout=30_000)
        deadline = time.monotonic() + 90
        while {c["name"]: c.get("state") for c in service.cameras()}["door"] != "ended":
            assert time.monotonic() < deadline, service.cameras()
            time.sleep(0.1)
        live.reload()  # shown at once, not at the next refresh
        live.wait_for_function(
            "[...document.querySelectorAll('#camera-status tbody tr')].some(r => "
            "r.cells[0].textContent === 'door' && r.cells[1].textContent === 'ended' && "
            "Number(r.cells[7].textContent) > 0)", timeout=30_000)
        assert [o.split(" (")[0] for o in live.eval_on_selector_all(
            "#camera option", "o => o.map(x => x.textContent)")][1:] == ["door", "gone"]
        rows = {r.split("\t")[0]: r.split("\t") for r in live.locator(
            "#camera-status tbody tr").all_inner_texts()}
        health = {c["name"]: c for c in service.cameras()}
        assert rows["door"][3] == str(health["door"]["frames"]) != "0"  # frames tracked
        assert rows["door"][7] == str(health["door"]["entries"])  # people indexed
        assert rows["gone"][1] == "failed" and "no-such-sequence" in rows["gone"][-1]
        assert live.locator("#camera-status tr.camera-failed").count() == 1
    finally:
        live.close()
        srv.stop()
