"""Issue 12: the confidence reads named peak statistics, among them how far the peak stands
above surrogate pairings of the same signals (the audio reversed and turned): a null pair's
peak is no higher than the surrogates' peaks, a true pair's stands out."""
from __future__ import annotations

import numpy as np

from avsync.estimators import correlation as C
from avsync.estimators.xcorr import lagged_pearson


def _rhythm(seed: int, n: int = 800) -> np.ndarray:
    """A syllable-like envelope: smoothed bursts at irregular times (100 Hz grid)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    t = 0
    while t < n:
        t += int(rng.integers(12, 30))
        x[t:t + 8] += rng.uniform(0.5, 1.5)
    k = np.hanning(9)
    return np.convolve(x, k / k.sum(), mode="same") + 0.05 * rng.standard_normal(n)


def _z(v: np.ndarray, a: np.ndarray) -> float:
    prof = lagged_pearson(v, a, 100, min_overlap=100, overlap_weight=True)
    return C.null_z(float(np.nanmax(prof)), C.surrogate_peaks([(v, a)], 100, 100))


def test_a_true_pair_stands_out_and_a_null_pair_does_not():
    a = _rhythm(1)
    v = np.roll(a, 12) + 0.3 * np.random.default_rng(2).standard_normal(a.size)
    true = _z(v, a)
    nulls = np.array([_z(v, _rhythm(s)) for s in range(10, 40)])
    # 30 unrelated pairs: centred near 0, a few chance highs, all far below the true pair
    assert abs(np.median(nulls)) < 1.0 and np.mean(nulls > 3.0) <= 0.1, nulls
    assert true > 10.0 and true > 3 * nulls.max(), (true, nulls.max())


def test_the_model_reads_its_features_by_name_and_a_missing_one_sits_at_the_mean():
    stats = {"height": 0.4, "margin": 0.1, "spread": 0.1, "support_s": 3.0, "at_edge": False,
             "agreement": 1.0, "null_z": 3.0}
    table = {"lips": {"features": ["null_z", "height"], "coef": [2.0, 0.0], "intercept": 0.0,
                      "mean": [1.0, 0.3], "scale": [1.0, 0.1]}}
    C.use_calibration(table)
    try:
        assert C.confidence_from("lips", stats) == 1 / (1 + np.exp(-4.0))
        without = {k: v for k, v in stats.items() if k != "null_z"}
        assert C.confidence_from("lips", without) == 0.5  # null_z at the fit's mean: no evidence
        # an older table without a feature list reads the legacy statistics in their order
        legacy = {"lips": {"coef": [0.0] * 5 + [1.0], "intercept": 0.0, "mean": [0.0] * 6, "scale": [1.0] * 6}}
        C.use_calibration(legacy)
        assert C.confidence_from("lips", stats) == 1 / (1 + np.exp(-1.0))
    finally:
        C.use_calibration(None)


def test_feature_names_follow_the_statistics_present():
    stats = {"height": 0.4, "margin": 0.1, "spread": 0.1, "support_s": 3.0, "at_edge": False, "agreement": 1.0}
    assert C.feature_names(stats) == list(C.LEGACY)
    assert C.feature_names({**stats, "null_z": 1.0})[-1] == "null_z"
    assert C.peak_features({**stats, "null_z": 99.0}, ["null_z"])[0] == 8.0  # clipped



def test_null_gate_caps_below_and_leaves_above():
    cal = {"null_gate": 2.0}
    assert C.gated(cal, {"null_z": 1.9}, 0.9) == C.GATED_MAX
    assert C.gated(cal, {"null_z": 2.0}, 0.9) == 0.9
    assert C.gated(cal, {"null_z": 0.5}, 0.2) == 0.2  # never raised
    assert C.gated({}, {"null_z": 0.1}, 0.9) == 0.9  # a table without a gate
    assert C.gated(cal, {}, 0.9) == 0.9  # an estimate without surrogates


def test_fit_null_gate_is_the_smallest_z_meeting_the_target():
    from avsync.bench.calibrate import fit_null_gate

    # a model that is confident on everything (intercept only), 100 null pairs with null_z 0..9.9
    model = {"bias_ms": 0.0, "features": ["height"], "coef": [0.0], "intercept": 5.0, "mean": [0.0], "scale": [1.0]}
    rows = [{"null": True, "stats": {"height": 0.5, "at_edge": False, "null_z": i / 10}} for i in range(100)]
    rows += [{"null": False, "stats": {"height": 0.5, "at_edge": False, "null_z": 0.0}}] * 50  # ignored
    # at most 3 of 100 confident: z >= 9.7 leaves 9.7, 9.8, 9.9 -> capped at the largest gate tried
    assert fit_null_gate(model, rows, 0.03) == 8.0
    # at most 30 of 100: z >= 7.0 leaves 70..99
    assert fit_null_gate(model, rows, 0.30) == 7.0
    assert fit_null_gate(model, [r for r in rows if not r["null"]]) is None
