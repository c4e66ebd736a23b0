"""Inputs of the transfer-learning architectures (:mod:`avsync.nn.transfer`), numpy only.

A minimal loader, enough to train or fine-tune on a handful of clips: a clip becomes a
:class:`TransferTrack` on the 25-Hz grid of FCN-SyncNet (:mod:`avsync.nn.fcn_io`):

- ``vggish``: an ``n_mels``-band log-mel at 100 Hz (25-ms Hann windows, 4 hops per frame, hop
  ``4j + h`` centred at ``t_j + (h - 1.5) / 100`` as FCN-SyncNet's), normalised per clip as
  FCN-SyncNet's log-mel; video: FCN-SyncNet's mouth-landmark trajectories.
- ``wav2vec2``: the 16-kHz waveform, 640 samples per frame (frame ``j`` covers
  ``t_j - 20 ms .. t_j + 20 ms``), zero mean and unit variance per clip; video: landmarks.
- ``r3d``: grey mouth crops 48 x 96 per frame (``crop='auto'``: around the 20 dlib mouth points,
  0.6 face widths wide; ``crop='none'``: the whole picture, for clips that are already mouth
  crops); audio: FCN-SyncNet's 40-band log-mel.

Training pairs (:func:`sample_window`) follow FCN-SyncNet's: a window of the video and the
clip's own audio moved EARLIER by ``label`` frames, or another clip's audio (label -999).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn.fcn_io import FPS, HOPS, N_MEL, nearest_frames, normalise_audio, track_from_raw
from .fcn_data import load_or_extract, window_audio

SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = 640
CROP_H, CROP_W = 48, 96
WIN = 400  # 25 ms
NFFT = 512


@dataclass
class TransferTrack:
    t0: float
    vis: np.ndarray  # (T, VIS_DIM) float32 landmarks, or (T, 48, 96) uint8 crops
    vmask: np.ndarray  # (T,) float32
    aud: np.ndarray  # (P * T, D) float32: log-mel (P = 4) or waveform (P = 640, D = 1)
    amask: np.ndarray  # (4 * T,) float32, 100 Hz
    per_frame: int  # P
    group: str = ""
    name: str = ""

    def __len__(self) -> int:
        return int(self.vis.shape[0])


def _decode(path: str, video: bool, max_side: int = 640):
    """(wave float32, time of wave[0], [(t, grey image)] when ``video``)."""
    from ..errors import NoAudio
    from ..media import open_media
    from ..media.base import AudioChunk, DecodeOptions

    chunks, frames = [], []
    with open_media(path) as src:
        src.require(audio=True, video=video)
        for item in src.decode(DecodeOptions(audio_rate=SAMPLE_RATE, max_side=max_side, video=video)):
            if isinstance(item, AudioChunk):
                chunks.append((item.t, np.asarray(item.samples, np.float32)))
            elif video:
                frames.append((item.t, item.image))
    if not chunks:
        raise NoAudio("no decodable audio", path)
    s0 = chunks[0][0]
    n = int(round((chunks[-1][0] - s0) * SAMPLE_RATE)) + chunks[-1][1].size
    wave = np.zeros(n, np.float32)
    for t, x in chunks:
        i = int(round((t - s0) * SAMPLE_RATE))
        wave[i:i + x.size] = x[:max(0, n - i)]
    return wave, s0, frames


def _samples(wave: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = (idx >= 0) & (idx < wave.size)
    return np.where(ok, wave[np.clip(idx, 0, wave.size - 1)], 0.0).astype(np.float32), ok


def log_mel(wave: np.ndarray, s0: float, t0: float, T: int, n_bands: int) -> tuple[np.ndarray, np.ndarray]:
    """(log10 mel [4T, n_bands], mask [4T]) at the hops of the 25-Hz grid starting at ``t0``."""
    from ..features.audio import mel_filterbank

    centres = t0 + (np.arange(HOPS * T) - (HOPS - 1) / 2) / (FPS * HOPS)
    ci = np.round((centres - s0) * SAMPLE_RATE).astype(np.int64)
    idx = ci[:, None] - WIN // 2 + np.arange(WIN)[None, :]
    x, _ = _samples(wave, idx)
    spec = np.abs(np.fft.rfft(x * np.hanning(WIN).astype(np.float32), NFFT, axis=1)) ** 2
    mel = np.log10(spec @ mel_filterbank(n_bands, NFFT, SAMPLE_RATE).T + 1e-10)
    mask = ((ci >= 0) & (ci < wave.size)).astype(np.float32)
    return normalise_audio(mel, mask).astype(np.float32), mask


def waveform(wave: np.ndarray, s0: float, t0: float, T: int) -> tuple[np.ndarray, np.ndarray]:
    """(samples [640T, 1], 100-Hz mask [4T]), normalised over the valid samples."""
    start = int(round((t0 - 0.5 / FPS - s0) * SAMPLE_RATE))
    x, ok = _samples(wave, start + np.arange(SAMPLES_PER_FRAME * T))
    if ok.sum() > 1:
        x = np.where(ok, (x - x[ok].mean()) / max(float(x[ok].std()), 1e-4), 0.0)
    hop_ok = ok.reshape(HOPS * T, SAMPLES_PER_FRAME // HOPS).mean(1) > 0.5
    return x.astype(np.float32)[:, None], hop_ok.astype(np.float32)


def mouth_crop(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """48 x 96 grey crop centred on the mouth points (48-67) of 68 landmarks, 0.6 face widths wide."""
    import cv2

    cx, cy = pts[48:68].mean(0)
    w = max(0.6 * float(np.linalg.norm(pts[16] - pts[0])), 8.0)
    h = w * CROP_H / CROP_W
    M = np.array([[CROP_W / w, 0, CROP_W / 2 - cx * CROP_W / w], [0, CROP_H / h, CROP_H / 2 - cy * CROP_H / h]])
    return cv2.warpAffine(img, M, (CROP_W, CROP_H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def _crops(frames, crop: str):
    """(times, crops uint8 [N, 48, 96], ok [N])."""
    import cv2

    times = np.array([t for t, _ in frames], np.float64)
    out = np.zeros((len(frames), CROP_H, CROP_W), np.uint8)
    ok = np.zeros(len(frames), bool)
    tracker = None
    if crop == "auto":
        from ..features.faces import FaceTracker

        tracker = FaceTracker()
    for i, (_, img) in enumerate(frames):
        if tracker is None:
            out[i] = cv2.resize(img, (CROP_W, CROP_H), interpolation=cv2.INTER_AREA)
            ok[i] = True
            continue
        obs = tracker.update(img)
        if obs is not None:
            out[i] = mouth_crop(img, obs.landmarks)
            ok[i] = True
    return times, out, ok


def load_transfer_track(path: str, arch: str, crop: str = "auto", cache_dir: str | None = None,
                        n_mels: int = 64, name: str = "", group: str = "") -> TransferTrack | None:
    """The clip at ``path`` as the inputs of ``arch``; None when it has no usable frames."""
    if arch in ("vggish", "wav2vec2"):
        tr = track_from_raw(load_or_extract(path, cache_dir))  # landmarks (and the 25-Hz grid)
        if tr is None:
            return None
        wave, s0, _ = _decode(path, video=False)
        T = len(tr)
        if arch == "vggish":
            aud, am = log_mel(wave, s0, tr.t0, T, n_mels)
            per = HOPS
        else:
            aud, am = waveform(wave, s0, tr.t0, T)
            per = SAMPLES_PER_FRAME
        return TransferTrack(tr.t0, tr.vis, tr.vmask, aud, am, per, group, name)
    if arch != "r3d":
        raise ValueError(f"unknown architecture {arch!r}")
    wave, s0, frames = _decode(path, video=True)
    if len(frames) < 2:
        return None
    times, crops, ok = _crops(frames, crop)
    T = int(np.floor((times[-1] - times[0]) * FPS)) + 1
    near, vmask = nearest_frames(times, times[0] + np.arange(T) / FPS, ok)
    vis = np.where(vmask[:, None, None], crops[near], 0).astype(np.uint8)
    aud, am = log_mel(wave, s0, float(times[0]), T, N_MEL)
    return TransferTrack(float(times[0]), vis, vmask.astype(np.float32), aud, am, HOPS, group, name)


def sample_window(tracks: list[TransferTrack], i: int, rng: np.random.Generator, length: int, max_shift: int,
                  negative: bool = False, augment: bool = True):
    """(vis [L, ...], vmask [L], aud [P*L, D], amask [4L], label): the audio moved EARLIER by
    ``label`` frames, or another clip's audio (label -999); padded (masked) to ``length``."""
    tr = tracks[i]
    T, P = len(tr), tr.per_frame
    L = min(length, T)
    s = int(rng.integers(0, T - L + 1))
    if negative and len(tracks) > 1:
        j = int(rng.integers(0, len(tracks) - 1))
        src, label = tracks[j + (j >= i)], -999
        a0 = int(rng.integers(0, max(1, len(src) - L + 1))) + int(rng.integers(-max_shift, max_shift + 1))
    else:
        src, label = tr, int(rng.integers(-max_shift, max_shift + 1))
        a0 = s + label
    aud, amask = window_audio(src, a0, L, length, P)
    if augment:
        aud *= np.float32(rng.uniform(0.8, 1.2))  # gain
    vis = np.zeros((length, *tr.vis.shape[1:]), tr.vis.dtype)
    vmask = np.zeros(length, np.float32)
    vis[:L], vmask[:L] = tr.vis[s:s + L], tr.vmask[s:s + L]
    return vis, vmask, aud, amask, label


def make_batch(tracks, rng, batch: int, length: int, max_shift: int, negatives: float, weights=None):
    """Torch tensors (audio, amask, video, vmask, labels) in the layout of TransferSyncNet.forward."""
    import torch

    idx = rng.choice(len(tracks), size=batch, p=weights)
    items = [sample_window(tracks, int(i), rng, length, max_shift, rng.random() < negatives) for i in idx]
    vis, vm, aud, am, lab = (np.stack(x) for x in zip(*items))
    return to_tensors(aud, am, vis, vm) + (torch.tensor(lab),)


def to_tensors(aud, am, vis, vm):
    """numpy batch -> (audio [B, D, P*L], amask [B, 4L], video [B, VIS, L] or [B, 1, L, 48, 96] in [0, 1], vmask)."""
    import torch

    a = torch.from_numpy(np.ascontiguousarray(aud.transpose(0, 2, 1)))
    if vis.dtype == np.uint8:
        v = torch.from_numpy(vis.astype(np.float32) / 255.0)[:, None]
    else:
        v = torch.from_numpy(np.ascontiguousarray(vis.transpose(0, 2, 1)))
    return a, torch.from_numpy(am), v, torch.from_numpy(vm)
