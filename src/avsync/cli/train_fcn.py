"""``avsync train --model fcn``: train FCN-SyncNet on folders of in-sync talking-face clips.
torch is imported only when it runs."""
from __future__ import annotations

import argparse
import sys
import time

#: models this module trains (the lead merges other helpers' model dicts into one command)
MODELS = {
    "fcn": "FCN-SyncNet: per-frame classification over offsets (ships)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``avsync train`` options of the fcn model (see :mod:`avsync.cli.train`)."""
    g = p.add_argument_group("fcn (self-supervised on in-sync clips)")
    g.add_argument("--data", nargs="+", metavar="DIR", help="folders (or files) of in-sync video clips")
    g.add_argument("--cache", metavar="DIR", help="cache extracted features here (npz per clip)")
    g.add_argument("--exclude", nargs="*", default=[], metavar="S",
                   help="leave out clips whose path contains S or whose speaker group is S")
    g.add_argument("--steps", type=int, default=1200, help="training steps (default 1200, the shipped model's)")
    g.add_argument("--batch", type=int, default=32)
    g.add_argument("--max-offset", type=int, default=20, metavar="K", help="offsets -K..K frames (default 20)")
    g.add_argument("--channels", type=int, default=48)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    g.add_argument("--workers", type=int, default=1, help="processes extracting features (default 1)")
    g.add_argument("--resume", action="store_true", help="continue from MODEL.pt.ckpt when present")
    g.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when torch sees one, else the CPU; default), cpu, cuda, cuda:N")


def check_args(args: argparse.Namespace) -> None:
    """What every self-supervised model command needs: torch, --data, positive sizes."""
    from ..errors import UsageError

    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("avsync train needs torch: pip install 'avsync[fcn]'") from None
    if not args.data:
        raise UsageError(f"--model {args.model} needs --data DIR... (folders of in-sync clips)")
    if args.steps < 1 or args.batch < 1 or args.max_offset < 1:
        raise UsageError("--steps, --batch and --max-offset must be >= 1")


def stderr_progress(every: int):
    """A training progress callback printing to stderr (feature extraction every ``every`` clips)."""
    t = time.perf_counter()

    def progress(stage, done, total, msg):
        if stage == "features" and not (done == total or done % every == 0):
            return
        print(f"train: {stage} {int(done)}/{int(total)} {msg} [{time.perf_counter() - t:.0f} s]",
              file=sys.stderr, flush=True)

    return progress


def run(args: argparse.Namespace) -> int:
    check_args(args)
    from ..training.fcn import TrainOptions, train

    opts = TrainOptions(data=args.data, out=args.out, cache_dir=args.cache,
                        steps=args.steps, batch=args.batch, max_offset=args.max_offset, channels=args.channels,
                        lr=args.lr, seed=args.seed, threads=args.threads, resume=args.resume,
                        exclude=list(args.exclude), workers=args.workers, device=args.device)
    r = train(opts, stderr_progress(every=100))
    acc = "-" if r.val_acc_1f is None else f"{100 * r.val_acc_1f:.1f} %"
    nul = "-" if r.val_null_conf is None else f"{100 * r.val_null_conf:.1f} %"
    print(f"wrote {r.out}: {args.model}, {r.steps} steps in {r.seconds:.0f} s, {r.n_train} training clips, "
          f"{r.n_val} validation clips (held-out speakers): accuracy within 1 frame {acc}, "
          f"null confident {nul}")
    return 0
