"""``avsync export-onnx --weights MODEL.pt --out MODEL.onnx``: FCN-SyncNet to one self-contained
ONNX file (dynamic batch and time axes; K, calibration and clip scale in its metadata) for
``avsync detect --method fcn --weights MODEL.onnx`` on ONNX Runtime, without torch.
torch and onnx are imported only when it runs."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-onnx", help="export an FCN-SyncNet .pt to ONNX (fast CPU inference, no torch at run time)",
        description="Export an FCN-SyncNet weights file (avsync train --model fcn) to a self-contained ONNX "
                    "model: dynamic batch and time axes, the same outputs as the torch model, the confidence "
                    "calibration and max offset stored as ONNX metadata.  Needs torch and the onnx extra; "
                    "running the .onnx file needs only onnxruntime.")
    p.add_argument("--weights", required=True, metavar="MODEL.pt", help="FCN-SyncNet weights to export")
    p.add_argument("--out", required=True, metavar="MODEL.onnx", help="ONNX file to write (temp name, then renamed)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the check run (ONNX Runtime vs torch on a random 10-s input)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..nn.fcn_onnx import export_fcn_onnx

    if not args.out.lower().endswith(".onnx"):
        raise UsageError(f"{args.out}: the output name must end in .onnx (detect picks ONNX Runtime by the suffix)")
    r = export_fcn_onnx(args.weights, args.out, opset=args.opset, verify=not args.no_verify)
    dev = "" if r.max_deviation is None else f"; max |onnx - torch| of the frame logits {r.max_deviation:.2e}"
    print(f"wrote {r.out} ({r.size_bytes / 1024:.0f} KB, opset {r.opset}, offsets +-{r.max_offset} frames{dev})")
    return 0
