"""The confidence fit used by ``avsync bench calibrate`` (synthetic peak statistics)."""
import numpy as np

from avsync.bench.calibrate import _targets, fit_logistic, fit_model, predict


def _rows(n, rng):
    rows = []
    for i in range(n):
        good = i % 2 == 0
        height = rng.normal(0.6 if good else 0.2, 0.08)
        err = rng.normal(0, 10) if good else rng.choice([-300.0, 250.0])
        rows.append({"stats": {"height": height, "margin": height / 2, "spread": 0.1, "support_s": 5.0,
                               "at_edge": False, "agreement": 1.0 if good else 0.3,
                               "raw_offset_ms": 120.0 + err},
                     "truth": 120.0, "null": False, "fps": 25.0, "clip": i % 7, "whole": True})
    return rows


def test_fit_logistic_separates_classes():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(-2, 1, 200), rng.normal(2, 1, 200)][:, None]
    y = np.r_[np.zeros(200), np.ones(200)]
    coef, icpt = fit_logistic(x, y)
    assert coef[0] > 1.0 and abs(icpt) < 0.5


def test_model_confidence_tracks_correctness_and_caps_edges():
    rng = np.random.default_rng(1)
    rows = _rows(200, rng)
    model = fit_model(rows, [], with_bias=False)
    y = _targets(rows, model["bias_ms"])
    p = predict(model, rows)
    assert p[y == 1].mean() > 0.8 and p[y == 0].mean() < 0.2
    edge = dict(rows[0], stats=dict(rows[0]["stats"], at_edge=True))
    assert predict(model, [edge])[0] <= 0.05


def test_bias_is_median_of_in_sync_offsets_and_shifts_targets():
    rng = np.random.default_rng(2)
    rows = _rows(50, rng)
    model = fit_model(rows, [100.0, 120.0, 140.0], with_bias=True)
    assert model["bias_ms"] == 120.0
    # with the 120 ms bias removed, the good rows (raw ~ truth + 120) are now wrong
    assert _targets(rows, 120.0)[0::2].mean() < 0.2
    assert _targets(rows, 0.0)[0::2].mean() > 0.9
