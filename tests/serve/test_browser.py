"""The web page in a real browser (issue #25): headless Chromium from Debian driven by
Playwright (`executable_path`: Playwright's own browser download cannot work offline) uploads
an image, sees the overlays, and runs a filtered search on a small index. Skips, saying why,
where Chromium or Playwright is missing (`.ci/run` installs Chromium)."""

from __future__ import annotations

import json
import shutil

import pytest
from serve_utils import gt_boxes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


def test_upload_shows_overlay_and_attributes(page, scene_dir, tmp_path):
    boxes = gt_boxes(scene_dir, 5)
    page.fill("#boxes", json.dumps(boxes.round(1).tolist()))
    page.set_input_files("#image-input", str(scene_dir / "img1" / "000005.jpg"))
    page.wait_for_selector("#overlay[src^='data:image/jpeg']", state="visible", timeout=30_000)
    people = page.locator("#people li.person")
    assert people.count() == len(boxes)
    assert "gender" in people.first.inner_text() and "upcolor" in people.first.inner_text()
    size = page.evaluate("[document.querySelector('#overlay').naturalWidth, "
                         "document.querySelector('#overlay').naturalHeight]")
    assert size == [256, 192]
    page.screenshot(path=str(tmp_path / "predict.png"), full_page=True)
    assert (tmp_path / "predict.png").stat().st_size > 10_000


def test_filtered_search_shows_the_matching_people(page, index_dir, tmp_path):
    from personkit.index import PeopleIndex

    index = PeopleIndex.open(index_dir)
    label = index.search(k=1)["hits"][0]["attributes"]["upcolor"]["label"]
    want = [h["id"] for h in index.search(where=f"upcolor={label}", k=12)["hits"]]
    page.select_option("#filter-upcolor", label)
    page.click("#search-button")
    page.wait_for_selector("#gallery figure.hit", timeout=30_000)
    figures = page.locator("#gallery figure.hit")
    assert figures.count() == len(want)
    assert [figures.nth(i).locator("img").get_attribute("alt") for i in range(len(want))] == want
    assert all(f"upcolor {label}" in figures.nth(i).inner_text() for i in range(len(want)))
    # the thumbnails come from /thumbs/ID: every one loads, 128 pixels high
    page.wait_for_function("[...document.querySelectorAll('#gallery img')]"
                           ".every(img => img.complete && img.naturalHeight === 128)",
                           timeout=30_000)
    assert f"with upcolor={label}" in page.inner_text("#search-summary")
    page.select_option("#filter-upcolor", "")
    page.fill("#entry", want[0])
    page.click("#search-button")
    page.wait_for_function(f"!document.querySelector('#gallery').innerText.includes('{want[0]}"
                           f"\\n')", timeout=30_000)
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    assert (tmp_path / "search.png").stat().st_size > 10_000


def test_a_bad_upload_shows_the_servers_message(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not really a picture")
    page.fill("#boxes", "")
    page.set_input_files("#image-input", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "image: cannot decode the uploaded 'image'" in page.inner_text("#error")
