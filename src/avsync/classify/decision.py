"""An explicit offset rule on top of a segment classifier's output.

The learned classifiers see the core estimator's per-second offsets as a few of their ~80
inputs, and on the training talking heads those cues are noisy, so a model may not trust
a clearly shifted section of an otherwise in-sync clip.  This layer states the rule
directly, with its thresholds in the open (``OffsetRule``):

* **local**: a second is out of sync when the core estimator's offset in BOTH windows
  around it (3 s and 1.5 s, see :mod:`avsync.classify.features`) differs from the file's
  own offset by more than ``tolerance_ms`` (in the same direction if ``same_direction``),
  and the less confident of the two windows has a confidence of at least
  ``min_local_confidence``.  The file's own
  offset comes from the 3-s windows whose confidence is at least ``reference_confidence``:
  the median of the group of them that agrees within the tolerance and holds a
  confidence-weighted majority (:func:`reference_offset`); with fewer than
  ``min_reference`` such windows, or no majority, the local rule does not apply (there is
  no trustworthy reference to differ from).
* **whole file**: when the core estimate over the whole file is out by more than
  ``tolerance_ms`` with a confidence of at least ``min_whole_confidence``, every second
  that has audio is out of sync; when the windows give a file offset (above), it must be
  out by more than ``tolerance_ms`` as well (a shifted section can win the whole-file peak
  while most of the file is in sync).

Both rules can only turn ``sync`` into ``desync`` (they never clear a fault the model
found).  A flagged second gets ``p_desync = max(p_desync, 0.5 + 0.5 * c)`` with ``c`` the
confidence behind the flag, and the fault ``time_shift`` unless the model already named
one.  The defaults were chosen on the benchmark's val split and the val-only composite set (see
the README).  The rule works on the per-second vectors of :func:`avsync.classify.vectors.rich`
(offsets in seconds; silent seconds carry no core cues there, so the local rule never
fires on them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OffsetRule:
    #: a local offset this far from the file's own offset (ms) is a shift
    tolerance_ms: float = 60.0
    #: smaller confidence of the 3-s and 1.5-s windows needed for a local flag
    min_local_confidence: float = 0.0
    #: a 3-s window counts towards the file's own offset with at least this confidence
    #: (the core's own bar for judging an offset, ``avsync.timeline.MIN_CONFIDENCE``)
    reference_confidence: float = 0.5
    #: at least this many such windows, or the local rule stays off
    min_reference: int = 2
    #: the whole-file estimate flags every second when out by > tolerance with this confidence
    min_whole_confidence: float = 0.5
    #: the two windows must also differ from the file's offset in the same direction
    same_direction: bool = False
    local: bool = True
    whole: bool = True

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RuleCues:
    """Per-second inputs of the rule (offsets in ms; ``ok`` False where a window had none)."""
    offset_ms: np.ndarray
    conf: np.ndarray
    ok: np.ndarray
    short_offset_ms: np.ndarray
    short_conf: np.ndarray
    short_ok: np.ndarray
    whole_abs_ms: float
    whole_conf: float
    has_audio: np.ndarray  # per second: not silent

    @classmethod
    def from_rich(cls, X: np.ndarray) -> "RuleCues":
        from .vectors import RICH_NAMES

        c = {n: i for i, n in enumerate(RICH_NAMES)}
        X = np.asarray(X, np.float64)
        ok = X[:, c["core_ok"]] > 0
        sok = X[:, c["short_ok"]] > 0
        # the whole-file cues are repeated on every non-silent row (zeros on silent ones)
        wa = X[:, c["core_whole_abs"]]
        wc = X[:, c["core_whole_conf"]]
        k = int(np.argmax(wc)) if len(X) else 0
        silent = (X[:, c["zero_frac"]] > 0.5) | (X[:, c["level_db"]] < -70.0) | (X[:, c["has_audio"]] <= 0)
        return cls(X[:, c["core_offset"]] * 1000.0, X[:, c["core_conf"]], ok,
                   X[:, c["short_offset"]] * 1000.0, X[:, c["short_conf"]], sok,
                   float(wa[k] * 1000.0) if len(X) else 0.0, float(wc[k]) if len(X) else 0.0, ~silent)


def reference_offset(cues: RuleCues, rule: OffsetRule) -> float | None:
    """The file's own offset, or None when there is no trustworthy one.

    Candidates are the 3-s windows with confidence >= ``reference_confidence`` (at least
    ``min_reference`` of them).  The reference is the median of the largest group that
    agrees within ``tolerance_ms`` of one of them (by summed confidence), and that group
    must hold more than half of the candidates' summed confidence: a plain median of two
    clusters (clean and shifted windows) would fall between them and make every second
    look shifted."""
    sel = cues.ok & (cues.conf >= rule.reference_confidence)
    if int(sel.sum()) < max(1, rule.min_reference):
        return None
    off, w = cues.offset_ms[sel], cues.conf[sel]
    near = np.abs(off[:, None] - off[None, :]) <= rule.tolerance_ms
    support = near @ w
    j = int(np.argmax(support))
    if support[j] <= 0.5 * float(w.sum()):
        return None
    return float(np.median(off[near[j]]))


def flags(cues: RuleCues, rule: OffsetRule) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, confidence behind the flag) per second."""
    S = cues.offset_ms.size
    out = np.zeros(S, bool)
    strength = np.zeros(S)
    ref = reference_offset(cues, rule)
    # a whole-file estimate can be captured by a shifted section (its peak is the section's
    # lag); when the confident windows agree on the file's own offset, the whole-file rule
    # needs that offset out of tolerance too
    whole_out = cues.whole_abs_ms > rule.tolerance_ms and (ref is None or abs(ref) > rule.tolerance_ms)
    if rule.whole and whole_out and cues.whole_conf >= rule.min_whole_confidence:
        out |= cues.has_audio
        strength[cues.has_audio] = cues.whole_conf
    if not rule.local:
        ref = None
    if ref is not None:
        d3 = cues.offset_ms - ref
        ds = cues.short_offset_ms - ref
        c = np.minimum(cues.conf, cues.short_conf)
        agree = (np.sign(d3) == np.sign(ds)) if rule.same_direction else np.ones(S, bool)
        loc = (cues.ok & cues.short_ok & cues.has_audio & agree
               & (np.minimum(np.abs(d3), np.abs(ds)) > rule.tolerance_ms) & (c >= rule.min_local_confidence))
        strength = np.where(loc, np.maximum(strength, c), strength)
        out |= loc
    return out, strength


def apply(p_desync: np.ndarray, faults: np.ndarray | None, X: np.ndarray,
          rule: OffsetRule | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The classifier's (p_desync, fault scores) with the rule applied; ``rule=None``: unchanged.
    A flagged second that the model called sync gets the fault ``time_shift`` (index 1)."""
    if rule is None or len(X) == 0:
        return p_desync, faults
    f, c = flags(RuleCues.from_rich(X), rule)
    p = np.asarray(p_desync, np.float64).copy()
    was_sync = p < 0.5
    p[f] = np.maximum(p[f], 0.5 + 0.5 * np.clip(c[f], 0.0, 1.0))
    if faults is not None:
        faults = np.asarray(faults, np.float64).copy()
        new = f & was_sync
        if new.any():
            faults[new] = 0.0
            faults[new, 1] = 1.0
    return p, faults


class RulePredictor:
    """A predictor (``.predict``/``.inputs``/``.name``) with the rule applied on top, for ``evaluate``."""

    def __init__(self, pred, rule: OffsetRule | None):
        self.pred, self.rule = pred, rule
        self.inputs = pred.inputs
        self.name = pred.name + ("" if rule is None else "+offset-rule")

    def predict(self, X: np.ndarray):
        p, f = self.pred.predict(X)
        return apply(p, f, X, self.rule)
