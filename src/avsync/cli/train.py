"""``avsync train --model M``: one command for every learned model.

The segment classifiers of the AVE-style pipeline (threshold, mlp, mlp-rich, transformer:
``--metadata`` / ``--features``) and the offset models trained self-supervised on in-sync
clips (fcn; the transfer-learning architectures vggish, wav2vec2, r3d: ``--data``).
Each family's options live with its command module; torch is imported only when a model is trained."""
from __future__ import annotations

import argparse

from . import train_fcn, train_transfer
from ..errors import UsageError

#: the segment classifiers (trained by avsync.training.classifiers.TRAINERS)
CLASSIFIERS = {
    "threshold": "sync_score = |V - A| on normalised energies, theta chosen on val",
    "mlp": "the seed's Linear(2-32-16-2) on [V, A] (baseline)",
    "mlp-rich": "the same MLP shape on the richer per-second features",
    "transformer": "lightweight transformer over per-second feature vectors",
    "transformer-ensemble": "five transformers from consecutive seeds, probabilities averaged",
}


def register(subparsers) -> None:
    models = {**CLASSIFIERS, **train_fcn.MODELS, **train_transfer.MODELS}
    p = subparsers.add_parser(
        "train", help="train a learned model (segment classifiers; fcn offset model)",
        description="Train a learned model.  " + "; ".join(f"{k}: {v}" for k, v in models.items()))
    p.add_argument("--model", required=True, metavar="NAME", help=" | ".join(sorted(models)))
    p.add_argument("--out", required=True, metavar="PATH", help="model file to write (.pt)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("segment classifiers (AVE-style samples from `avsync dataset synth` + `avsync features`)")
    g.add_argument("--metadata", action="append", metavar="CSV",
                   help="synth metadata CSV (repeatable: several sample sets, each with its --features)")
    g.add_argument("--features", action="append", metavar="DIR",
                   help="features folder of the --metadata at the same position")
    g.add_argument("--max-epochs", type=int, default=300)
    g.add_argument("--patience", type=int, default=30)
    pg = p.add_mutually_exclusive_group()
    pg.add_argument("--progress", action="store_true", help="progress on stderr even when not a TTY")
    pg.add_argument("--no-progress", action="store_true", help="no progress output")
    train_fcn.add_arguments(p)
    train_transfer.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    learned = {**train_fcn.MODELS, **train_transfer.MODELS}
    if args.model not in CLASSIFIERS and args.model not in learned:
        names = ", ".join(sorted({**CLASSIFIERS, **learned}))
        raise UsageError(f"unknown model {args.model!r}; choose from {names}")
    if args.model not in train_transfer.MODELS and (args.pretrained or args.freeze_encoder or args.encoder):
        raise UsageError(f"--pretrained, --freeze-encoder and --encoder are for --model "
                         f"{'|'.join(train_transfer.MODELS)}, not {args.model}")
    if args.model in train_fcn.MODELS:
        return train_fcn.run(args)
    if args.model in train_transfer.MODELS:
        return train_transfer.run(args)
    if not args.metadata or not args.features:
        raise UsageError(f"--model {args.model} needs --metadata CSV and --features DIR")
    from .pipeline import cmd_train

    return cmd_train(args)
