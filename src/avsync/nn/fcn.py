"""FCN-SyncNet: a fully convolutional audio-visual sync model (torch; import lazily).

Inputs (see :mod:`avsync.nn.fcn_io`): a 100 Hz log-mel spectrogram
``audio`` [B, N_MEL, 4T] and per-frame mouth-landmark trajectories ``video``
[B, VIS_DIM, T] at 25 Hz, each with a validity mask.  Two 1-D convolutional
encoders map them to feature maps [B, C, T] (the audio encoder strides 4x to the
video rate).  For every frame ``t`` and every candidate offset ``k`` in
[-K, K] frames the cosine similarity of video ``t`` with audio ``t - k`` forms a
similarity volume [B, 2K+1, T]; a small 2-D convolution over (offset, time) turns
it into per-frame logits (translation-equivariant over offsets: no prior on any
particular offset can be learned), and a softmax over offsets gives ``sync_probs``
[B, 2K+1, T].  The clip-level distribution is the softmax of the logits averaged
over the valid frames.  Classification over offsets, not regression.

Offset ``k`` means the audio LEADS the video by ``k`` frames (the contract's sign).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fcn_io import HOPS, N_MEL, VIS_DIM

NEG = -1e4  # logit of an impossible (masked) offset


def align_streams(a, amask, v, vmask):
    """Audio features [B, C, >=T] cut or padded to the video's T frames, the per-frame audio mask
    (HOPS hops per frame), both L2-normalised over channels: what :meth:`FCNSyncNet.similarity` takes."""
    T = v.shape[-1]
    a = a[..., :T]
    if a.shape[-1] < T:
        a = F.pad(a, (0, T - a.shape[-1]))
    am = F.avg_pool1d(amask[:, None], HOPS, HOPS)[:, 0, :T]
    if am.shape[-1] < T:
        am = F.pad(am, (0, T - am.shape[-1]))
    return F.normalize(a, dim=1), (am > 0.5).float(), F.normalize(v, dim=1), (vmask > 0.5).float()


class FCNSyncNet(nn.Module):
    def __init__(self, max_offset: int = 25, channels: int = 64, n_mel: int = N_MEL, vis_dim: int = VIS_DIM):
        super().__init__()
        self.K = int(max_offset)
        self.config = {"max_offset": self.K, "channels": channels, "n_mel": n_mel, "vis_dim": vis_dim}
        C = channels
        self.audio = nn.Sequential(  # 100 Hz -> 25 Hz, receptive field ~0.3 s
            nn.Conv1d(n_mel + 1, C, 5, padding=2), nn.BatchNorm1d(C), nn.ReLU(),
            nn.Conv1d(C, C, 4, stride=2, padding=1), nn.BatchNorm1d(C), nn.ReLU(),
            nn.Conv1d(C, C, 4, stride=2, padding=1), nn.BatchNorm1d(C), nn.ReLU(),
            nn.Conv1d(C, C, 5, padding=2), nn.BatchNorm1d(C), nn.ReLU(),
            nn.Conv1d(C, C, 1),
        )
        self.video = nn.Sequential(  # 25 Hz, receptive field ~0.3 s
            nn.Conv1d(vis_dim + 1, C, 3, padding=1), nn.BatchNorm1d(C), nn.ReLU(),
            nn.Conv1d(C, C, 3, padding=1), nn.BatchNorm1d(C), nn.ReLU(),
            nn.Conv1d(C, C, 3, padding=1), nn.BatchNorm1d(C), nn.ReLU(),
            nn.Conv1d(C, C, 1),
        )
        self.head = nn.Sequential(  # over (offset, time)
            nn.Conv2d(2, 16, (3, 9), padding=(1, 4)), nn.ReLU(),
            nn.Conv2d(16, 16, (3, 9), padding=(1, 8), dilation=(1, 2)), nn.ReLU(),
            nn.Conv2d(16, 1, 1),
        )
        self.clip_scale = nn.Parameter(torch.tensor(1.0))

    # ------------------------------------------------------------------ encoders
    def encode(self, audio, amask, video, vmask):
        """Feature maps [B, C, T] of both streams (L2-normalised) and their frame masks [B, T]."""
        a = self.audio(torch.cat([audio * amask[:, None], amask[:, None]], 1))
        v = self.video(torch.cat([video * vmask[:, None], vmask[:, None]], 1))
        return align_streams(a, amask, v, vmask)

    def similarity(self, a, am, v, vm):
        """sim [B, 2K+1, T] (cosine of video t with audio t - k) and validity [B, 2K+1, T]."""
        K = self.K
        ap = F.pad(a, (K, K))
        amp = F.pad(am, (K, K))
        T = v.shape[-1]
        sims, valid = [], []
        for k in range(-K, K + 1):
            # audio frame t - k sits at padded index t - k + K
            seg = ap[..., K - k:K - k + T]
            sims.append((seg * v).sum(1))
            valid.append(amp[..., K - k:K - k + T] * vm)
        return torch.stack(sims, 1), torch.stack(valid, 1)

    def forward(self, audio, video, amask=None, vmask=None):
        """(sync_probs [B, 2K+1, T], audio_features [B, C, T], video_features [B, C, T]);
        per-frame logits, validity and clip logits are kept on ``self.last``."""
        if amask is None:
            amask = torch.ones(audio.shape[0], audio.shape[-1], device=audio.device)
        if vmask is None:
            vmask = torch.ones(video.shape[0], video.shape[-1], device=video.device)
        a, am, v, vm = self.encode(audio, amask, video, vmask)
        sim, valid = self.similarity(a, am, v, vm)
        z = self.head(torch.stack([sim * valid, valid], 1))[:, 0]
        logits = torch.where(valid > 0, z, torch.full_like(z, NEG))
        any_valid = valid.sum(1, keepdim=True) > 0
        probs = torch.where(any_valid, logits.softmax(1), torch.full_like(logits, 1.0 / logits.shape[1]))
        self.last = {"logits": logits, "valid": valid, "clip_logits": self.clip_logits(z, valid)}
        return probs, a, v

    def clip_logits(self, z, valid):
        """Logits over offsets for a whole window: frame logits averaged over valid frames."""
        n = valid.sum(-1)
        mean = (z * valid).sum(-1) / n.clamp(min=1)
        return torch.where(n > 0, mean * self.clip_scale, torch.full_like(mean, NEG))

    def compute_offset(self, sync_probs):
        """Per-frame offsets [B, T] (frames, audio leads > 0) and confidences [B, T]: the
        probability mass within one frame of the most likely offset."""
        return decode_offsets(sync_probs, self.K)


def decode_offsets(probs, K: int):
    """Most likely offset (frames, refined by the probability-weighted mean of the peak
    and its neighbours) and the mass within +-1 offset of the peak, along dim 1."""
    idx = probs.argmax(1, keepdim=True)
    n = probs.shape[1]
    nb = torch.cat([(idx + d).clamp(0, n - 1) for d in (-1, 0, 1)], 1)
    w = probs.gather(1, nb)
    for j, d in enumerate((-1, 1)):  # a clamped neighbour is the peak itself: count it once
        col = 0 if d == -1 else 2
        dup = (nb[:, col] == idx[:, 0])
        w[:, col] = torch.where(dup, torch.zeros_like(w[:, col]), w[:, col])
    conf = w.sum(1)
    off = (w * (nb.float() - K)).sum(1) / conf.clamp(min=1e-12)
    return off, conf


def save(model: FCNSyncNet, path: str, extra: dict | None = None) -> None:
    import os

    tmp = f"{path}.tmp"
    torch.save({"format": "avsync-fcn/1", "config": model.config, "state": model.state_dict(),
                "extra": extra or {}}, tmp)
    os.replace(tmp, path)


def load(path: str, map_location: str = "cpu") -> FCNSyncNet:
    ck = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != "avsync-fcn/1":
        raise ValueError("not an avsync FCN-SyncNet weights file")
    m = FCNSyncNet(**ck["config"])
    m.load_state_dict(ck["state"])
    m.eval()
    m.calibration = (ck.get("extra") or {}).get("calibration")
    m.fusion = (ck.get("extra") or {}).get("fusion")
    return m


def set_extra(path: str, **items) -> None:
    """Add or replace entries of a weights file's ``extra`` dict (e.g. ``fusion``), atomically."""
    import os

    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != "avsync-fcn/1":
        raise ValueError("not an avsync FCN-SyncNet weights file")
    ck["extra"] = {**(ck.get("extra") or {}), **items}
    tmp = f"{path}.tmp"
    torch.save(ck, tmp)
    os.replace(tmp, path)
