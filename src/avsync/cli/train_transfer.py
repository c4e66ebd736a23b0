"""``avsync train --model vggish|wav2vec2|r3d``: the transfer-learning architectures of seed 003
on FCN-SyncNet's offset head, for users with their own pretrained encoder weights
(``--pretrained PATH``, local file, strict key check; ``--freeze-encoder``).  Shares ``--data``,
``--cache``, ``--exclude``, ``--steps``, ``--batch``, ``--max-offset``, ``--channels``, ``--lr`` and
``--threads`` with fcn.  torch is imported only when it runs."""
from __future__ import annotations

import argparse

MODELS = {
    "vggish": "research: VGGish-style log-mel audio encoder + FCN landmark encoder (takes --pretrained)",
    "wav2vec2": "research: wav2vec2-style raw-waveform audio encoder + FCN landmark encoder (takes --pretrained)",
    "r3d": "research: 3D-ResNet mouth-crop video encoder + FCN log-mel encoder (takes --pretrained)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vggish / wav2vec2 / r3d (transfer-learning architectures; also use the fcn options)")
    g.add_argument("--pretrained", metavar="PATH",
                   help="encoder weights to start from (a local file: avsync-encoder/1, a model from this "
                        "command, or a bare state dict with the encoder's keys); strict key and shape check")
    g.add_argument("--freeze-encoder", action="store_true", help="keep the pretrained encoder fixed")
    g.add_argument("--encoder", action="append", default=[], metavar="KEY=VALUE",
                   help="encoder size (repeatable): vggish n_mels, width; wav2vec2 conv_dim, d_model, layers, "
                        "heads, ff; r3d width, blocks (e.g. blocks=2,2,2,2)")
    g.add_argument("--crop", dest="transfer_crop", default="auto", choices=("auto", "none"),
                   help="r3d: auto = dlib mouth crops; none = the clips are already mouth crops")


def _encoder_options(items: list[str]) -> dict:
    from ..errors import UsageError

    out: dict = {}
    for it in items:
        k, sep, v = it.partition("=")
        k = k.strip().replace("-", "_")
        if not sep or not k or not v.strip():
            raise UsageError(f"--encoder {it!r}: expected KEY=VALUE")
        try:
            out[k] = [int(x) for x in v.split(",")] if "," in v or k == "blocks" else int(v)
        except ValueError:
            raise UsageError(f"--encoder {it!r}: the value must be an integer (or integers a,b,c)") from None
    return out


def run(args: argparse.Namespace) -> int:
    from .train_fcn import check_args, stderr_progress

    check_args(args)
    from ..training.transfer import TransferOptions, train

    opts = TransferOptions(data=args.data, out=args.out, arch=args.model, pretrained=args.pretrained,
                           freeze_encoder=args.freeze_encoder, encoder=_encoder_options(args.encoder),
                           crop=args.transfer_crop, cache_dir=args.cache, exclude=list(args.exclude),
                           steps=args.steps, batch=args.batch, max_offset=args.max_offset, channels=args.channels,
                           lr=args.lr, seed=args.seed, threads=args.threads)
    r = train(opts, None if args.no_progress else stderr_progress(every=20))
    acc = "-" if r.val_acc_1f is None else f"{100 * r.val_acc_1f:.1f} %"
    pre = "" if r.pretrained is None else f", pretrained encoder {r.pretrained['parameters']} parameters"
    print(f"wrote {r.out}: {args.model}, {r.steps} steps in {r.seconds:.0f} s, {r.n_train} training clips, "
          f"{r.n_val} validation clips: accuracy within 1 frame {acc}, final loss {r.loss:.3f}{pre}")
    return 0
