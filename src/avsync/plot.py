"""Draw a detect report: the offset timeline, confidence per window and the lag profile.

matplotlib is imported lazily, with the non-interactive Agg backend, so neither
``import avsync`` nor a headless server pays for it or needs a display.
"""
from __future__ import annotations

import os

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, thread-safe

    return Figure(figsize=(12, 7.5), dpi=100)


def plot_report(report, png_path: str | os.PathLike) -> str:
    """Write a PNG of ``report`` (an :class:`avsync.Report`) to ``png_path``; returns the path.

    Top: offset of every window (marker size and opacity follow the confidence), the
    whole-file offset as a line, the tolerance band (lead above 0, lag below) shaded.
    Sparse-event methods (``events``) add every matched (picture, sound) pair as a cross at the
    picture's time and the pair's own offset.  Middle: confidence per window.  Bottom: the score
    over candidate lags.
    Works for not-assessable and single-window reports too."""
    png_path = os.fspath(png_path)
    fig = _figure()
    gs = fig.add_gridspec(3, 1, height_ratios=[3.0, 1.4, 1.3], hspace=0.6, left=0.07, right=0.74)
    ax_off = fig.add_subplot(gs[0])
    ax_conf = fig.add_subplot(gs[1], sharex=ax_off)
    ax_prof = fig.add_subplot(gs[2])

    media = report.media or {}
    duration = float(media.get("duration_s") or 0.0)
    wins = list(report.windows or [])
    t0 = min([w.start_s for w in wins], default=0.0)
    t1 = max([w.end_s for w in wins], default=duration)
    if not t1 > t0:
        t1 = t0 + max(duration, 1.0)
    tol = report.tolerance

    # -- offset timeline ------------------------------------------------------------
    ax_off.axhspan(-tol.lag_ms, tol.lead_ms, color="tab:green", alpha=0.12, lw=0,
                   label=f"tolerance {tol.name} (+{tol.lead_ms:g}/-{tol.lag_ms:g} ms)")
    ax_off.axhline(0.0, color="0.5", lw=0.8)
    from .timeline import MIN_CONFIDENCE

    ok = [w for w in wins if w.offset_ms is not None and w.confidence >= MIN_CONFIDENCE]
    low = [w for w in wins if w.offset_ms is not None and w.confidence < MIN_CONFIDENCE]
    if ok:
        xs = np.array([(w.start_s + w.end_s) / 2 for w in ok])
        ys = np.array([w.offset_ms for w in ok], float)
        cs = np.clip(np.array([w.confidence for w in ok], float), 0.0, 1.0)
        colors = np.zeros((len(ok), 4))
        colors[:, :3] = (0.12, 0.35, 0.75)
        colors[:, 3] = 0.35 + 0.65 * cs
        ax_off.scatter(xs, ys, s=14 + 60 * cs, c=colors, edgecolors="none",
                       label=f"window offset (confidence >= {MIN_CONFIDENCE:g})", zorder=3)
        if len(ok) > 1:
            ax_off.plot(xs, ys, color=(0.12, 0.35, 0.75), lw=0.6, alpha=0.4, zorder=2)
    # the y axis follows the confident windows, the tolerance and the segments; low-confidence
    # windows outside it are drawn at the edge as open triangles pointing where they lie
    ys_all = [tol.lead_ms, -tol.lag_ms] + [w.offset_ms for w in ok] + [g.offset_ms for g in report.segments]
    if report.offset_ms is not None and report.confidence >= MIN_CONFIDENCE:
        ys_all.append(report.offset_ms)
    pairs = np.asarray((report.stats or {}).get("pairs") or [], float).reshape(-1, 2)
    pair_ms = (pairs[:, 0] - pairs[:, 1]) * 1000.0
    ys_all += [float(v) for v in pair_ms]
    lo, hi = min(ys_all), max(ys_all)
    pad = max(20.0, 0.12 * (hi - lo))
    ylo, yhi = lo - pad, hi + pad
    if low:
        lx = np.array([(w.start_s + w.end_s) / 2 for w in low])
        ly = np.array([w.offset_ms for w in low], float)
        inside = (ly >= ylo) & (ly <= yhi)
        ax_off.scatter(lx[inside], ly[inside], s=22, facecolors="none", edgecolors="0.45", marker="o", zorder=3,
                       label=f"window offset, confidence < {MIN_CONFIDENCE:g} (not judged)")
        for mk, side, yv in (("^", ly > yhi, yhi - 0.03 * (yhi - ylo)), ("v", ly < ylo, ylo + 0.03 * (yhi - ylo))):
            if side.any():
                ax_off.scatter(lx[side], np.full(side.sum(), yv), s=26, facecolors="none", edgecolors="0.45",
                               marker=mk, zorder=3, label="low confidence, off the scale")
    if report.several_offsets:
        for i, g in enumerate(report.segments):
            ax_off.plot([g.start_s, g.end_s], [g.offset_ms, g.offset_ms], color="tab:red", lw=2.4, zorder=5,
                        label="segment offsets" if i == 0 else None)
        for i, c in enumerate(report.changes):
            ax_off.axvline(c.time_s, color="tab:red", lw=1, ls=":", zorder=4,
                           label="offset steps" if i == 0 else None)
    elif report.offset_ms is not None:
        ax_off.axhline(report.offset_ms, color="tab:red", lw=1.6, zorder=4,
                       label=f"whole file {report.offset_ms:+.1f} ms ({report.confidence:.2f})")
    drift = report.drift
    if drift is not None and getattr(drift, "intercept_ms", None) is not None and not report.several_offsets:
        xx = np.array([t0, t1])
        name = f", {drift.conform['name']} conform" if getattr(drift, "conform", None) else ""
        ax_off.plot(xx, drift.intercept_ms + drift.ms_per_min / 60.0 * xx, color="tab:orange", lw=1, ls="--",
                    label=f"drift {drift.ms_per_min:+.2f} ms/min{name}", zorder=4)
    if len(pairs):  # sparse-event methods: each matched (picture, sound) pair at its own offset
        ax_off.scatter(pairs[:, 0], pair_ms, s=18, marker="x", color="tab:brown", lw=0.9, zorder=4,
                       label=f"matched events: picture time, its sound's offset ({len(pairs)})")
    ax_off.set_ylim(ylo, yhi)
    ax_off.set_xlim(t0, t1)
    ax_off.set_ylabel("offset ms (+ audio leads)")
    ax_off.set_xlabel("time s")
    verdict = (report.verdict or "").replace("_", " ")
    name = os.path.basename(str(media.get("path") or ""))
    title = f"{name}: {verdict}"
    if report.several_offsets:
        title += f", {len(report.segments)} offsets"
    if report.offset_ms is None:
        title += f" ({report.reason or 'no usable cue'})"
        ax_off.text(0.5, 0.5, "not assessable", transform=ax_off.transAxes, ha="center", va="center",
                    color="0.4", fontsize=14)
    ax_off.set_title(f"{title}  [method {report.method}]", fontsize=10)
    # the legend beside the panel, so it hides no point
    ax_off.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.8, borderaxespad=0.0)
    ax_off.grid(alpha=0.3)

    # -- confidence per window -------------------------------------------------------
    if wins:
        left = np.array([w.start_s for w in wins])
        width = np.array([max(w.end_s - w.start_s, 1e-3) for w in wins])
        conf = np.clip(np.array([w.confidence for w in wins], float), 0.0, 1.0)
        # overlapping windows: draw each as a thin bar at its centre
        centres = np.sort(left + width / 2)
        step = float(np.min(np.diff(centres))) if len(wins) > 1 else float(width[0])
        bar_w = np.minimum(width, max(step, 1e-3)) * 0.8
        colors = ["tab:blue" if w.offset_ms is not None else "0.6" for w in wins]
        ax_conf.bar(left + width / 2, conf, width=bar_w, color=colors, alpha=0.8)
    ax_conf.axhline(MIN_CONFIDENCE, color="0.4", lw=0.8, ls=":", label="judged above")
    ax_conf.set_ylim(0, 1.02)
    ax_conf.set_ylabel("confidence")
    ax_conf.set_xlabel("time s")
    ax_conf.grid(alpha=0.3)

    # -- lag profile --------------------------------------------------------------------
    prof = report.profile
    if prof is not None and len(getattr(prof, "lag_ms", [])) > 0:
        lag = np.asarray(prof.lag_ms, float)
        val = np.asarray(prof.value, float)
        good = np.isfinite(lag) & np.isfinite(val)
        ax_prof.plot(lag[good], val[good], color="tab:purple", lw=1)
        if report.offset_ms is not None:
            ax_prof.axvline(report.offset_ms, color="tab:red", lw=1)
        ax_prof.axvspan(-tol.lag_ms, tol.lead_ms, color="tab:green", alpha=0.12, lw=0)
        kind = getattr(prof, "kind", "correlation")
        ax_prof.set_ylabel("distance" if kind == "distance" else "correlation", fontsize=8)
    else:
        ax_prof.text(0.5, 0.5, "no lag profile", transform=ax_prof.transAxes, ha="center", va="center",
                     color="0.4")
    ax_prof.set_xlabel("candidate lag ms (+ audio leads)")
    ax_prof.grid(alpha=0.3)

    folder = os.path.dirname(os.path.abspath(png_path))
    if not os.path.isdir(folder):
        raise OSError(f"folder does not exist: {folder}")
    fig.savefig(png_path, format="png")
    return png_path
