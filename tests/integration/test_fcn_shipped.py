"""The shipped FCN-SyncNet model (src/avsync/data/fcn_syncnet.{onnx,pt}) on real clips: it
loads without torch through ONNX Runtime, `--method fcn` runs it on a talking head, and its dense
per-frame offsets show an audio step where it happens (issue 3's dense-output check)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsync.estimators.fcn import default_weights

pytestmark = pytest.mark.skipif(default_weights() is None,
                                reason="no shipped FCN-SyncNet model or no runtime (onnx/fcn extra) installed")


def _clip(media_dir: Path, rel: str) -> Path:
    p = media_dir / rel
    if not p.is_file():
        pytest.skip(f"clip {rel} not found under {media_dir}")
    return p


def test_the_shipped_model_on_a_talking_head(media_dir):
    from avsync.api import DetectOptions, detect

    clip = _clip(media_dir, "speech/grid_bbaf2n.mpg")
    r = detect(str(clip), DetectOptions(method="fcn", timeline=False))
    assert r.method == "fcn"
    assert abs(r.offset_ms) <= 40.0  # GRID is recorded in sync
    assert {"fcn_offset_ms", "lips_offset_ms", "fused_from"} <= set(r.stats)


def test_dense_offsets_show_a_200ms_step_within_one_second(media_dir, tmp_path):
    """lrs2_demo_00016 (never in the shipped model's training data) with its audio moved 200 ms
    earlier from the middle on: the 1-s smoothed per-frame offsets step from the clip's own offset
    to about 200 ms more, within 1 s of the edit."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    import av

    from avsync.estimators.fcn import frame_offsets
    from avsync.features import extract_features
    from avsync.media import open_media

    clip = _clip(media_dir, "speech/lrs2_demo_00016.mp4")
    with av.open(str(clip)) as c:
        dur = float(c.duration) / 1e6
    mid = round(dur / 2, 2)
    out = tmp_path / "step.mkv"
    graph = (f"[0:a]atrim=0:{mid},asetpts=PTS-STARTPTS[a1];[0:a]atrim={mid + 0.2},asetpts=PTS-STARTPTS[a2];"
             "[a1][a2]concat=n=2:v=0:a=1[a]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-filter_complex", graph, "-map", "0:v",
                    "-map", "[a]", "-c:v", "copy", "-c:a", "pcm_s16le", str(out)], check=True)
    with open_media(str(out)) as src:
        feats = extract_features(src, trajectories=True)
    t, off, _ = frame_offsets(feats, smooth_s=1.0)
    before = np.median(off[(t > 0.5) & (t < mid - 1.0)])
    after = np.median(off[(t > mid + 1.0) & (t < t[-1] - 0.5)])
    assert after - before == pytest.approx(200.0, abs=60.0)
    near_after = np.abs(off - after) < np.abs(off - before)
    # the first time from which the offsets stay on the new level
    step = next((t[i] for i in range(t.size) if near_after[i:].mean() > 0.8), None)
    assert step is not None and abs(step - mid) <= 1.0, (step, mid)
