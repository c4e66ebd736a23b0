"""Where HLS bytes may come from.

Only ``http``/``https`` URLs and local files (never ``file:``, ``ftp:``, ``data:`` or anything
else FFmpeg could open).  Every location fetched (the playlist, its variants, segments, init
sections and every redirect) goes through one :class:`UrlPolicy` after normalisation
(:func:`normalise_url`: dot segments removed, default port dropped, credentials and encoded
slashes refused), so nothing a playlist says can step outside what was allowed:

- an allow-list of URL prefixes (the service's ``--hls-allow``): same scheme, host and port as a
  prefix, and the normalised path under the prefix's path;
- local files only when the top-level playlist is itself a local file given by the user;
- loopback, private, link-local and other non-global addresses only for hosts named explicitly
  (the top-level URL's host on the command line, an IP literal or ``localhost`` in an allow-list
  prefix) or when the operator allows them all.  The address is checked on the socket actually
  connected, so a name that resolves elsewhere later (DNS rebinding) does not get through.
"""
from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass

from ...errors import CannotOpen, UsageError

ALLOWED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 (``/a/b/../c/./d`` -> ``/a/c/d``), keeping a trailing slash."""
    out: list[str] = []
    parts = path.split("/")
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    res = "/".join(out)
    return res if res.startswith("/") else "/" + res


_ENC_DOT = re.compile(r"%2e", re.IGNORECASE)


def normalise_url(url: str) -> str:
    """The canonical form of an http(s) URL, as it will be fetched; :class:`CannotOpen` for URLs
    that could be read two ways (credentials, encoded slashes or backslashes, bad ports)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise CannotOpen("bad URL", None) from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise CannotOpen(f"unsupported URL scheme {scheme!r}", None)
    if "@" in parts.netloc:
        raise CannotOpen("URLs with credentials are not fetched", None)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise CannotOpen("URL without a host", None)
    if re.search(r"%2f|%5c|\\", parts.path, re.IGNORECASE) or any(ord(c) < 33 for c in parts.path):
        raise CannotOpen("URL path with encoded slashes, backslashes or control characters", None)
    path = _remove_dot_segments(_ENC_DOT.sub(".", parts.path or "/"))
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((scheme, netloc, path, parts.query, ""))


def _origin(url: str) -> tuple[str, str, int]:
    p = urllib.parse.urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port or _DEFAULT_PORTS[p.scheme]


def _explicit_host(host: str) -> bool:
    """An IP literal or ``localhost``: naming it in an allow-list allows its address."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class UrlPolicy:
    """What one HLS session may read (see the module's description)."""

    #: normalised URL prefixes (None: any http(s) URL)
    prefixes: tuple[str, ...] | None = None
    #: local paths may be read (a playlist file the user gave on the command line)
    local_files: bool = False
    #: hosts (lower case) allowed to be on loopback / private / link-local addresses
    private_hosts: frozenset[str] = frozenset()
    #: every host may be on a non-global address
    any_private: bool = False

    @classmethod
    def for_top(cls, location: str) -> "UrlPolicy":
        """The command line's rule: a local playlist may read local files and any http(s) URL it
        names (the user's own file); a URL's playlist stays on http(s), and only its own host may be
        on a non-global address."""
        if not is_url(location):
            return cls(local_files=True, any_private=True)
        return cls(private_hosts=frozenset({_origin(normalise_url(location))[1]}))

    @classmethod
    def allow_list(cls, prefixes, allow_private: bool = False) -> "UrlPolicy":
        """The service's rule: only URLs under ``prefixes``; no local files."""
        norm = tuple(normalise_url(p) for p in prefixes)
        explicit = frozenset(h for h in (_origin(p)[1] for p in norm) if _explicit_host(h))
        return cls(prefixes=norm, local_files=False, private_hosts=explicit, any_private=allow_private)

    def check(self, location: str) -> str:
        """``location`` as it may be fetched (a normalised URL, or a local path); :class:`CannotOpen`
        when this policy does not allow it (the reason does not say what is behind it)."""
        loc = os.fspath(location)
        if not is_url(loc):
            if not self.local_files:
                raise CannotOpen("refused: local paths are not read for this playlist", None)
            return loc
        url = normalise_url(loc)
        if self.prefixes is not None and not any(self._under(url, p) for p in self.prefixes):
            raise CannotOpen("refused: URL outside the allowed prefixes", None)
        return url

    def allows(self, location: str) -> bool:
        try:
            self.check(location)
            return True
        except CannotOpen:
            return False

    @staticmethod
    def _under(url: str, prefix: str) -> bool:
        if _origin(url) != _origin(prefix):
            return False
        up, pp = urllib.parse.urlsplit(url), urllib.parse.urlsplit(prefix)
        if pp.query:
            return url.startswith(prefix)
        return (up.path or "/").startswith(pp.path or "/")

    def address_ok(self, host: str, address: str) -> bool:
        """May ``host`` be reached at ``address`` (the IP the socket connects to)?"""
        if self.any_private or host.lower().rstrip(".") in self.private_hosts:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_global and not ip.is_multicast
