"""Feature extraction reads the media through the one decode walk, once per file."""
from __future__ import annotations

import numpy as np

from avsync.features import FeatureBuilder, extract_features
from avsync.media import DecodeOptions, FileSource, open_media
from avsync.media.synth import make_sample


def _same(a, b) -> None:
    for side in ("audio", "visual"):
        x, y = vars(getattr(a, side)), vars(getattr(b, side))
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_equal(x[k], y[k], err_msg=f"{side}.{k}")  # nested, NaN == NaN


def test_builder_fed_by_hand_equals_extract_features(tmp_path):
    p = tmp_path / "s.mp4"
    make_sample(p, 120, duration_s=3.0)
    with open_media(p) as src:
        ref = extract_features(src, faces="off")
    with open_media(p) as src:
        b = FeatureBuilder(src.info, src.path, faces="off")
        for item in src.decode(DecodeOptions(extra_sides=(320,))):  # extra pictures change nothing
            b.add(item)
        _same(ref, b.finish())


def test_classify_features_decode_the_file_once(tmp_path, monkeypatch):
    from avsync.classify import features as cf

    p = tmp_path / "s.mp4"
    make_sample(p, 0, duration_s=3.0)
    calls = []
    real = FileSource.decode

    def counted(self, options=DecodeOptions()):
        calls.append(options)
        return real(self, options)

    monkeypatch.setattr(FileSource, "decode", counted)
    arr = cf.extract(str(p))
    assert len(calls) == 1
    assert arr["frame_t"].size == 75 and arr["frames_5fps"].shape[1:] == (cf.GREY_SIZE, cf.GREY_SIZE)
    assert np.isfinite(arr["core_whole"]).all()  # the core engine ran on the same decode
    assert arr["core_offset_ms"].shape == arr["seg_t"].shape
