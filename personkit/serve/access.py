"""Who may use ``personkit serve`` (docs/search.md, "Privacy and security"): people data is not
open to anyone who can reach the port, nor to any web page the user's browser visits.

* **A key.** Bound to an address other than loopback, the server refuses to start without an
  API key (``--api-key-file FILE``, or the ``PERSONKIT_API_KEY`` environment variable; never a
  command-line value, which every user of the machine can read in the process list). With a
  key, every route but ``/healthz`` and the page's own files (``/``, ``/static/*``: no data)
  needs ``Authorization: Bearer KEY`` (401 otherwise; compared in constant time).
* **Hosts.** Whatever the binding, a request whose ``Host`` is not allowed (``--allowed-hosts``;
  loopback names and the bound address by default) is refused 400: a DNS-rebinding page
  cannot reach the server under its own name.
* **Sites.** A state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) sent by
  another site's page (``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is neither this
  server nor ``--cors-origin``) is refused 403: a multipart form post needs no CORS preflight,
  so CORS alone would not stop it. No CORS header is sent unless ``--cors-origin`` names one.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from personkit.serve.limits import send_error

#: Host names that always mean this machine.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Where a key may come from besides ``--api-key-file``.
KEY_ENV = "PERSONKIT_API_KEY"
#: Routes open without a key: the health check and the page's own files (they hold no data).
OPEN_PATHS = ("/healthz", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Access:
    """Who may use the service: ``api_key`` (None: no key needed), the ``allowed_hosts``
    (names a request's ``Host`` may carry, without port) and the one ``cors_origin`` other
    sites' pages may call it from (None: none)."""

    api_key: str | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    cors_origin: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to bind) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_api_key(path: str | Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The API key from the file ``path`` (its first line), else from ``PERSONKIT_API_KEY``;
    None when neither is given.

    Raises:
        ValueError: the file is missing, empty, or readable or writable by others than its
            owner (mode wider than 0600: anyone on the machine could read the key); the
            variable is set but empty.
    """
    environ = os.environ if environ is None else environ
    if path is None:
        key = environ.get(KEY_ENV)
        if key is not None and not key.strip():
            raise ValueError(f"{KEY_ENV} is set but empty: give a key, or unset it")
        return key.strip() if key else None
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--api-key-file {path}: no such file")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(f"--api-key-file {path}: its mode is {mode:o}, so others on this "
                         f"machine can read it; run `chmod 600 {path}`")
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"--api-key-file {path}: the file is empty")
    return text.splitlines()[0].strip()


def access_for(host: str, api_key: str | None, allowed_hosts: list[str] | None = None,
               cors_origin: str | None = None) -> Access:
    """The :class:`Access` of a server bound to ``host``: refused without a key unless
    ``host`` is loopback; the allowed hosts are the loopback names, ``host`` itself (unless
    a wildcard) and ``allowed_hosts``.

    Raises:
        ValueError: a non-loopback ``host`` without ``api_key``; a ``cors_origin`` that is
            not ``scheme://host[:port]``.
    """
    if not is_loopback(host) and api_key is None:
        raise ValueError(f"--host {host} makes people data reachable from other machines: "
                         f"give an API key (--api-key-file FILE with mode 600, or "
                         f"{KEY_ENV}), or bind 127.0.0.1")
    if cors_origin is not None:
        parts = urlsplit(cors_origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in (
                "", "/"):
            raise ValueError(f"--cors-origin {cors_origin!r}: expected an origin such as "
                             f"https://example.org (scheme, host and port only)")
        cors_origin = f"{parts.scheme}://{parts.netloc}"
    wildcard = host in ("0.0.0.0", "::", "")
    hosts = [*LOOPBACK_HOSTS, *([] if wildcard else [host.strip("[]")]), *(allowed_hosts or [])]
    return Access(api_key, tuple(dict.fromkeys(h.lower() for h in hosts)), cors_origin)


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _host_name(host: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


class AccessControl:
    """ASGI middleware enforcing an :class:`Access` (module docstring); its refusals are the
    service's JSON errors (``field``: ``host``, ``origin`` or ``authorization``)."""

    def __init__(self, app: Any, access: Access, on_refusal: Any = None):
        self.app, self.access, self.on_refusal = app, access, on_refusal

    def _cross_site(self, scope: Any, host: str) -> bool:
        """Sent by another site's page: said by the browser (``Sec-Fetch-Site``), or an
        ``Origin`` (``null`` included: a sandboxed page) that is neither this server nor the
        allowed CORS origin. Clients that are not browsers send neither."""
        origin = _header(scope, b"origin")
        if origin is not None and origin == self.access.cors_origin:
            return False
        if _header(scope, b"sec-fetch-site") == "cross-site":
            return True
        return origin is not None and urlsplit(origin).netloc.lower() != host.lower()

    def _refusal(self, scope: Any) -> tuple[int, str, str] | None:
        host = _header(scope, b"host") or ""
        if _host_name(host) not in self.access.allowed_hosts:
            return 400, "host", f"host {host!r} is not allowed (personkit serve --allowed-hosts)"
        if scope["method"] in UNSAFE_METHODS and self._cross_site(scope, host):
            return 403, "origin", "requests from another site's page are refused"
        path = scope["path"]
        if self.access.api_key is None or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        given = _header(scope, b"authorization") or ""
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.access.api_key.encode()):
            return 401, "authorization", "a valid API key is needed: Authorization: Bearer KEY"
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, field, message = refusal
        if self.on_refusal is not None:
            self.on_refusal(scope, status)
        headers = ((b"www-authenticate", b"Bearer"),) if status == 401 else ()
        await send_error(send, status, message, field, headers)
