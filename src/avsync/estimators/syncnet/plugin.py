"""``syncnet``: the SyncNet v2 network with the public weights (``--weights`` or
``AVSYNC_SYNCNET_WEIGHTS``), reproducing the reference's offset, LSE-D and LSE-C.

This module stays light: torch is imported only when a file is scored."""
from __future__ import annotations

from ..base import Estimate, Estimator, register


@register("syncnet")
class SyncNetEstimator(Estimator):
    """Whole-file method: decodes colour face crops at 25 fps itself (see :mod:`avsync.estimators.syncnet.plugin.run`)."""

    cue = "lips"
    faces = True
    whole_file = True

    def estimate(self, features, t0=None, t1=None) -> Estimate:
        return Estimate.abstain("syncnet works on whole files (use avsync.detect)", cue="lips")

    def detect_file(self, path, options, progress=None):
        from .run import SyncNetOptions, resolve_weights, run_file, to_report

        opts = SyncNetOptions(weights=resolve_weights(options.weights), crop=getattr(options, "crop", "auto"),
                              precision=getattr(options, "precision", "exact"),
                              debug_dir=getattr(options, "debug_dir", None))
        res = run_file(path, opts, progress)
        return to_report(res, options.tolerance, options.window_s, options.hop_s, options.timeline)
