"""The face-mesh lip measures: vertex arithmetic on synthetic meshes."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.features import mesh


def _mesh(gap: float) -> np.ndarray:
    pts = np.zeros((468, 2), np.float32)
    pts[mesh.EYES[0]] = (40, 50)
    pts[mesh.EYES[1]] = (100, 50)  # eye distance 60
    for a, b in mesh.INNER_PAIRS:
        pts[a] = (70, 100)
        pts[b] = (70, 100 + gap)
    pts[mesh.OUTER_PAIR[0]] = (70, 95)
    pts[mesh.OUTER_PAIR[1]] = (70, 110 + gap)
    pts[mesh.CORNERS[0]] = (55, 102)
    pts[mesh.CORNERS[1]] = (85, 102)
    return pts


def test_mouth_measures_from_mesh_vertices():
    inner, outer, width, iod = mesh.mouth_from_mesh(_mesh(6.0))
    assert (inner, outer, width, iod) == pytest.approx((6.0, 21.0, 30.0, 60.0))
    assert mesh.mouth_from_mesh(_mesh(0.0))[0] == pytest.approx(0.0)
