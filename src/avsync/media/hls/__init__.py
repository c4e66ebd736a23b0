"""HLS input: where bytes may come from (:mod:`.urls`), playlist parsing (:mod:`.playlist`),
fetching and following (:mod:`.fetch`), segment decoding (:mod:`.decoder`) and the
:class:`HlsSource` (:mod:`.source`)."""
from .decoder import SegmentDecoder
from .fetch import (MAX_PLAYLIST_BYTES, MAX_SEGMENT_BYTES, USER_AGENT, FetchError, FollowOptions, SegmentData, fetch,
                    follow, load_playlist)
from .playlist import Playlist, Segment, parse_playlist
from .source import HlsSource, open_hls
from .urls import ALLOWED_SCHEMES, UrlPolicy, check_location, is_url, looks_like_hls, normalise_url, resolve

__all__ = ["ALLOWED_SCHEMES", "MAX_PLAYLIST_BYTES", "MAX_SEGMENT_BYTES", "USER_AGENT", "FetchError", "FollowOptions",
           "HlsSource", "Playlist", "Segment", "SegmentData", "SegmentDecoder", "check_location", "fetch", "follow",
           "is_url", "load_playlist", "looks_like_hls", "normalise_url", "open_hls", "parse_playlist", "resolve",
           "UrlPolicy"]
