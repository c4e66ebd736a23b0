"""Where HLS bytes may come from: only ``http``/``https`` URLs and local files (never ``file:``,
``ftp:``, ``data:`` or anything else ffmpeg could open); playlist URIs are resolved against
their playlist and obey the same rule."""
from __future__ import annotations

import os
import re
import urllib.parse

from ...errors import CannotOpen, UsageError

ALLOWED_SCHEMES = ("http", "https")


def is_url(location: str) -> bool:
    """True for anything of the form ``scheme://...`` (a Windows drive letter is not a scheme)."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", str(location)))


def check_location(location: str) -> str:
    """Return ``location`` if it is an http(s) URL or a local path; raise :class:`UsageError` for
    any other ``scheme://`` (file, ftp, rtmp, ...)."""
    loc = os.fspath(location)
    if is_url(loc):
        scheme = urllib.parse.urlsplit(loc).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise UsageError(f"{loc}: unsupported URL scheme {scheme!r}: only http(s) URLs and local "
                             "playlist files are accepted")
    return loc


def looks_like_hls(location: str) -> bool:
    """By name: ``.m3u8`` / ``.m3u`` (query strings ignored)."""
    path = urllib.parse.urlsplit(location).path if is_url(location) else location
    return path.lower().endswith((".m3u8", ".m3u"))


def resolve(base: str, uri: str) -> str:
    """``uri`` from a playlist at ``base``, made absolute; other schemes are refused."""
    uri = uri.strip()
    if is_url(uri) or uri.lower().startswith(("data:", "file:", "javascript:")):
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise CannotOpen(f"playlist refers to an unsupported URL scheme {scheme!r}", base)
        return uri
    if is_url(base):
        return urllib.parse.urljoin(base, uri)
    path = urllib.parse.unquote(uri.split("?")[0])
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(base)), path)
