"""The pure correlation helpers of avsync.estimators.xcorr, on synthetic signals."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.estimators.xcorr import (drop_run_edges, find_peak, highpass, lagged_pearson, nan_moving_average,
                                     parabolic_peak, to_grid)


def _events(n: int = 2000, seed: int = 0, width: float = 3.0) -> np.ndarray:
    """A train of irregular smooth pulses (what onsets / motion bursts look like)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    t = np.arange(n)
    pos = 20
    while pos < n - 20:
        x += np.exp(-0.5 * ((t - pos) / width) ** 2) * rng.uniform(0.5, 1.5)
        pos += int(rng.integers(30, 120))
    return x + 0.01 * rng.standard_normal(n)


def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    """y[n] = x[n + lag]: the same events ``lag`` samples EARLIER (NaN where unknown)."""
    y = np.full(x.size, np.nan)
    if lag >= 0:
        y[: x.size - lag] = x[lag:]
    else:
        y[-lag:] = x[: x.size + lag]
    return y


def _peak_lag(profile: np.ndarray, max_lag: int) -> float:
    pk = find_peak(profile, 8)
    assert pk is not None
    return pk.lag - max_lag


@pytest.mark.parametrize("lag", [-37, -5, -1, 0, 1, 12, 40])
def test_lagged_pearson_recovers_integer_lag(lag):
    v = _events()
    a = _shift(v, lag)  # the sound happens `lag` samples before the picture
    max_lag = 60
    prof = lagged_pearson(v, a, max_lag)
    assert prof.shape == (2 * max_lag + 1,)
    assert int(np.nanargmax(prof)) - max_lag == lag
    assert np.nanmax(prof) > 0.99


def test_sign_audio_first_gives_positive_lag():
    """A click that sounds 10 samples BEFORE the flash: peak at L = +10 (audio leads)."""
    n = 600
    v = np.zeros(n)
    a = np.zeros(n)
    rng = np.random.default_rng(3)
    for t in (100, 230, 300, 470):
        w = rng.uniform(0.5, 1.0)
        v[t] = w
        a[t - 10] = w
    prof = lagged_pearson(v, a, 30)
    assert int(np.nanargmax(prof)) - 30 == 10
    # and the mirror image: sound after picture is a negative lag
    prof2 = lagged_pearson(a, v, 30)
    assert int(np.nanargmax(prof2)) - 30 == -10


@pytest.mark.parametrize("true_lag", [3.3, -7.6, 0.25, 12.5])
def test_subsample_lag_with_parabolic_peak(true_lag):
    n = 3000
    t = np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(7)
    centres = np.cumsum(rng.integers(40, 110, 40)) + 30.0
    centres = centres[centres < n - 30]

    def pulses(shift):
        x = np.zeros(n)
        for c in centres:
            x += np.exp(-0.5 * ((t - (c - shift)) / 4.0) ** 2)
        return x

    v, a = pulses(0.0), pulses(true_lag)  # a's events come true_lag samples earlier
    max_lag = 40
    prof = lagged_pearson(v, a, max_lag)
    i = int(np.nanargmax(prof))
    pos, height = parabolic_peak(prof, i)
    assert abs((pos - max_lag) - true_lag) < 0.1
    assert height >= prof[i] - 1e-9
    pk = find_peak(prof, 8)
    assert abs((pk.lag - max_lag) - true_lag) < 0.1


def test_parabolic_peak_edges_and_flat():
    y = np.array([0.0, 1.0, 0.5])
    assert parabolic_peak(y, 0) == (0.0, 0.0)  # at the edge: no interpolation
    assert parabolic_peak(np.array([1.0, 1.0, 1.0]), 1) == (1.0, 1.0)  # flat: stays put
    p, h = parabolic_peak(np.array([0.0, 1.0, 1.0 - 1e-9, 0.0]), 1)
    assert 1.0 <= p <= 1.5
    p, _ = parabolic_peak(np.array([0.2, 1.0, np.nan]), 1)  # NaN neighbour
    assert p == 1.0


def test_nan_holes_are_ignored():
    v = _events(seed=4)
    a = _shift(v, 9)
    clean = lagged_pearson(v, a, 40)
    # punch holes (no face, stream gaps) into both signals
    rng = np.random.default_rng(5)
    v2, a2 = v.copy(), a.copy()
    for _ in range(12):
        s = int(rng.integers(0, v.size - 40))
        v2[s:s + int(rng.integers(5, 40))] = np.nan
    a2[500:650] = np.nan
    holed = lagged_pearson(v2, a2, 40)
    assert int(np.nanargmax(holed)) - 40 == 9
    assert np.nanmax(holed) > 0.98
    assert np.all(np.isfinite(clean[np.isfinite(holed)]))


def test_nan_where_overlap_too_small():
    v = np.full(100, np.nan)
    v[:20] = np.arange(20.0)
    a = np.full(100, np.nan)
    a[80:] = np.arange(20.0)
    prof = lagged_pearson(v, a, 10, min_overlap=10)
    assert np.all(np.isnan(prof))  # never any overlap within +-10


def test_unequal_lengths_are_padded_with_nan():
    v = _events(n=800, seed=8)
    a = _shift(v, -6)[:700]
    prof = lagged_pearson(v, a, 20)
    assert int(np.nanargmax(prof)) - 20 == -6


def test_constant_signal_gives_nan_not_error():
    prof = lagged_pearson(np.ones(200), _events(200), 10)
    assert np.all(np.isnan(prof))
    assert find_peak(prof, 3) is None


def test_highpass_drops_run_edges_and_keeps_nan():
    x = np.concatenate([np.linspace(0, 5, 100), [np.nan] * 10, np.linspace(5, 0, 80)])
    y = highpass(x, 41)  # edge = 41 // 4 = 10 samples (odd width: a centred average)
    assert np.all(np.isnan(y[100:110]))  # NaN stays NaN
    assert np.all(np.isnan(y[:10])) and np.all(np.isnan(y[90:100]))  # first run's edges
    assert np.all(np.isnan(y[110:120])) and np.all(np.isnan(y[-10:]))  # second run's edges
    assert np.all(np.isfinite(y[10:90])) and np.all(np.isfinite(y[120:-10]))
    # a linear ramp has no fast component once the moving average is removed (away from edges)
    assert np.nanmax(np.abs(y[30:70])) < 1e-9


def test_highpass_edges_do_not_fake_zero_lag():
    """Two unrelated noisy signals with the same NaN layout: the filter transients at
    run edges would line up at lag 0; with run edges dropped, no strong zero-lag peak."""
    rng = np.random.default_rng(11)
    v = np.cumsum(rng.standard_normal(1000))
    a = np.cumsum(rng.standard_normal(1000))
    for x in (v, a):
        x[200:260] = np.nan
        x[600:620] = np.nan
    prof = lagged_pearson(highpass(v, 100), highpass(a, 100), 50)
    assert np.nanmax(np.abs(prof)) < 0.5


def test_drop_run_edges():
    x = np.array([1, 2, 3, 4, 5, np.nan, 1, 2, 3.0])
    y = drop_run_edges(x, 1)
    assert np.isnan(y[[0, 4, 5, 6, 8]]).all()
    assert np.isfinite(y[[1, 2, 3, 7]]).all()
    assert drop_run_edges(x, 0) is x
    assert np.isnan(drop_run_edges(np.array([1.0, 2.0]), 5)).all()


def test_nan_moving_average():
    x = np.array([1.0, np.nan, 3.0, 5.0])
    m = nan_moving_average(x, 3)
    assert m[0] == pytest.approx(1.0)
    assert m[1] == pytest.approx(2.0)
    assert m[2] == pytest.approx(4.0)


def test_to_grid_irregular_times_and_gaps():
    times = np.array([0.0, 0.04, 0.1, 0.13, 0.5, 0.54])  # irregular, one long gap
    values = 10 * times
    grid = np.arange(-0.05, 0.6, 0.01)
    out = to_grid(times, values, grid, max_gap=0.1)
    inside = ((grid >= 0) & (grid <= 0.13 + 1e-12)) | ((grid >= 0.5) & (grid <= 0.54))
    gap = (grid > 0.13 + 1e-9) & (grid < 0.5 - 1e-9)
    # exact linear interpolation where the data are dense enough
    ok = inside & np.isfinite(out)
    assert np.allclose(out[ok], 10 * grid[ok])
    assert np.all(np.isnan(out[gap]))  # across the 0.37 s gap
    assert np.all(np.isnan(out[grid < 0]))  # before the data
    assert np.all(np.isnan(out[grid > 0.54 + 1e-9]))  # after the data
    assert np.isfinite(out[np.argmin(np.abs(grid - 0.07))])
    assert np.isfinite(out[np.argmin(np.abs(grid - 0.52))])


def test_to_grid_nan_input_and_tiny_input():
    times = np.array([0.0, 0.1, 0.2, 0.3])
    values = np.array([0.0, np.nan, 2.0, 3.0])
    grid = np.array([0.05, 0.15, 0.25])
    out = to_grid(times, values, grid, 1.0)
    assert np.isnan(out[0]) and np.isnan(out[1])
    assert out[2] == pytest.approx(2.5)
    assert np.all(np.isnan(to_grid(np.array([0.0]), np.array([1.0]), grid, 1.0)))


def test_find_peak_runner_up_and_margin():
    lags = np.arange(-50, 51)
    prof = 0.9 * np.exp(-0.5 * (lags / 2.0) ** 2) + 0.4 * np.exp(-0.5 * ((lags - 30) / 2.0) ** 2)
    pk = find_peak(prof, 8)
    assert pk.lag == pytest.approx(50, abs=0.05)
    assert pk.height == pytest.approx(0.9, abs=0.01)
    assert pk.second == pytest.approx(0.4, abs=0.01)  # the other local maximum, not the main slope
    assert pk.margin == pytest.approx(0.5, abs=0.02)
    assert not pk.at_edge
    assert pk.spread > 0


def test_find_peak_runner_up_ignores_main_slope():
    lags = np.arange(-50, 51)
    prof = np.exp(-0.5 * (lags / 12.0) ** 2)  # one broad peak, nothing else
    pk = find_peak(prof, 5)
    assert pk.second < 0.1  # the slope next to the peak is not a runner-up


def test_find_peak_at_edge_and_nan_edges():
    prof = np.linspace(0, 1, 41)
    assert find_peak(prof, 4).at_edge
    prof2 = np.concatenate([[np.nan] * 5, np.linspace(1, 0, 31), [np.nan] * 5])
    pk = find_peak(prof2, 4)
    assert pk.at_edge and pk.lag == pytest.approx(5)  # edge of the valid part
    inner = np.concatenate([[np.nan] * 5, -np.abs(np.arange(-15, 16)) / 15.0, [np.nan] * 5])
    assert not find_peak(inner, 4).at_edge
    assert find_peak(np.array([np.nan, 1.0, np.nan]), 1) is None
