"""Partial media: a decode walk that ends on an error says where and why, and the report's
completeness check turns that (or a decoded length well below the declared one) into warnings."""
from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import numpy as np

from avsync.api import completeness
from avsync.media.base import DecodeOptions
from avsync.media.decode import Decoder


def _walk_that_fails_after(n: int):
    import av

    stream = object()

    class Packet:
        def __init__(self, k):
            self.k, self.stream, self.time_base = k, stream, Fraction(1, 16000)

        def decode(self):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
            f.sample_rate, f.pts, f.time_base = 16000, self.k * 1600, Fraction(1, 16000)
            return [f]

    class Container:
        def demux(self, streams):
            for k in range(n):
                yield Packet(k)
            raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    audio = SimpleNamespace(codec_context=SimpleNamespace(sample_rate=16000))
    dec = Decoder(DecodeOptions(), "x.mp4")
    items = list(dec.walk(Container(), None, audio))
    return dec, items


def test_decoder_records_the_error_that_ended_the_walk():
    dec, items = _walk_that_fails_after(5)
    assert items  # what decoded before the error is kept
    assert dec.error == {"at_s": 0.4, "reason": "Invalid data found when processing input"}


def _feats(decoded_s: float, declared_s: float | None):
    info = SimpleNamespace(video_fps=25.0, declared_duration_s=declared_s)
    visual = SimpleNamespace(times=np.arange(0.0, decoded_s, 0.04))
    audio = SimpleNamespace(t0=0.0, times=np.arange(0.0, decoded_s + 1e-9, 0.01))
    return SimpleNamespace(info=info, visual=visual, audio=audio)


def test_whole_media_has_no_warning():
    assert completeness(_feats(12.0, 12.04)) == ([], None)
    assert completeness(_feats(12.0, None)) == ([], None)  # nothing declared: nothing to compare


def test_short_decode_warns_and_too_little_is_not_assessable():
    warnings, too_little = completeness(_feats(4.0, 12.7))
    assert len(warnings) == 1 and "4.0 s decoded of the 12.7 s" in warnings[0] and too_little is None
    warnings, too_little = completeness(_feats(1.5, 12.7))
    assert too_little is not None and "too little media decoded" in too_little


def test_decode_error_warns_even_at_full_length():
    warnings, too_little = completeness(_feats(12.0, 12.0), {"at_s": 11.9, "reason": "Invalid data"})
    assert warnings == ["decoding stopped on an error after 11.9 s (Invalid data); the result covers what "
                        "decoded"] and too_little is None
