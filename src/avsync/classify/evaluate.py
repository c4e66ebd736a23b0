"""Loading a featured dataset, and the evaluation metrics of the segment classifiers.

Metrics are per 1-s segment, with "desync" as the positive class: accuracy,
precision, recall, F1, ROC-AUC (rank statistic, ties counted half), the 2x2
confusion matrix, recall per fault kind, and recall of time shifts by size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..nn.classifiers import FAULTS

SHIFT_BINS_MS = ((100, 200), (200, 500), (500, 1000), (1000, 1e9))
#: the metadata's MisalignmentType -> index into FAULTS
KIND_INDEX = {"None": 0, "time_shift": 1, "noise": 2, "mute": 3, "distort": 4}


@dataclass
class Sample:
    """One featured sample of a synth metadata CSV: its per-second inputs and labels."""

    sample_id: str
    source: str
    split: str
    desync: int  # 1: Negative (out of sync), 0: Positive
    kind: int  # index into FAULTS
    shift_ms: float | None
    times: np.ndarray  # (S,) segment starts, seconds from the file start
    va: np.ndarray  # (S, 2)
    rich: np.ndarray  # (S, D)
    #: per-segment fault index (composite samples); None: every segment is ``kind``
    seg_kind: np.ndarray | None = None

    def inputs(self, kind: str) -> np.ndarray:
        return self.va if kind == "va" else self.rich

    def kinds(self) -> np.ndarray:
        """(S,) fault index of every segment."""
        if self.seg_kind is not None:
            return self.seg_kind
        return np.full(len(self.times), self.kind, np.int64)

    def desyncs(self) -> np.ndarray:
        return (self.kinds() > 0).astype(np.int64)


def load_samples(metadata: str, features_dir: str, splits: tuple[str, ...] | None = None,
                 missing_ok: bool = True) -> tuple[list[Sample], list[str]]:
    """Samples of the metadata CSV whose feature file exists; also the ids without one."""
    from ..datasets.synth import read_metadata
    from . import vectors
    from .features import feature_path, load

    if not os.path.isdir(features_dir):
        raise UsageError(f"{features_dir}: features folder not found (run 'avsync features' first)")
    out, missing = [], []
    for r in read_metadata(metadata):
        if splits is not None and r.get("split", "") not in splits:
            continue
        sid = r["sample_id"]
        path = next((p for p in (feature_path(features_dir, sid), feature_path(features_dir, sid, True))
                     if os.path.exists(p)), None)
        if path is None:
            missing.append(sid)
            continue
        try:
            arr = load(path)
        except Exception as exc:
            raise UsageError(f"{path}: unreadable feature file ({type(exc).__name__})") from None
        shift = r.get("shift_ms") or ""
        S = int(arr["seg_t"].size)
        seg_kind = None
        lab = (r.get("segment_labels") or "").strip()
        if lab:
            if not lab.isdigit() or max(lab) > "4":
                raise UsageError(f"{metadata}: {sid}: bad segment_labels {lab[:20]!r}")
            k = [int(c) for c in lab][:S]
            seg_kind = np.asarray(k + [k[-1]] * (S - len(k)), np.int64)
        out.append(Sample(sid, r.get("source") or r["VideoID"], r.get("split", ""),
                          int(r["Label"] == "Negative"), KIND_INDEX[r["MisalignmentType"]],
                          float(shift) if shift else None, arr["seg_t"] - float(arr["t_start"]),
                          vectors.va(arr), vectors.rich(arr), seg_kind))
    if not out and not missing_ok:
        raise UsageError(f"{metadata}: no samples with features in {features_dir}")
    return out, missing


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates over all thresholds (from the highest score down)."""
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), yy.size - 1]
    tps = np.cumsum(yy)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(yy.sum(), 1), max(yy.size - yy.sum(), 1)
    return np.r_[0.0, fps / N], np.r_[0.0, tps / P]


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Probability that a random desync segment scores above a random sync one (ties: 1/2)."""
    y = np.asarray(y).astype(int)
    score = np.asarray(score, np.float64)
    pos, neg = score[y == 1], score[y == 0]
    if not pos.size or not neg.size:
        return None
    from scipy.stats import rankdata

    r = rankdata(np.r_[pos, neg])
    return float((r[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


@dataclass
class Metrics:
    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    auc: float | None
    confusion: list[list[int]]  # [[sync->sync, sync->desync], [desync->sync, desync->desync]]
    recall_by_kind: dict[str, float] = field(default_factory=dict)
    n_by_kind: dict[str, int] = field(default_factory=dict)
    recall_by_shift: dict[str, float] = field(default_factory=dict)
    n_by_shift: dict[str, int] = field(default_factory=dict)
    fault_accuracy: float | None = None  # share of desync segments given the right fault kind

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def binary_metrics(y: np.ndarray, pred: np.ndarray, score: np.ndarray | None = None) -> Metrics:
    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    n = y.size
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return Metrics(n, (tp + tn) / n if n else 0.0, prec, rec, f1,
                   roc_auc(y, score) if score is not None else None, [[tn, fp], [fn, tp]])


def _bin_name(lo, hi) -> str:
    return f"{lo:g}-{hi:g} ms" if hi < 1e8 else f">={lo:g} ms"


@dataclass
class Evaluation:
    model: str
    metrics: Metrics
    y: np.ndarray
    score: np.ndarray


def evaluate(predictor, samples: list[Sample]) -> Evaluation:
    ys, ss, ks, shifts, fault_ok = [], [], [], [], []
    for s in samples:
        p, faults = predictor.predict(s.inputs(predictor.inputs))
        kk = s.kinds()
        ys.append(s.desyncs())
        ss.append(p)
        ks.append(kk)
        shifts.append(np.where(kk == 1, abs(s.shift_ms) if s.shift_ms is not None else np.nan, np.nan))
        if faults is not None and (kk > 0).any():
            fault_ok.append((np.argmax(faults, 1) == kk)[kk > 0])
    y, score, k, sh = (np.concatenate(a) if a else np.zeros(0) for a in (ys, ss, ks, shifts))
    pred = (score >= 0.5).astype(int)
    m = binary_metrics(y, pred, score)
    for i, name in enumerate(FAULTS[1:], start=1):
        sel = k == i
        m.n_by_kind[name] = int(sel.sum())
        if sel.any():
            m.recall_by_kind[name] = float(pred[sel].mean())
    sel0 = k == 0
    if sel0.any():
        m.n_by_kind["none"] = int(sel0.sum())
        m.recall_by_kind["none (specificity)"] = float(1 - pred[sel0].mean())
    for lo, hi in SHIFT_BINS_MS:
        sel = (k == 1) & (sh >= lo) & (sh < hi)
        m.n_by_shift[_bin_name(lo, hi)] = int(sel.sum())
        if sel.any():
            m.recall_by_shift[_bin_name(lo, hi)] = float(pred[sel].mean())
    if fault_ok:
        m.fault_accuracy = float(np.concatenate(fault_ok).mean())
    return Evaluation(predictor.name, m, y, score)


def plot(evals: list[Evaluation], dst: str) -> None:
    """ROC curves of every model and the confusion matrix of the best (by F1), in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..datasets.util import atomic_write_bytes

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8))
    for e in evals:
        if e.y.size and 0 < e.y.sum() < e.y.size:
            fpr, tpr = roc_curve(e.y, e.score)
            auc = e.metrics.auc
            ax1.plot(fpr, tpr, label=f"{e.model} (AUC {auc:.3f})")
    ax1.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax1.set_xlabel("false positive rate (sync called desync)")
    ax1.set_ylabel("true positive rate (desync found)")
    ax1.set_title("ROC, per 1-s segment")
    ax1.legend(loc="lower right", fontsize=8)
    best = max(evals, key=lambda e: e.metrics.f1)
    cm = np.asarray(best.metrics.confusion)
    ax2.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax2.text(j, i, str(cm[i, j]), ha="center", va="center",
                     color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=14)
    ax2.set_xticks([0, 1], ["sync", "desync"])
    ax2.set_yticks([0, 1], ["sync", "desync"])
    ax2.set_xlabel("predicted")
    ax2.set_ylabel("true")
    ax2.set_title(f"confusion matrix: {best.model} (F1 {best.metrics.f1:.3f})")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(dst, buf.getvalue())


def table(evals: list[Evaluation]) -> str:
    """Markdown table of the metrics of every model."""
    kinds = ["time_shift", "noise", "mute", "distort"]
    bins = [_bin_name(lo, hi) for lo, hi in SHIFT_BINS_MS]
    head = (["model", "segments", "accuracy", "precision", "recall", "F1", "ROC-AUC"] + [f"recall {k}" for k in kinds]
            + ["specificity"] + [f"shift {b}" for b in bins])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in evals:
        m = e.metrics

        def f(x):
            return "-" if x is None else f"{x:.3f}"

        row = [e.model, str(m.n), f(m.accuracy), f(m.precision), f(m.recall), f(m.f1), f(m.auc)]
        row += [f"{f(m.recall_by_kind.get(k))} ({m.n_by_kind.get(k, 0)})" for k in kinds]
        row += [f(m.recall_by_kind.get("none (specificity)"))]
        row += [f"{f(m.recall_by_shift.get(b))} ({m.n_by_shift.get(b, 0)})" for b in bins]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
