"""The SyncNet v2 network (Chung & Zisserman, 2016) in the layout of the public
``syncnet_v2.model`` weights file, with strict loading and saving of that file.

The parameter names are the positions of the layers inside four ``nn.Sequential``
blocks (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``); see
``shared/spec/syncnet-v2.md``.  Importing this module imports torch: everything
else in avsync imports it lazily, only when the ``syncnet`` method runs.

Two forward paths compute the same function:

* ``forward_lip`` / ``forward_aud``: the layers exactly as declared (reference order
  of operations, fp32);
* :class:`FastLip`: the lip stream rewritten as 2-D convolutions (a 5-frame window
  is a 15-channel picture for the first layer; the later layers have temporal size 1)
  with BatchNorm folded into the convolutions, optionally in bfloat16.  In fp32 it
  agrees with ``forward_lip`` to float rounding; it is what the scorer uses.
"""
from __future__ import annotations

import os
import zipfile

import torch
from torch import nn

from ..errors import UsageError

#: the number of trainable parameters of SyncNet v2 (spec)
N_PARAMETERS = 13_631_616
#: floating-point operations of one lip window (multiply-add = 2), computed in :func:`lip_flops`
EMBED_DIM = 1024


class WeightsError(UsageError):
    """The weights file is missing, unreadable or does not match the architecture."""


def _audio_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
        nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
        nn.BatchNorm2d(192),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
        nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
        nn.BatchNorm2d(384),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
        nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
        nn.BatchNorm2d(512),
        nn.ReLU(),
    )


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, EMBED_DIM))


def _lip_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
        nn.BatchNorm3d(96),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
        nn.BatchNorm3d(512),
        nn.ReLU(inplace=True),
    )


class SyncNetV2(nn.Module):
    """Audio stream [B,1,13,20] -> 1024-d; lip stream [B,3,5,224,224] (BGR 0-255) -> 1024-d."""

    def __init__(self):
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _head()
        self.netfclip = _head()
        self.netcnnlip = _lip_cnn()

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnaud(x)
        return self.netfcaud(mid.view(mid.size(0), -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnlip(x)
        return self.netfclip(mid.view(mid.size(0), -1))


def expected_shapes() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in SyncNetV2().state_dict().items()}


# -- the weights file ------------------------------------------------------------------------
def _read_state(path: str) -> dict:
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: weights file not found")
    try:
        # weights_only refuses pickled code: a weights file is tensors and nothing else
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = " ".join(str(exc).split())[:160]
        raise WeightsError(f"{path}: not a torch weights file ({type(exc).__name__}: {text})") from None
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only never returns modules
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: not a state dict (a {type(obj).__name__})")
    return obj


def check_state(state: dict, path: str = "weights") -> None:
    """Strict key and shape check; the message names the first mismatch (in the model's order)."""
    want = expected_shapes()
    for key, shape in want.items():
        if key not in state:
            extra = sorted(k for k in state if k not in want)
            hint = f" (found unexpected {extra[0]!r})" if extra else ""
            raise WeightsError(f"{path}: missing key {key!r}{hint}: not a syncnet_v2 weights file")
        val = state[key]
        if not isinstance(val, torch.Tensor):
            raise WeightsError(f"{path}: {key!r} is not a tensor")
        if tuple(val.shape) != shape:
            raise WeightsError(f"{path}: wrong shape for {key!r}: {tuple(val.shape)}, expected {shape}")
        if key.endswith("num_batches_tracked"):
            continue
        if not val.is_floating_point():
            raise WeightsError(f"{path}: {key!r} is not a floating-point tensor ({val.dtype})")
        if not torch.isfinite(val).all():
            raise WeightsError(f"{path}: {key!r} contains NaN or infinite values")
    extra = [k for k in state if k not in want]
    if extra:
        raise WeightsError(f"{path}: unexpected key {extra[0]!r}: not a syncnet_v2 weights file")


def load_model(path: str | os.PathLike) -> SyncNetV2:
    """Load ``syncnet_v2.model`` (legacy or zip torch format) strictly; eval mode, no gradients."""
    path = os.fspath(path)
    state = _read_state(path)
    check_state(state, path)
    model = SyncNetV2()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def save_weights(model: SyncNetV2, path: str | os.PathLike, legacy: bool = False) -> None:
    """Write the plain state dict as the public file has it (legacy format with ``legacy=True``);
    written to a temporary name and renamed when complete."""
    path = os.fspath(path)
    state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    tmp = f"{path}.part"
    try:
        torch.save(state, tmp, _use_new_zipfile_serialization=not legacy)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def is_zip_format(path: str) -> bool:
    return zipfile.is_zipfile(path)


# -- fast equivalent lip stream -----------------------------------------------------------------
def _fold(conv_w: torch.Tensor, conv_b: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding convolution / linear layer."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (conv_w.dim() - 1)
    w = conv_w * scale.reshape(shape)
    b = (conv_b - bn.running_mean) * scale + bn.bias
    return w, b


def _set_folded(mod: nn.Module, ws: list, bs: list, f: nn.Sequential, dtype: torch.dtype) -> None:
    """Give a folded stream its frozen conv weights/biases and its two FC layers (BatchNorm folded
    into the first)."""
    mod.w = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in ws])
    mod.b = nn.ParameterList([nn.Parameter(b, requires_grad=False) for b in bs])
    w1, b1 = _fold(f[0].weight, f[0].bias, f[1])
    mod.fc1_w = nn.Parameter(w1.to(dtype), requires_grad=False)
    mod.fc1_b = nn.Parameter(b1.to(dtype), requires_grad=False)
    mod.fc2_w = nn.Parameter(f[3].weight.detach().clone().to(dtype), requires_grad=False)
    mod.fc2_b = nn.Parameter(f[3].bias.detach().clone().to(dtype), requires_grad=False)


class FastLip(nn.Module):
    """``SyncNetV2.forward_lip`` as 2-D convolutions with folded BatchNorm.

    Input: [B, 15, 224, 224] (5 frames x BGR, frame-major) or [B, 3, 5, 224, 224]."""

    def __init__(self, model: SyncNetV2, dtype: torch.dtype = torch.float32):
        super().__init__()
        c, f = model.netcnnlip, model.netfclip
        self.dtype = dtype
        convs = [0, 4, 8, 11, 14, 18]
        ws, bs = [], []
        for i in convs:
            w, b = _fold(c[i].weight, c[i].bias, c[i + 1])
            if i == 0:  # (96, 3, 5, 7, 7) -> (96, 5*3, 7, 7), frame-major like the input
                w = w.permute(0, 2, 1, 3, 4).reshape(w.shape[0], -1, w.shape[3], w.shape[4])
            else:
                w = w[:, :, 0]
            ws.append(w.contiguous().to(dtype))
            bs.append(b.contiguous().to(dtype))
        _set_folded(self, ws, bs, f, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F = torch.nn.functional
        if x.dim() == 5:  # [B,3,5,H,W] -> [B,15,H,W] frame-major
            x = x.permute(0, 2, 1, 3, 4).reshape(x.shape[0], -1, x.shape[3], x.shape[4])
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        w, b = self.w, self.b
        # ReLU and max-pooling commute exactly: pool first, so the ReLU runs on 4x fewer values
        x = F.relu_(F.max_pool2d(F.conv2d(x, w[0], b[0], stride=2), 3, 2))
        x = F.relu_(F.max_pool2d(F.conv2d(x, w[1], b[1], stride=2, padding=1), 3, 2, padding=1))
        x = F.relu_(F.conv2d(x, w[2], b[2], padding=1))
        x = F.relu_(F.conv2d(x, w[3], b[3], padding=1))
        x = F.relu_(F.max_pool2d(F.conv2d(x, w[4], b[4], padding=1), 3, 2))
        x = F.relu_(F.conv2d(x, w[5], b[5]))
        x = x.reshape(x.shape[0], -1)
        x = F.relu(F.linear(x, self.fc1_w, self.fc1_b))
        return F.linear(x, self.fc2_w, self.fc2_b).float()


class FastAud(nn.Module):
    """``SyncNetV2.forward_aud`` with folded BatchNorm (optionally bfloat16).  Input [B, 1, 13, 20]."""

    def __init__(self, model: SyncNetV2, dtype: torch.dtype = torch.float32):
        super().__init__()
        c, f = model.netcnnaud, model.netfcaud
        self.dtype = dtype
        ws, bs = [], []
        for i in (0, 4, 8, 11, 14, 18):
            w, b = _fold(c[i].weight, c[i].bias, c[i + 1])
            ws.append(w.contiguous().to(dtype))
            bs.append(b.contiguous().to(dtype))
        _set_folded(self, ws, bs, f, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F = torch.nn.functional
        w, b = self.w, self.b
        x = x.to(self.dtype).contiguous()  # NCHW: faster than channels-last for these 13x20 inputs
        x = F.relu(F.conv2d(x, w[0], b[0], padding=1))
        x = F.relu(F.conv2d(x, w[1], b[1], padding=1))
        x = F.max_pool2d(x, (3, 3), (1, 2))
        x = F.relu(F.conv2d(x, w[2], b[2], padding=1))
        x = F.relu(F.conv2d(x, w[3], b[3], padding=1))
        x = F.relu(F.conv2d(x, w[4], b[4], padding=1))
        x = F.max_pool2d(x, (3, 3), (2, 2))
        x = F.relu(F.conv2d(x, w[5], b[5]))
        x = x.reshape(x.shape[0], -1)
        x = F.relu(F.linear(x, self.fc1_w, self.fc1_b))
        return F.linear(x, self.fc2_w, self.fc2_b).float()


def lip_flops() -> int:
    """Floating-point operations (2 per multiply-add) of one lip window, convolutions and FCs."""
    sizes = [  # (out_ch, in_ch * kernel volume, output pixels)
        (96, 3 * 5 * 7 * 7, 109 * 109),
        (256, 96 * 5 * 5, 26 * 26),
        (256, 256 * 9, 13 * 13),
        (256, 256 * 9, 13 * 13),
        (256, 256 * 9, 13 * 13),
        (512, 256 * 36, 1),
        (512, 512, 1),
        (1024, 512, 1),
    ]
    return 2 * sum(o * k * p for o, k, p in sizes)


def audio_flops() -> int:
    sizes = [
        (64, 9, 13 * 20),
        (192, 64 * 9, 13 * 20),
        (384, 192 * 9, 11 * 9),
        (256, 384 * 9, 11 * 9),
        (256, 256 * 9, 11 * 9),
        (512, 256 * 20, 1),
        (512, 512, 1),
        (1024, 512, 1),
    ]
    return 2 * sum(o * k * p for o, k, p in sizes)


__all__ = ["FastAud", "FastLip", "N_PARAMETERS", "SyncNetV2", "WeightsError", "audio_flops", "check_state", "expected_shapes",
           "lip_flops", "load_model", "save_weights"]
