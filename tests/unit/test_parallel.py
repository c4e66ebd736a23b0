"""avsync.parallel: the second half of a job in a forked helper gives what one process gives."""
from __future__ import annotations

import os

import pytest

from avsync import parallel

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(parallel, "_budget", 2)
    # other tests may have loaded torch; the helpers here run no torch code
    monkeypatch.setattr(parallel, "FORK_UNSAFE", ("no-such-module",))


def test_halves_puts_the_second_half_in_a_helper(two_cores):
    me = os.getpid()
    out = parallel.halves(lambda part, share: [(x * x, share, os.getpid() == me) for x in part], list(range(40)))
    assert [v for v, _, _ in out] == [x * x for x in range(40)]
    assert [here for _, _, here in out] == [True] * 20 + [False] * 20
    assert {s for _, s, here in out if here} == {2}  # progress counts each item done here twice


def test_a_failing_helper_is_redone_here(two_cores):
    me = os.getpid()

    def fn(part, share):
        if os.getpid() != me:
            raise RuntimeError("the helper breaks")
        return [x + 1 for x in part]

    assert parallel.halves(fn, list(range(30))) == list(range(1, 31))


def test_few_items_or_a_fork_unsafe_runtime_stay_here(two_cores, monkeypatch):
    me = os.getpid()
    fn = lambda part, share: [os.getpid() == me for _ in part]  # noqa: E731
    assert all(parallel.halves(fn, list(range(10))))
    monkeypatch.setattr(parallel, "FORK_UNSAFE", ("torch",))
    monkeypatch.setitem(__import__("sys").modules, "torch", object())
    assert all(parallel.halves(fn, list(range(40))))


def test_a_stuck_helper_is_killed_and_its_half_redone(two_cores, monkeypatch):
    import time

    monkeypatch.setattr(parallel, "HELPER_GRACE_S", 0.5)
    me = os.getpid()

    def fn(part, share):
        if os.getpid() != me:
            time.sleep(60)  # a helper stuck on a lock it copied mid-use
        return [x * 2 for x in part]

    t = time.monotonic()
    assert parallel.halves(fn, list(range(20))) == [x * 2 for x in range(20)]
    assert time.monotonic() - t < 10
