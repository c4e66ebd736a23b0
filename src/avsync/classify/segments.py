"""``avsync classify``: label every 1-s segment of a file (contract schema ``avsync.segments/1``)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources

from ..errors import UsageError
from .decision import OffsetRule

SCHEMA = "avsync.segments/1"
DEFAULT_MODEL = "classifier_transformer.pt"


@dataclass
class Segment:
    start_s: float
    end_s: float
    label: str
    p_sync: float
    fault: str

    def to_dict(self) -> dict:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "label": self.label,
                "p_sync": round(self.p_sync, 4), "fault": self.fault}


@dataclass
class SegmentReport:
    path: str
    model: str
    segments: list[Segment]
    offset_rule: OffsetRule | None = None

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "media": {"path": self.path}, "model": self.model,
                "offset_rule": None if self.offset_rule is None else self.offset_rule.to_dict(),
                "segments": [s.to_dict() for s in self.segments]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def to_text(self) -> str:
        rule = "" if self.offset_rule is None else f", offset rule {self.offset_rule.tolerance_ms:g} ms"
        lines = [f"{self.path}  (model: {self.model}{rule})"]
        for s in self.segments:
            extra = "" if s.label == "sync" else f"  fault: {s.fault}"
            lines.append(f"  {s.start_s:7.2f}-{s.end_s:7.2f} s  {s.label:<6}  p_sync {s.p_sync:.2f}{extra}")
        n = sum(s.label == "desync" for s in self.segments)
        lines.append(f"  {n} of {len(self.segments)} segments out of sync")
        return "\n".join(lines)


def default_model_path() -> str:
    return str(resources.files("avsync") / "data" / DEFAULT_MODEL)


#: the decision layer ``classify`` applies unless told otherwise (see :mod:`avsync.classify.decision`;
#: its thresholds were chosen on the benchmark's val split and the val-only composite set)
DEFAULT_OFFSET_RULE = OffsetRule()


def classify(path: str, model: str | None = None, progress=None,
             offset_rule: OffsetRule | None = DEFAULT_OFFSET_RULE) -> SegmentReport:
    """Label every 1-s segment of ``path``.  ``offset_rule``: the explicit offset rule applied on
    top of the model (``None``: the model's output alone)."""
    from . import vectors
    from .decision import apply
    from .features import extract
    from ..nn.classifiers import FAULTS, load_model

    mpath = model or default_model_path()
    if model is None and not os.path.isfile(mpath):
        raise UsageError(f"{mpath}: the default model is missing from this installation; give --model")
    pred = load_model(mpath, vectors.RICH_NAMES)
    if not pred.predicts_faults:
        raise UsageError(f"{mpath}: a {pred.name!r} model tells only sync from desync; "
                         "classify needs a model that names the fault (train --model transformer)")
    arr = extract(path, progress)
    X = vectors.rich(arr) if pred.inputs == "rich" else vectors.va(arr)
    p_desync, faults = pred.predict(X)
    if pred.inputs == "rich":
        p_desync, faults = apply(p_desync, faults, X, offset_rule)
    else:
        offset_rule = None
    t0 = float(arr["t_start"])
    t_end = float(arr["t_end"])
    segs = []
    for i, s in enumerate(arr["seg_t"]):
        pd = float(p_desync[i])
        desync = pd >= 0.5
        fault = "none"
        if desync:
            fault = FAULTS[1 + int(faults[i, 1:].argmax())]
        segs.append(Segment(float(s) - t0, min(float(s) + 1.0, t_end) - t0, "desync" if desync else "sync",
                            1.0 - pd, fault))
    return SegmentReport(path, os.path.basename(mpath), segs, offset_rule)
