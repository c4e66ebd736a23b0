"""Transfer-learning encoders of seed 003 on the FCN-SyncNet offset head (torch; import lazily).

Three research architectures for users who have their own pretrained encoder weights: each
replaces ONE of FCN-SyncNet's two encoders and keeps everything else of
:class:`~avsync.nn.fcn.FCNSyncNet` -- the other modality's encoder, the cosine-similarity
volume over offsets -K..K, the (offset, time) convolution head, ``sync_probs`` [B, 2K+1, T],
``compute_offset`` and the training loss (:mod:`avsync.training.fcn`).

``vggish``   audio: a VGG-style 2-D conv stack (3x3 convs, max-pooling) over a log-mel spectrogram
             [B, n_mels, 4T] at 100 Hz (10-ms hops, 25-ms windows as VGGish; 64 bands by default,
             any band count divisible by 16).  Fully convolutional over time: the same as sliding
             VGGish's patches with a 40-ms stride; frequency pooled to one vector per video frame.
             Video: FCN-SyncNet's mouth-landmark encoder.
``wav2vec2`` audio: a wav2vec2-style raw-waveform encoder -- a strided 1-D conv feature encoder
             (kernels 10,3,3,3,3,2,2,2, strides 5,2,2,2,2,2,2,2: 640 samples = one 25-Hz frame at
             16 kHz; GroupNorm after the first, GELU), a layer-normed projection, a grouped
             convolutional position embedding and a small post-norm transformer encoder.  Input
             [B, 1, 640T] (zero-mean, unit-variance).  Video: the landmark encoder.
``r3d``      video: a 3-D ResNet (ResNet-18 layout, BasicBlock3d, temporal stride 1) over grey
             mouth crops [B, 1, T, 48, 96]; the stem's temporal kernel is 5 frames (SyncNet's
             5-frame clip), blocks add 3-frame context each; spatial mean pooling per frame.
             Audio: FCN-SyncNet's log-mel encoder (40 bands, 100 Hz).

Every encoder returns [B, C, T] at 25 Hz.  Masks are at 100 Hz for the audio ([B, 4T], also for
the waveform) and per frame for the video ([B, T]); masked input is zeroed and the mask is an
extra input channel, as in FCN-SyncNet.

Pretrained encoders: :func:`save_encoder` writes an encoder's state dict (``avsync-encoder/1``
with its architecture and configuration); :func:`load_encoder_weights` loads such a file -- or a
bare state dict with the same keys, or a whole model file from ``avsync train --model ARCH`` --
into ``model.encoder`` with a strict key and shape check (a one-line :class:`UsageError` naming
the first missing / unexpected key or shape mismatch).  Local files only; nothing is downloaded.
These are architectures, not trained or benchmarked models.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError
from .fcn import FCNSyncNet, align_streams
from .fcn_io import HOPS, N_MEL, VIS_DIM

ARCHS = ("vggish", "wav2vec2", "r3d")
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
CROP_H, CROP_W = 48, 96
ENCODER_FORMAT = "avsync-encoder/1"
MODEL_FORMAT = "avsync-transfer/1"

#: encoder sizes: small CPU-friendly defaults (the original networks: VGGish widths 64-512,
#: wav2vec2 base conv 512 / d_model 768 / 12 layers / 12 heads, R3D-18 widths 64-512, 2 blocks a stage)
DEFAULTS = {
    "vggish": {"n_mels": 64, "width": 16},
    "wav2vec2": {"conv_dim": 64, "d_model": 96, "layers": 2, "heads": 4, "ff": 192},
    "r3d": {"width": 16, "blocks": [1, 1, 1, 1]},
}


# ---------------------------------------------------------------------------- encoders
class VGGishEncoder(nn.Module):
    """log-mel [B, n_mels, 4T] (+ mask [B, 4T]) -> [B, C, T]."""

    def __init__(self, channels: int, n_mels: int = 64, width: int = 16):
        super().__init__()
        if n_mels % 16:
            raise ValueError("vggish: n_mels must be divisible by 16 (four frequency poolings)")
        w = [width, 2 * width, 4 * width, 8 * width]

        def conv(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.ReLU()]

        self.features = nn.Sequential(  # over (frequency, time); time 100 Hz -> 25 Hz
            *conv(2, w[0]), nn.MaxPool2d((2, 2)),
            *conv(w[0], w[1]), nn.MaxPool2d((2, 2)),
            *conv(w[1], w[2]), *conv(w[2], w[2]), nn.MaxPool2d((2, 1)),
            *conv(w[2], w[3]), *conv(w[3], w[3]), nn.MaxPool2d((2, 1)),
        )
        self.embed = nn.Sequential(nn.Conv1d(w[3], 2 * channels, 1), nn.ReLU(), nn.Conv1d(2 * channels, channels, 1))

    def forward(self, mel, mask):
        x = torch.stack([mel * mask[:, None], mask[:, None].expand_as(mel)], 1)  # [B, 2, F, 4T]
        h = self.features(x).mean(2)  # [B, 8w, T]
        return self.embed(h)


class Wav2Vec2Encoder(nn.Module):
    """waveform [B, 1, 640T] (+ mask [B, 4T] at 100 Hz) -> [B, C, T]."""

    KERNELS = (10, 3, 3, 3, 3, 2, 2, 2)
    STRIDES = (5, 2, 2, 2, 2, 2, 2, 2)  # product 640

    def __init__(self, channels: int, conv_dim: int = 64, d_model: int = 96, layers: int = 2, heads: int = 4,
                 ff: int = 192, pos_kernel: int = 15, pos_groups: int = 4):
        super().__init__()
        convs = []
        for i, (k, s) in enumerate(zip(self.KERNELS, self.STRIDES)):
            pad = {10: 3, 3: 1, 2: 0}[k]  # every layer maps length L to exactly L / s
            block = [nn.Conv1d(2 if i == 0 else conv_dim, conv_dim, k, stride=s, padding=pad, bias=False)]
            if i == 0:
                block.append(nn.GroupNorm(conv_dim, conv_dim))
            block.append(nn.GELU())
            convs.append(nn.Sequential(*block))
        self.feature_encoder = nn.Sequential(*convs)
        self.projection = nn.Sequential(nn.LayerNorm(conv_dim), nn.Linear(conv_dim, d_model))
        self.pos_conv = nn.Conv1d(d_model, d_model, pos_kernel, padding=pos_kernel // 2, groups=pos_groups)
        self.norm = nn.LayerNorm(d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, activation="gelu", batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Conv1d(d_model, channels, 1)

    def forward(self, wave, mask):
        B, _, L = wave.shape
        T = L // SAMPLES_PER_FRAME
        smask = mask.repeat_interleave(SAMPLES_PER_FRAME // HOPS, dim=1)[:, None, :L]  # 100 Hz -> samples
        h = self.feature_encoder(torch.cat([wave * smask, smask], 1))[..., :T]  # [B, conv_dim, T]
        h = self.projection(h.transpose(1, 2))  # [B, T, d]
        h = h + F.gelu(self.pos_conv(h.transpose(1, 2))).transpose(1, 2)
        h = self.norm(h)
        fm = F.avg_pool1d(mask[:, None], HOPS, HOPS)[:, 0, :T] > 0.5
        pad = ~fm
        pad = pad & ~pad.all(1, keepdim=True)  # a fully masked example attends to everything (masked later)
        h = self.transformer(h, src_key_padding_mask=pad)
        return self.out(h.transpose(1, 2))


class BasicBlock3d(nn.Module):
    def __init__(self, i: int, o: int, stride: int):
        super().__init__()
        s = (1, stride, stride)  # time keeps 25 Hz
        self.conv1 = nn.Conv3d(i, o, 3, stride=s, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(o)
        self.conv2 = nn.Conv3d(o, o, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(o)
        self.down = None
        if stride != 1 or i != o:
            self.down = nn.Sequential(nn.Conv3d(i, o, 1, stride=s, bias=False), nn.BatchNorm3d(o))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class R3DEncoder(nn.Module):
    """grey mouth crops [B, 1, T, H, W] in [0, 1] (+ mask [B, T]) -> [B, C, T]."""

    def __init__(self, channels: int, width: int = 16, blocks: list[int] | tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv3d(2, w[0], (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
                                  nn.BatchNorm3d(w[0]), nn.ReLU())
        layers, prev = [], w[0]
        for j, (c, n) in enumerate(zip(w, blocks)):
            for b in range(n):
                layers.append(BasicBlock3d(prev, c, 2 if (b == 0 and j > 0) else 1))
                prev = c
        self.layers = nn.Sequential(*layers)
        self.out = nn.Conv1d(prev, channels, 1)

    def forward(self, crops, mask):
        m = mask[:, None, :, None, None]
        x = torch.cat([(crops - 0.5) * m, m.expand_as(crops)], 1)
        h = self.layers(self.stem(x)).mean((3, 4))  # [B, 8w, T]
        return self.out(h)


# ---------------------------------------------------------------------------- the model
class TransferSyncNet(FCNSyncNet):
    """FCN-SyncNet with one encoder replaced by a transfer-learning architecture (``arch``);
    same ``forward(audio, video, amask, vmask)`` contract and outputs."""

    def __init__(self, arch: str, max_offset: int = 20, channels: int = 48, encoder: dict | None = None,
                 n_mel: int = N_MEL, vis_dim: int = VIS_DIM):
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
        super().__init__(max_offset, channels, n_mel, vis_dim)
        enc = {**DEFAULTS[arch], **(encoder or {})}
        self.arch = arch
        self.config = {**self.config, "arch": arch, "encoder": enc}
        if arch == "vggish":
            del self.audio
            self.encoder = VGGishEncoder(channels, **enc)
        elif arch == "wav2vec2":
            del self.audio
            self.encoder = Wav2Vec2Encoder(channels, **enc)
        else:
            del self.video
            self.encoder = R3DEncoder(channels, **enc)
        self.frozen = False

    def encode(self, audio, amask, video, vmask):
        if self.arch == "r3d":
            a = self.audio(torch.cat([audio * amask[:, None], amask[:, None]], 1))
            v = self.encoder(video, vmask)
        else:
            a = self.encoder(audio, amask)
            v = self.video(torch.cat([video * vmask[:, None], vmask[:, None]], 1))
        return align_streams(a, amask, v, vmask)

    def freeze_encoder(self) -> None:
        """No gradient into the transfer encoder, and its normalisation statistics stay fixed."""
        self.frozen = True
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self


# ---------------------------------------------------------------------------- files
def _atomic_save(obj, path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_encoder(model: TransferSyncNet, path: str | os.PathLike) -> None:
    """Write ``model.encoder``'s weights (what ``--pretrained`` loads)."""
    _atomic_save({"format": ENCODER_FORMAT, "arch": model.arch, "config": model.config["encoder"],
                  "state": model.encoder.state_dict()}, os.fspath(path))


def save_model(model: TransferSyncNet, path: str | os.PathLike, extra: dict | None = None) -> None:
    _atomic_save({"format": MODEL_FORMAT, "config": model.config, "state": model.state_dict(),
                  "extra": extra or {}}, os.fspath(path))


def load_model(path: str | os.PathLike) -> TransferSyncNet:
    ck = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != MODEL_FORMAT:
        raise ValueError("not an avsync transfer-learning model file")
    cfg = dict(ck["config"])
    m = TransferSyncNet(cfg.pop("arch"), encoder=cfg.pop("encoder"), **cfg)
    m.load_state_dict(ck["state"])
    m.eval()
    return m


def _shape(t) -> str:
    return "x".join(str(int(n)) for n in t.shape) or "scalar"


def load_encoder_weights(model: TransferSyncNet, path: str | os.PathLike) -> dict:
    """Load user-supplied encoder weights from the local file ``path`` into ``model.encoder``:
    an ``avsync-encoder/1`` file (from :func:`save_encoder`), a whole ``avsync-transfer/1`` model
    file (its ``encoder.*`` weights) or a bare state dict with the encoder's keys.  Strict: every
    key present, none extra, every shape equal; otherwise a one-line UsageError naming the first
    problem.  Returns a summary (keys, parameters)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: pretrained weights file not found")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on foreign pickle protocols
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"{path}: cannot read pretrained weights "
                         f"({' '.join(str(exc).split())[:160] or type(exc).__name__})") from None
    if isinstance(ck, dict) and ck.get("format") == ENCODER_FORMAT:
        if ck.get("arch") != model.arch:
            raise UsageError(f"{path}: pretrained weights are for a {ck.get('arch')} encoder, not {model.arch}")
        state = ck.get("state")
    elif isinstance(ck, dict) and ck.get("format") == MODEL_FORMAT:
        if (ck.get("config") or {}).get("arch") != model.arch:
            raise UsageError(f"{path}: a {(ck.get('config') or {}).get('arch')} model, not {model.arch}")
        state = {k[len("encoder."):]: v for k, v in ck["state"].items() if k.startswith("encoder.")}
    else:
        state = ck
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UsageError(f"{path}: not a state dict of {model.arch} encoder weights")
    want = model.encoder.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]

    def more(lst):
        return f" (and {len(lst) - 1} more)" if len(lst) > 1 else ""

    if missing:
        raise UsageError(f"{path}: pretrained {model.arch} encoder weights lack key {missing[0]!r}{more(missing)}")
    if unexpected:
        raise UsageError(f"{path}: pretrained {model.arch} encoder weights have unexpected key "
                         f"{unexpected[0]!r}{more(unexpected)}")
    bad = [k for k in want if tuple(state[k].shape) != tuple(want[k].shape)]
    if bad:
        k = bad[0]
        raise UsageError(f"{path}: pretrained {model.arch} encoder weights: shape mismatch for {k!r}: "
                         f"file {_shape(state[k])} vs model {_shape(want[k])}{more(bad)}")
    model.encoder.load_state_dict(state, strict=True)
    return {"keys": len(state), "parameters": int(sum(v.numel() for v in state.values()))}


__all__ = ["ARCHS", "TransferSyncNet", "VGGishEncoder", "Wav2Vec2Encoder", "R3DEncoder", "save_encoder",
           "save_model", "load_model", "load_encoder_weights"]
