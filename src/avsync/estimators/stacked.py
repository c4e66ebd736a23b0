"""Stacking of the learned FCN-SyncNet with the weight-free ``lips`` estimator (numpy only).

The two fail differently on held-out speakers: ``lips`` is precise on short, frontal,
clean speech (GRID, LRS2) and confidently wrong on a good share of mismatched audio;
FCN-SyncNet is rarely confident on mismatched audio and holds up on long and generated
clips, but lands a frame or two off on speakers unlike its training pool.  The fused
estimate takes the ``lips`` offset when its confidence reaches ``theta`` and FCN's
otherwise; the fused confidence is a logistic model of both confidences, whether they
agree, and which one was taken.

Both parameters are fitted on rows of held-out clips (each clip scored by a model that
never saw it), never on the clips being reported: see ``research/fcn_fit_fusion.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: thresholds tried for ``theta`` (1.01 = never take lips)
THETAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.01)
#: estimates this close (in video frames) count as agreeing
AGREE_FRAMES = 1.5
FEATURES = ("logit_lips_conf", "logit_fcn_conf", "agree", "took_lips", "bias")


@dataclass
class Pair:
    """Both estimates of one span (offsets in ms, None when a method abstained)."""

    lips_ms: float | None
    lips_conf: float
    fcn_ms: float | None
    fcn_conf: float
    frame_ms: float = 40.0


def _logit(c: float) -> float:
    c = min(max(float(c), 1e-3), 1 - 1e-3)
    return float(np.log(c / (1 - c)))


def decide(p: Pair, theta: float) -> tuple[float | None, np.ndarray, str]:
    """(chosen offset, logistic inputs, which estimate) for one pair."""
    took_lips = p.lips_ms is not None and p.lips_conf >= theta
    if not took_lips and p.fcn_ms is None:
        took_lips = p.lips_ms is not None
    est = p.lips_ms if took_lips else p.fcn_ms
    agree = (p.lips_ms is not None and p.fcn_ms is not None
             and abs(p.lips_ms - p.fcn_ms) <= AGREE_FRAMES * p.frame_ms)
    x = np.array([_logit(p.lips_conf if p.lips_ms is not None else 0.0),
                  _logit(p.fcn_conf if p.fcn_ms is not None else 0.0),
                  float(agree), float(took_lips), 1.0])
    return est, x, ("lips" if took_lips else "fcn")


def fuse(params: dict, p: Pair) -> tuple[float | None, float, str]:
    """(offset_ms, confidence, source) of one pair under fitted ``params``."""
    est, x, src = decide(p, float(params["theta"]))
    if est is None:
        return None, 0.0, src
    w = np.asarray(params["coef"], np.float64)
    if w.size != x.size:
        raise ValueError("fusion parameters do not match this version")
    return est, float(1 / (1 + np.exp(-float(x @ w)))), src


def _correct(est: float | None, truth: float | None, frame_ms: float) -> bool:
    return est is not None and truth is not None and abs(est - truth) <= frame_ms + 1e-6


def fit(pairs: list[Pair], truths: list[float | None], l2: float = 1e-2) -> dict:
    """Fit ``theta`` (most estimates within one frame) and the confidence model (P(within
    one frame)) on held-out rows; ``truth`` None marks a mismatched-audio row (never right)."""
    if not pairs or len(pairs) != len(truths):
        raise ValueError("fusion needs as many truths as pairs, and at least one")
    real = [(p, t) for p, t in zip(pairs, truths) if t is not None]
    if not real:
        raise ValueError("fusion needs rows with a known offset")

    def acc(theta):
        return np.mean([_correct(decide(p, theta)[0], t, p.frame_ms) for p, t in real])

    theta = max(THETAS, key=lambda th: (acc(th), -th))
    X, y = [], []
    for p, t in zip(pairs, truths):
        est, x, _ = decide(p, theta)
        X.append(x)
        y.append(_correct(est, t, p.frame_ms))
    X, y = np.array(X), np.array(y, np.float64)
    w = np.zeros(X.shape[1])
    for _ in range(60):  # Newton steps, lightly regularised
        pr = 1 / (1 + np.exp(-X @ w))
        g = X.T @ (pr - y) + l2 * w
        H = (X * (pr * (1 - pr))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        w = w - np.linalg.solve(H, g)
    return {"theta": float(theta), "coef": w.tolist(), "features": list(FEATURES), "n": int(len(y)),
            "n_null": int(sum(t is None for t in truths)), "fit_accuracy_1f": float(acc(theta))}


__all__ = ["Pair", "decide", "fuse", "fit", "THETAS", "FEATURES"]
