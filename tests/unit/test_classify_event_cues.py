"""The events estimator's per-second cues in the segment features (``ev_*``)."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.classify import features as cf
from avsync.classify import vectors
from avsync.classify.vectors import EVENT_NAMES, RICH_NAMES
from avsync.estimators.base import EstimatorOptions
from avsync.estimators.events import EventEstimator
from avsync.features import extract_features
from avsync.media import open_media
from avsync.media.synth import make_sample


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = tmp_path_factory.mktemp("ev") / "s.mp4"
    make_sample(p, 200, duration_s=6.0)  # flashes and beeps, the sound 200 ms early
    return str(p)


def test_event_cues_exist_and_are_finite_or_nan_as_documented(clip):
    arr = cf.extract(clip)
    S = arr["seg_t"].size
    assert arr["ev_offset_ms"].shape == (S,) and arr["ev_conf"].shape == (S,)
    assert arr["ev_stats"].shape == (S, len(cf.EVENT_STATS)) and arr["ev_whole"].shape == (2 + len(cf.EVENT_STATS),)
    off, conf = arr["ev_offset_ms"], arr["ev_conf"]
    assert np.all((conf >= 0) & (conf <= 1))
    assert np.all(conf[~np.isfinite(off)] == 0)  # NaN offset: it abstained, confidence 0
    assert np.isfinite(off).sum() >= 2
    # event counts are known in every window; null_z/margin are NaN only where it did not match
    k = {n: j for j, n in enumerate(cf.EVENT_STATS)}
    assert np.isfinite(arr["ev_stats"][:, k["visual_events"]]).all()
    assert np.isfinite(arr["ev_stats"][np.isfinite(off), k["null_z"]]).all()
    w_off, w_conf = arr["ev_whole"][:2]
    assert abs(w_off - 200) <= 80 and w_conf >= 0.5, arr["ev_whole"]
    X = vectors.rich(arr)
    assert X.shape == (S, len(RICH_NAMES)) and np.isfinite(X).all()
    col = {n: i for i, n in enumerate(RICH_NAMES)}
    assert set(EVENT_NAMES) <= set(col)
    assert X[:, col["ev_ok"]].tolist() == np.isfinite(off).astype(np.float32).tolist()
    ok = np.isfinite(off)
    np.testing.assert_allclose(X[ok, col["ev_offset"]], off[ok] / 1000, atol=1e-6)
    assert np.all(X[:, col["ev_whole_ok"]] == 1) and np.allclose(X[:, col["ev_whole_abs"]], abs(w_off) / 1000)


def test_windows_from_one_detection_equal_single_estimates(clip):
    with open_media(clip) as src:
        feats = extract_features(src, faces="off")
    est = EventEstimator(EstimatorOptions(max_lag_ms=1000))
    spans = [(0.0, 3.0), None, (1.5, 4.5), (3.0, 6.0)]
    whole, per = est.estimate_windows(feats, spans)
    assert per[1] is None
    for got, ref in zip([whole] + [per[0], per[2], per[3]], [est.estimate(feats)] + [est.estimate(feats, *s) for s in spans if s]):
        assert got.offset_ms == ref.offset_ms and got.confidence == ref.confidence and got.reason == ref.reason
        assert got.stats == ref.stats


def test_no_audio_and_old_feature_files():
    seg = np.arange(4.0)
    out = cf.event_cues(None, seg)
    assert np.isnan(out["ev_offset_ms"]).all() and not out["ev_conf"].any() and np.isnan(out["ev_stats"]).all()
    assert np.isnan(out["ev_whole"][0]) and out["ev_whole"][1] == 0
    X = np.zeros((4, len(RICH_NAMES) - len(EVENT_NAMES)), np.float32)
    assert not vectors._events({}, X).any()  # written before the cues: zeros
    assert not vectors._events(out, X).any()  # nothing found: zeros
