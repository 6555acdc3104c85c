"""Stream addresses without their secrets (issue 37): ``rtsp://user:password@host/path``
opens with its password, but no name, file, answer or message personkit writes holds it. A
camera's name and the address a run records drop the user info; a message shows at most
``rtsp://user:***@host/path``."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

#: ``scheme://user[:password]@`` anywhere in a text (an error message may quote an address).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*)"
                       r"(?::(?P<password>[^/@\s]*))?@")


def strip_credentials(address: str) -> str:
    """``address`` without its user info (``rtsp://u:p@cam/x`` -> ``rtsp://cam/x``); anything
    that is not a URL with one, unchanged."""
    if "://" not in address or "@" not in address:
        return address
    parts = urlsplit(address)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact(text: str) -> str:
    """``text`` with every URL password replaced by ``***`` (``rtsp://u:***@cam/x``), for
    messages and logs."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}"
                         f"{':***' if m['password'] is not None else ''}@", text)
