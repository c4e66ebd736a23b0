"""Shared pytest fixtures.

The real clips live in the repository's sibling folder ``../shared`` (never
copied into the repo); tests that need them take the ``shared_dir`` fixture and
are skipped, with the reason, when that folder is absent.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the repository (clips in ``media/``, the contract in ``spec/``)."""
    if not (SHARED / "media").is_dir():
        pytest.skip(f"shared media folder not found at {SHARED} (real clips are not in the repo)")
    return SHARED


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    return shared_dir / "media"


def _clip(media_dir: Path, rel: str) -> Path:
    p = media_dir / rel
    if not p.is_file():
        pytest.skip(f"clip {rel} not found under {media_dir}")
    return p


@pytest.fixture(scope="session")
def speech_clip(media_dir: Path) -> Path:
    """A short talking-head clip (SyncNet's example, about 12.7 s, 25 fps, PCM audio)."""
    return _clip(media_dir, "speech/syncnet_example.avi")


@pytest.fixture(scope="session")
def far_out_clip(media_dir: Path) -> Path:
    """The same talk with the audio lagging by about 470 ms more: far out of sync."""
    return _clip(media_dir, "known_offset/syncnetfcn_test_offset_12.avi")


@pytest.fixture(scope="session")
def random_syncnet():
    """A factory ``make(seed)``: SyncNetV2 in eval mode, seeded random weights and BatchNorm
    statistics randomised (so a wrong BatchNorm mapping cannot pass unnoticed)."""

    def make(seed: int):
        import torch

        from avsync.nn.syncnet_v2 import SyncNetV2

        torch.manual_seed(seed)
        m = SyncNetV2().eval()
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.2, 0.2)
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2.0)
        return m

    return make


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (restored after): the models in the unit tests are tiny,
    and more threads only spin-wait on a busy machine (minutes instead of seconds)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the store tests ($AVSYNC_TEST_POSTGRES, or a throwaway one);
    skips, saying why, only when none can be started."""
    from pg_helpers import PgServer

    server = PgServer()
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.skip(f"no PostgreSQL server for the store tests: {exc}")
    yield server
    server.stop()
