"""Evaluation metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.classify.evaluate import binary_metrics, roc_auc, roc_curve


def test_binary_metrics_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    m = binary_metrics(y, p)
    # tp 3, fn 1, fp 1, tn 5
    assert m.confusion == [[5, 1], [1, 3]]
    assert m.accuracy == pytest.approx(0.8)
    assert m.precision == pytest.approx(0.75)
    assert m.recall == pytest.approx(0.75)
    assert m.f1 == pytest.approx(0.75)
    m2 = binary_metrics(np.array([1, 0]), np.array([0, 0]))
    assert (m2.precision, m2.recall, m2.f1) == (0.0, 0.0, 0.0)


def test_auc_by_hand():
    y = np.array([1, 1, 0, 0])
    assert roc_auc(y, np.array([0.9, 0.8, 0.1, 0.2])) == 1.0
    assert roc_auc(y, np.array([0.1, 0.2, 0.9, 0.8])) == 0.0
    # pairs (pos, neg): (0.9,0.5) win, (0.9,0.7) win, (0.6,0.5) win, (0.6,0.7) loss -> 3/4
    assert roc_auc(y, np.array([0.9, 0.6, 0.5, 0.7])) == pytest.approx(0.75)
    # a tie counts half: (0.5 vs 0.5) = 0.5, (0.5 vs 0.1) = 1, twice -> (1.5 + 1.5) / 4
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.1])) == pytest.approx(0.75)
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None


def test_roc_curve_ends_and_area():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(0, 0.8, 200)
    fpr, tpr = roc_curve(y, s)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s), abs=1e-9)
