"""lagged_pearson_many gives exactly lagged_pearson's numbers, pairs sharing arrays or not."""
from __future__ import annotations

import numpy as np

from avsync.estimators.xcorr import lagged_pearson, lagged_pearson_many


def test_many_equals_one_by_one():
    rng = np.random.default_rng(3)
    v1, v2 = rng.standard_normal(500), rng.standard_normal(480)
    a1, a2 = rng.standard_normal(500), rng.standard_normal(500)
    v1[40:60] = np.nan
    a2[::7] = np.nan
    pairs = [(v1, a1), (v2, a1), (v1, a2), (v2, a2), (v1, a1[::-1].copy())]
    for ow in (False, True):
        got = lagged_pearson_many(pairs, 50, min_overlap=100, overlap_weight=ow)
        for (v, a), g in zip(pairs, got):
            want = lagged_pearson(v, a, 50, min_overlap=100, overlap_weight=ow)
            np.testing.assert_array_equal(g, want)


def test_distinct_arrays_are_transformed_each():
    rng = np.random.default_rng(4)
    v, a = rng.standard_normal(300), rng.standard_normal(300)
    b = a.copy()
    got = lagged_pearson_many([(v, a), (v, b)], 20)
    np.testing.assert_array_equal(got[0], got[1])
    assert not np.array_equal(lagged_pearson_many([(v, a)], 20)[0], lagged_pearson_many([(v, -a)], 20)[0])
