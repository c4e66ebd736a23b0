"""``avsync train --model M``: one command for every learned model, its options in three groups.

- segment classifiers (threshold, mlp, mlp-rich, transformer, transformer-ensemble) of the
  AVE-style pipeline: ``--metadata CSV --features DIR`` from ``avsync dataset synth`` +
  ``avsync features``;
- offset models trained self-supervised on folders of in-sync clips (``--data``): fcn, the
  shipped FCN-SyncNet, and the transfer-learning architectures vggish, wav2vec2, r3d (seed 003,
  for users with their own pretrained encoder weights: ``--pretrained``, ``--freeze-encoder``).

An option of another family than the model's is a usage error.  torch is imported only when a
model is trained."""
from __future__ import annotations

import argparse
import sys
import time

from ..errors import UsageError
from .main import _err, _want_progress

#: the segment classifiers (trained by avsync.training.classifiers.TRAINERS)
CLASSIFIERS = {
    "threshold": "sync_score = |V - A| on normalised energies, theta chosen on val",
    "mlp": "the seed's Linear(2-32-16-2) on [V, A] (baseline)",
    "mlp-rich": "the same MLP shape on the richer per-second features",
    "transformer": "lightweight transformer over per-second feature vectors",
    "transformer-ensemble": "five transformers from consecutive seeds, probabilities averaged",
}
#: FCN-SyncNet (avsync.training.fcn)
FCN = {"fcn": "FCN-SyncNet: per-frame classification over offsets (ships)"}
#: the transfer-learning architectures (avsync.training.transfer)
TRANSFER = {
    "vggish": "research: VGGish-style log-mel audio encoder + FCN landmark encoder (takes --pretrained)",
    "wav2vec2": "research: wav2vec2-style raw-waveform audio encoder + FCN landmark encoder (takes --pretrained)",
    "r3d": "research: 3D-ResNet mouth-crop video encoder + FCN log-mel encoder (takes --pretrained)",
}
MODELS = {**CLASSIFIERS, **FCN, **TRANSFER}

#: option dest -> the models it applies to (options not listed apply to every model)
_CLASSIFIER_OPTS = ("metadata", "features", "max_epochs", "patience", "drop_features")
_OFFSET_OPTS = ("data", "cache", "exclude", "steps", "batch", "max_offset", "channels", "lr", "threads")
_FCN_OPTS = ("workers", "resume", "device")
_TRANSFER_OPTS = ("pretrained", "freeze_encoder", "encoder", "transfer_crop")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a learned model (segment classifiers; fcn offset model)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a learned model (--model NAME); each family reads only its own options.\n\n"
                    + "\n".join(f"  {k:<22}{v}" for k, v in MODELS.items()))
    p.add_argument("--model", required=True, metavar="NAME", help=" | ".join(MODELS))
    p.add_argument("--out", required=True, metavar="PATH", help="model file to write (.pt)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data order (default 0)")
    pg = p.add_mutually_exclusive_group()
    pg.add_argument("--progress", action="store_true", help="progress on stderr even when not a TTY "
                    "(the offset models always print it unless --no-progress)")
    pg.add_argument("--no-progress", action="store_true", help="no progress output")

    g = p.add_argument_group(f"segment classifiers ({' | '.join(CLASSIFIERS)}): AVE-style samples from "
                             "`avsync dataset synth` + `avsync features`")
    g.add_argument("--metadata", action="append", metavar="CSV",
                   help="synth metadata CSV (repeatable: several sample sets, each with its --features)")
    g.add_argument("--features", action="append", metavar="DIR",
                   help="features folder of the --metadata at the same position")
    g.add_argument("--max-epochs", type=int, default=300, help="most training epochs (default 300)")
    g.add_argument("--patience", type=int, default=30, help="stop after this many epochs without a better validation score (default 30)")
    g.add_argument("--drop-features", action="append", metavar="PREFIX",
                   help="mlp-rich/transformer*: leave out the per-second features whose names start with PREFIX "
                        "(repeatable; e.g. ev_ for the events estimator's cues, to measure what they add)")

    g = p.add_argument_group(f"offset models ({' | '.join({**FCN, **TRANSFER})}): self-supervised on in-sync clips")
    g.add_argument("--data", nargs="+", metavar="DIR", help="folders (or files) of in-sync video clips")
    g.add_argument("--cache", metavar="DIR", help="cache extracted features here (npz per clip)")
    g.add_argument("--exclude", nargs="*", default=[], metavar="S",
                   help="leave out clips whose path contains S or whose speaker group is S")
    g.add_argument("--steps", type=int, default=1200, help="training steps (default 1200, the shipped model's)")
    g.add_argument("--batch", type=int, default=32, help="windows per training step (default 32)")
    g.add_argument("--max-offset", type=int, default=20, metavar="K", help="offsets -K..K frames (default 20)")
    g.add_argument("--channels", type=int, default=48, help="feature channels C of the encoders (default 48)")
    g.add_argument("--lr", type=float, default=2e-3, help="learning rate (fcn: the one-cycle peak; default 0.002)")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")

    g = p.add_argument_group("fcn only")
    g.add_argument("--workers", type=int, default=1, help="processes extracting features (default 1)")
    g.add_argument("--resume", action="store_true", help="continue from MODEL.pt.ckpt when present")
    g.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when torch sees one, else the CPU; default), cpu, cuda, cuda:N")

    g = p.add_argument_group(f"transfer-learning architectures only ({' | '.join(TRANSFER)})")
    g.add_argument("--pretrained", metavar="PATH",
                   help="encoder weights to start from (a local file: avsync-encoder/1, a model from this "
                        "command, or a bare state dict with the encoder's keys); strict key and shape check")
    g.add_argument("--freeze-encoder", action="store_true", help="keep the pretrained encoder fixed")
    g.add_argument("--encoder", action="append", default=[], metavar="KEY=VALUE",
                   help="encoder size (repeatable): vggish n_mels, width; wav2vec2 conv_dim, d_model, layers, "
                        "heads, ff; r3d width, blocks (e.g. blocks=2,2,2,2)")
    g.add_argument("--crop", dest="transfer_crop", default="auto", choices=("auto", "none"),
                   help="r3d: auto = dlib mouth crops; none = the clips are already mouth crops")
    p.set_defaults(func=lambda args: run(args, p))


def _check_family(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """An option given (not at its default) that the chosen model does not read is a usage error."""
    if args.model in CLASSIFIERS:
        foreign = _OFFSET_OPTS + _FCN_OPTS + _TRANSFER_OPTS
    elif args.model in FCN:
        foreign = _CLASSIFIER_OPTS + _TRANSFER_OPTS
    else:
        foreign = _CLASSIFIER_OPTS + _FCN_OPTS
    given = [d for d in foreign if getattr(args, d) != parser.get_default(d)]
    if given:
        names = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
        raise UsageError(f"{', '.join(names[d] for d in given)} {'does' if len(given) == 1 else 'do'} not apply "
                         f"to --model {args.model}")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.model not in MODELS:
        raise UsageError(f"unknown model {args.model!r}; choose from {', '.join(sorted(MODELS))}")
    _check_family(args, parser)
    if args.model in CLASSIFIERS:
        return _train_classifier(args)
    _check_offset_args(args)
    return _train_fcn(args) if args.model in FCN else _train_transfer(args)


# -- segment classifiers ---------------------------------------------------------------
def _train_classifier(args: argparse.Namespace) -> int:
    if not args.metadata or not args.features:
        raise UsageError(f"--model {args.model} needs --metadata CSV and --features DIR")
    if len(args.metadata) != len(args.features):
        raise UsageError("give one --features DIR for every --metadata CSV")
    from ..classify.evaluate import load_samples
    from ..datasets.util import count_progress
    from ..training.classifiers import TRAINERS, TrainOptions, save_model

    samples = []
    for meta, feats in zip(args.metadata, args.features):
        got, missing = load_samples(meta, feats, ("train", "val"), missing_ok=False)
        samples += got
        if missing:
            _err(f"{len(missing)} samples of {meta} have no feature file in {feats} (skipped)")
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "val"]
    columns = None
    if getattr(args, "drop_features", None):
        from ..classify.vectors import RICH_NAMES

        if args.model in ("threshold", "mlp"):
            raise UsageError(f"--drop-features: --model {args.model} reads only [V, A]")
        columns = tuple(n for n in RICH_NAMES if not any(n.startswith(p) for p in args.drop_features))
        if len(columns) == len(RICH_NAMES):
            raise UsageError(f"--drop-features {' '.join(args.drop_features)}: no feature name starts with that")
        if not columns:
            raise UsageError("--drop-features leaves no feature")
    opt = TrainOptions(seed=args.seed, max_epochs=args.max_epochs, patience=args.patience, columns=columns)
    show = _want_progress(args)
    bundle = TRAINERS[args.model](train, val, opt, count_progress(f"train {args.model} epoch", show))
    if show:
        sys.stderr.write("\n")
    save_model(bundle, args.out)
    extra = ", ".join(f"{k} {bundle[k]:.4g}" for k in ("threshold", "val_f1", "val_loss", "epochs") if k in bundle)
    print(f"trained {args.model} on {len(train)} samples ({sum(len(s.times) for s in train)} segments), "
          f"validated on {len(val)}: {extra} -> {args.out}")
    return 0


# -- offset models ---------------------------------------------------------------------
def _check_offset_args(args: argparse.Namespace) -> None:
    """What every self-supervised model needs: torch, --data, positive sizes."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("avsync train needs torch: pip install 'avsync[fcn]'") from None
    if not args.data:
        raise UsageError(f"--model {args.model} needs --data DIR... (folders of in-sync clips)")
    if args.steps < 1 or args.batch < 1 or args.max_offset < 1:
        raise UsageError("--steps, --batch and --max-offset must be >= 1")


def _stderr_progress(args: argparse.Namespace, every: int):
    """A training progress callback printing to stderr (feature extraction every ``every`` clips);
    None with --no-progress."""
    if args.no_progress:
        return None
    t = time.perf_counter()

    def progress(stage, done, total):
        name, _, msg = stage.partition(" ")
        if name == "features" and not (done == total or done % every == 0):
            return
        print(f"train: {name} {int(done)}/{int(total)} {msg} [{time.perf_counter() - t:.0f} s]",
              file=sys.stderr, flush=True)

    return progress


def _train_fcn(args: argparse.Namespace) -> int:
    from ..training.fcn import TrainOptions, train

    opts = TrainOptions(data=args.data, out=args.out, cache_dir=args.cache, steps=args.steps, batch=args.batch,
                        max_offset=args.max_offset, channels=args.channels, lr=args.lr, seed=args.seed,
                        threads=args.threads, resume=args.resume, exclude=list(args.exclude),
                        workers=args.workers, device=args.device)
    r = train(opts, _stderr_progress(args, every=100))
    acc = "-" if r.val_acc_1f is None else f"{100 * r.val_acc_1f:.1f} %"
    nul = "-" if r.val_null_conf is None else f"{100 * r.val_null_conf:.1f} %"
    print(f"wrote {r.out}: {args.model}, {r.steps} steps in {r.seconds:.0f} s, {r.n_train} training clips, "
          f"{r.n_val} validation clips (held-out speakers): accuracy within 1 frame {acc}, "
          f"null confident {nul}")
    return 0


def _encoder_options(items: list[str]) -> dict:
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


def _train_transfer(args: argparse.Namespace) -> int:
    from ..training.transfer import TransferOptions, train

    opts = TransferOptions(data=args.data, out=args.out, arch=args.model, pretrained=args.pretrained,
                           freeze_encoder=args.freeze_encoder, encoder=_encoder_options(args.encoder),
                           crop=args.transfer_crop, cache_dir=args.cache, exclude=list(args.exclude),
                           steps=args.steps, batch=args.batch, max_offset=args.max_offset, channels=args.channels,
                           lr=args.lr, seed=args.seed, threads=args.threads)
    r = train(opts, _stderr_progress(args, every=20))
    acc = "-" if r.val_acc_1f is None else f"{100 * r.val_acc_1f:.1f} %"
    pre = "" if r.pretrained is None else f", pretrained encoder {r.pretrained['parameters']} parameters"
    print(f"wrote {r.out}: {args.model}, {r.steps} steps in {r.seconds:.0f} s, {r.n_train} training clips, "
          f"{r.n_val} validation clips: accuracy within 1 frame {acc}, final loss {r.loss:.3f}{pre}")
    return 0
