"""Stacking of FCN-SyncNet with the lips estimate (avsync.estimators.stacked): the rule, the fit,
and that the estimator applies parameters stored in the weights file."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.estimators.stacked import Pair, decide, fit, fuse


def _rows(rng, n=300):
    """Synthetic held-out rows: lips is right when it is confident (>= 0.3) and lost
    otherwise; fcn is right within a frame 60 % of the time; nulls have random answers."""
    pairs, truths = [], []
    for _ in range(n):
        truth = float(rng.choice([-200, -80, 0, 80, 200]))
        lc = float(rng.uniform(0, 1))
        lips = truth + (rng.normal(0, 5) if lc >= 0.3 else rng.choice([-1, 1]) * rng.uniform(100, 400))
        fc = float(rng.uniform(0.2, 0.9))
        fcn = truth + (rng.normal(0, 10) if rng.random() < 0.6 else rng.uniform(60, 200))
        pairs.append(Pair(lips, lc, fcn, fc, 40.0))
        truths.append(truth)
    for _ in range(n):  # mismatched audio: confident-looking noise from lips, low fcn confidence
        pairs.append(Pair(float(rng.uniform(-600, 600)), float(rng.uniform(0, 1)), float(rng.uniform(-600, 600)),
                          float(rng.uniform(0, 0.3)), 40.0))
        truths.append(None)
    return pairs, truths


def test_decide_takes_lips_only_when_confident_enough():
    p = Pair(40.0, 0.6, 120.0, 0.5)
    assert decide(p, 0.5)[0] == 40.0 and decide(p, 0.5)[2] == "lips"
    assert decide(p, 0.7)[0] == 120.0 and decide(p, 0.7)[2] == "fcn"
    # one side abstained: the other answers
    assert decide(Pair(None, 0.0, 80.0, 0.4), 0.1)[0] == 80.0
    assert decide(Pair(80.0, 0.05, None, 0.0), 0.5)[0] == 80.0
    est, x, _ = decide(Pair(80.0, 0.9, 100.0, 0.9), 0.5)
    assert x[2] == 1.0  # 20 ms apart: they agree


def test_fit_finds_the_threshold_and_a_confidence_that_separates_nulls():
    pairs, truths = _rows(np.random.default_rng(0))
    params = fit(pairs, truths)
    assert 0.2 <= params["theta"] <= 0.4  # lips is reliable from 0.3 on in these rows
    test_pairs, test_truths = _rows(np.random.default_rng(1))
    real = [(p, t) for p, t in zip(test_pairs, test_truths) if t is not None]
    fused_ok = np.mean([abs(fuse(params, p)[0] - t) <= 40 for p, t in real])
    fcn_ok = np.mean([abs(p.fcn_ms - t) <= 40 for p, t in real])
    lips_ok = np.mean([abs(p.lips_ms - t) <= 40 for p, t in real])
    assert fused_ok > max(fcn_ok, lips_ok) + 0.1
    null_conf = np.mean([fuse(params, p)[1] >= 0.5 for p, t in zip(test_pairs, test_truths) if t is None])
    assert null_conf < 0.1


def test_fit_rejects_rows_without_known_offsets():
    with pytest.raises(ValueError):
        fit([Pair(0.0, 0.5, 0.0, 0.5)], [None])
    with pytest.raises(ValueError):
        fit([], [])


def test_fuse_rejects_parameters_of_another_version():
    with pytest.raises(ValueError):
        fuse({"theta": 0.3, "coef": [1.0, 2.0]}, Pair(0.0, 0.5, 0.0, 0.5))
