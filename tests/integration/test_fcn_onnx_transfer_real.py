"""Real clips: the FCN-SyncNet ONNX model gives the torch model's estimate on a real talking face
(one feature extraction, both runtimes), and the transfer-learning loader makes mouth crops,
log-mel and waveform inputs on the 25-Hz grid of a real clip."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def test_onnx_and_torch_agree_on_a_real_clip(media_dir, tmp_path):
    from avsync.estimators.base import EstimatorOptions
    from avsync.estimators.registry import get_estimator
    from avsync.estimators.fcn import frame_offsets
    from avsync.features import extract_features
    from avsync.media import open_media
    from avsync.nn.fcn import FCNSyncNet, save
    from avsync.nn.fcn_onnx import export_fcn_onnx

    torch.manual_seed(3)
    pt, ox = tmp_path / "m.pt", tmp_path / "m.onnx"
    save(FCNSyncNet(max_offset=20, channels=48).eval(), str(pt))
    export_fcn_onnx(pt, ox, verify=False)
    with open_media(media_dir / "speech" / "grid_bbaf2n.mpg") as src:
        feats = extract_features(src, faces="auto", trajectories=True)
    a = get_estimator("fcn", EstimatorOptions(weights=str(pt))).estimate(feats)
    b = get_estimator("fcn", EstimatorOptions(weights=str(ox))).estimate(feats)
    assert a.assessable and b.assessable
    assert b.offset_ms == pytest.approx(a.offset_ms, abs=1e-2) and b.confidence == pytest.approx(a.confidence, abs=1e-4)
    np.testing.assert_allclose(frame_offsets(feats, str(ox))[1], frame_offsets(feats, str(pt))[1], atol=0.05)


@pytest.mark.parametrize("arch", ["vggish", "wav2vec2", "r3d"])
def test_transfer_loader_on_a_real_clip(media_dir, arch):
    from avsync.training.transfer_data import load_transfer_track

    tr = load_transfer_track(str(media_dir / "speech" / "grid_bbaf2n.mpg"), arch, "auto")
    T = len(tr)
    assert T == 75 and tr.vmask.mean() > 0.9 and tr.amask.mean() > 0.95
    assert tr.aud.shape == (tr.per_frame * T, {"vggish": 64, "wav2vec2": 1, "r3d": 40}[arch])
    if arch == "r3d":
        assert tr.vis.shape == (T, 48, 96) and tr.vis.dtype == np.uint8 and tr.vis.std() > 5
