"""Who may use `personkit serve` (issue #37, item 3): a key for any binding beyond loopback,
401 without it (``/healthz`` and the page's files open), a Host allow-list against DNS
rebinding, no CORS header unless asked, cross-site posts refused, no server paths shown."""

from __future__ import annotations

import os

import httpx
import pytest
from serve_utils import start

from personkit.serve.access import access_for, read_api_key

KEY = "k3y-for-the-test"


@pytest.fixture(scope="module")
def keyed(checkpoint, index_dir):
    access = access_for("127.0.0.1", KEY, ["people.example"], "https://ok.example")
    srv, _ = start(checkpoint, index_dir, access=access)
    yield srv.url
    srv.stop()


def get(url: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(url + path, headers=headers, timeout=30)


def test_a_non_loopback_binding_needs_a_key(tmp_path, capsys):
    from personkit.cli import main

    with pytest.raises(ValueError, match="--api-key-file"):
        access_for("0.0.0.0", None)
    assert "192.168.1.5" in access_for("192.168.1.5", KEY).allowed_hosts
    assert access_for("::1", None).api_key is None and access_for("localhost", None)
    assert main(["serve", "--host", "0.0.0.0", "--model", str(tmp_path / "none")]) == 2
    assert "reachable from other machines" in capsys.readouterr().err  # before the model
    with pytest.raises(ValueError, match="--cors-origin"):
        access_for("127.0.0.1", None, cors_origin="https://ok.example/path")


def test_the_key_comes_from_a_private_file_or_the_environment(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        read_api_key(path)
    os.chmod(path, 0o600)
    assert read_api_key(path) == KEY
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_api_key(path)
    with pytest.raises(ValueError, match="no such file"):
        read_api_key(tmp_path / "missing")
    assert read_api_key(None, {"PERSONKIT_API_KEY": " abc "}) == "abc"
    assert read_api_key(None, {}) is None
    with pytest.raises(ValueError, match="empty"):
        read_api_key(None, {"PERSONKIT_API_KEY": " "})


def test_every_route_but_health_and_the_page_needs_the_key(keyed):
    assert get(keyed, "/healthz").status_code == 200
    assert "name" in get(keyed, "/healthz").json()["index"]  # the folder's name, no path
    assert "path" not in get(keyed, "/healthz").json()["index"]
    assert get(keyed, "/").status_code == 200 and get(keyed, "/static/app.js").status_code == 200
    for path in ("/cameras", "/metrics", "/thumbs/door:1", "/openapi.json"):
        r = get(keyed, path)
        assert r.status_code == 401 and r.json()["field"] == "authorization", path
        assert r.headers["www-authenticate"] == "Bearer"
    assert get(keyed, "/cameras", Authorization="Bearer wrong").status_code == 401
    assert get(keyed, "/cameras", Authorization=f"Bearer {KEY}").status_code == 200
    r = httpx.post(keyed + "/search", data={"where": "gender=female"}, timeout=30)
    assert r.status_code == 401


def test_hosts_origins_and_cors(keyed):
    auth = {"Authorization": f"Bearer {KEY}"}
    r = get(keyed, "/cameras", Host="rebound.attacker.example", **auth)
    assert r.status_code == 400 and r.json()["field"] == "host"
    assert get(keyed, "/cameras", Host="people.example:8000", **auth).status_code == 200
    assert "access-control-allow-origin" not in get(keyed, "/cameras", Origin="https://evil."
                                                    "example", **auth).headers
    assert get(keyed, "/cameras", Origin="https://ok.example", **auth).headers[
        "access-control-allow-origin"] == "https://ok.example"
    post = {"data": {"where": "gender=female"}, "timeout": 30}
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        r = httpx.post(keyed + "/search", headers={**auth, **headers}, **post)
        assert r.status_code == 403 and r.json()["field"] == "origin", headers
    for headers in ({"Origin": keyed}, {"Origin": "https://ok.example"}, {}):  # keyed: ours
        r = httpx.post(keyed + "/search", headers={**auth, **headers}, **post)
        assert r.status_code == 200, (headers, r.text)


def test_errors_hide_the_servers_paths(checkpoint, index_dir):
    from personkit.serve.app import hide_paths

    class Service:
        index = type("I", (), {"path": index_dir})()
        predictor = type("P", (), {"path": checkpoint})()

    text = hide_paths(f"no entry in {index_dir} (model {checkpoint})", Service())
    assert str(index_dir) not in text and str(checkpoint) not in text and "…" in text


def test_the_audit_log_records_who_looked_at_whom(checkpoint, index_dir, tmp_path, capsys):
    """Issue #37, item 4: a search, an entry view, a thumbnail and a refused request are one
    JSON line each in INDEX/audit.jsonl (client, key id, route, filter, hits; never the key);
    `personkit audit` prints them."""
    import shutil

    from personkit.cli import main
    from personkit.index import PeopleIndex
    from personkit.index.audit import read_audit

    copy = tmp_path / "people"  # without what other servers of the session logged
    shutil.copytree(index_dir, copy, ignore=shutil.ignore_patterns("audit.jsonl*"))
    entry = PeopleIndex.open(copy).search(k=1)["hits"][0]["id"]
    srv, _ = start(checkpoint, copy, access=access_for("127.0.0.1", KEY))
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        found = httpx.post(srv.url + "/search", data={"where": "gender=female"}, headers=auth,
                           timeout=30).json()["hits"]
        assert get(srv.url, f"/tracks/{entry}", **auth).status_code == 200
        assert get(srv.url, f"/thumbs/{entry}", **auth).status_code == 200
        assert get(srv.url, "/cameras", Authorization="Bearer wrong").status_code == 401
    finally:
        srv.stop()
    capsys.readouterr()
    records = read_audit(copy)
    assert [r["event"] for r in records] == ["search", "entry", "thumbnail", "refused"]
    assert records[0]["where"] == "gender=female" and records[0]["hits"] == len(found)
    assert {r["client"] for r in records} == {"127.0.0.1"}
    assert records[0]["key"].startswith("key:") and records[0]["key"] != records[3]["key"]
    assert records[1]["id"] == entry and records[3]["status"] == 401
    assert KEY not in (copy / "audit.jsonl").read_text()
    assert main(["audit", str(copy), "--since", "1h"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["audit", str(copy), "--since", "2999-01-01T00:00Z"]) == 0
    assert capsys.readouterr().out == ""


def test_the_audit_file_rotates_by_size(tmp_path):
    from personkit.index.audit import AuditLog, read_audit

    log = AuditLog(tmp_path, max_bytes=400, backups=2)
    for i in range(40):
        log.write("search", "127.0.0.1", "local", n=i)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    kept = [r["n"] for r in read_audit(tmp_path)]
    assert kept == sorted(kept) and kept[-1] == 39 and len(kept) < 40  # the oldest went
