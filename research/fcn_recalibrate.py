"""Post-hoc: run avsync.training.fcn.fit_confidence (what `avsync train` now does at its end) on a model
trained before that step existed, with the run's own options and validation split."""
import sys, torch
import os; sys.path[:0] = [os.path.join(os.path.dirname(__file__), '..', 'src'), os.path.join(os.path.dirname(__file__), '..')]
from dataclasses import fields
from avsync.training.fcn import TrainOptions, load_tracks, fit_confidence
path = sys.argv[1]
ck = torch.load(path, map_location='cpu', weights_only=True)
known = {f.name for f in fields(TrainOptions)}  # options of older runs (model, fps_augment) are gone
opts = TrainOptions(**{k: v for k, v in ck['extra']['options'].items() if k in known})
from avsync.nn.fcn import load
m = load(path)
tr, va = load_tracks(opts, validation_only=True)
cal = fit_confidence(m, va, opts)
ck['extra']['calibration'] = cal
torch.save(ck, path + '.tmp'); import os; os.replace(path + '.tmp', path)
print(path, len(tr), len(va), cal)
