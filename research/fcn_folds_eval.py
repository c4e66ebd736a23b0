"""Leave-speakers-out evaluation of FCN-SyncNet on ../shared/media/speech (issue 3).

    research/fcn_folds_eval.py rows   --models DIR  # lips, each fold model alone on its held-out clips
    research/fcn_folds_eval.py fit    --models DIR  # fusion parameters: fold k's from the other folds' rows,
                                                 # pool.pt's (the shipped model's) from all held-out rows
    research/fcn_folds_eval.py fused  --models DIR  # each fused fold model on its held-out clips
    research/fcn_folds_eval.py report --models DIR  # the table

DIR holds fold1.pt fold2.pt fold3.pt pool.pt (research/fcn_folds_train.sh) and speech_feats.pkl
(research/fcn_speech_features.py).  Rows come from research.feature_shift (features extracted
once per clip, the benchmark's shifts applied to the audio timestamps, null = the next clip's audio).
"""
import argparse
import json
import os
import pickle
import sys
import warnings

sys.path[:0] = [os.path.join(os.path.dirname(__file__), "..", "src"), os.path.join(os.path.dirname(__file__), "..")]
warnings.filterwarnings("ignore")

from research.feature_shift import evaluate, fold_of, summarise  # noqa: E402

FOLDS = (1, 2, 3)


def _feats(d):
    with open(os.path.join(d, "speech_feats.pkl"), "rb") as fh:
        return pickle.load(fh)


def _held(feats, k):
    return {n for n in feats if fold_of(n) == k}


def cmd_rows(d):
    feats = _feats(d)
    rows = evaluate(feats, [("lips", None)])
    for k in FOLDS:
        rows += evaluate(feats, [("fcn", f"{d}/fold{k}.pt", {"fusion": False}, "fcn-alone@folds")],
                         clips=_held(feats, k))
    rows += evaluate(feats, [("fcn", f"{d}/pool.pt", {"fusion": False}, "fcn-alone@pool")])
    _dump(rows, f"{d}/rows_alone.json")


def _pairs(rows, keep, fcn="fcn-alone@folds"):
    from avsync.estimators.stacked import Pair

    by = {}
    for r in rows:
        if keep(r["clip"]) and r["method"] in ("lips", fcn):
            by.setdefault((r["clip"], r["kind"], r["shift_ms"]), {})[r["method"]] = r
    pairs, truths = [], []
    for key in sorted(by):
        m = by[key]
        if len(m) < 2:
            continue
        L, F = m["lips"], m[fcn]
        pairs.append(Pair(L["estimate_ms"], L["confidence"], F["estimate_ms"], F["confidence"], L["frame_ms"]))
        truths.append(L["truth_ms"] if key[1] == "shift" else None)
    return pairs, truths


def cmd_fit(d):
    from avsync.estimators import stacked as fusion
    from avsync.nn.fcn import set_extra

    with open(f"{d}/rows_alone.json") as fh:
        rows = json.load(fh)
    for k in FOLDS:
        params = fusion.fit(*_pairs(rows, lambda c: fold_of(c) != k))
        set_extra(f"{d}/fold{k}.pt", fusion={**params, "fitted_on": f"held-out rows of folds != {k}"})
        print(f"fold{k}.pt", json.dumps(params))
    # the shipped model's own confidences on all 22 clips (its fcn part never trained on them, but
    # media/train has other clips of GRID s1 and of the V-Express presenter); its figures on these
    # clips are therefore in-sample for the fusion -- the per-fold figures are the held-out ones
    params = fusion.fit(*_pairs(rows, lambda c: True, "fcn-alone@pool"))
    set_extra(f"{d}/pool.pt", fusion={**params, "fitted_on": "lips + pool.pt rows of all 22 speech clips"})
    print("pool.pt", json.dumps(params))


def cmd_fused(d):
    feats = _feats(d)
    rows = []
    for k in FOLDS:
        rows += evaluate(feats, [("fcn", f"{d}/fold{k}.pt", {"fusion": True}, "fcn-fused@folds")],
                         clips=_held(feats, k))
    _dump(rows, f"{d}/rows_fused.json")


def _dump(rows, path):
    with open(path + ".tmp", "w") as fh:
        json.dump(rows, fh)
    os.replace(path + ".tmp", path)
    print(f"wrote {path} ({len(rows)} rows)")


def cmd_report(d):
    rows = []
    for f in ("rows_alone.json", "rows_fused.json"):
        if os.path.isfile(f"{d}/{f}"):
            with open(f"{d}/{f}") as fh:
                rows += json.load(fh)
    methods = [m for m in ("lips", "fcn-alone@folds", "fcn-fused@folds", "fcn-alone@pool")
               if any(r["method"] == m for r in rows)]

    def line(label, sel):
        s = summarise(sel)
        if not s.get("n"):
            return
        print(f"| {label} | {s['n']} | {100 * s['abs_1f']:.1f} % | {100 * s['abs_2f']:.1f} % | "
              f"{100 * s.get('null_false_conf', float('nan')):.1f} % | {100 * s['confident_wrong']:.1f} % | "
              f"{100 * s['coverage']:.1f} % |")

    print("| held-out clips / method | shifts | abs <=1 frame | abs <=2 frames | null false-conf | "
          "confident-wrong | coverage |")
    print("|---|---|---|---|---|---|---|")
    for k in FOLDS:
        for m in methods:
            if m != "fcn-alone@pool":
                line(f"fold {k}: {m}", [r for r in rows if r["method"] == m and fold_of(r["clip"]) == k])
    for label, keep in (("all 22", lambda r: True), ("all, < 5 s", lambda r: r["duration_s"] < 5),
                        ("all, >= 5 s", lambda r: r["duration_s"] >= 5)):
        for m in methods:
            line(f"{label}: {m}", [r for r in rows if r["method"] == m and keep(r)])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("rows", "fit", "fused", "report"))
    ap.add_argument("--models", default=os.environ.get("FCN_OUT", "/tmp/fcn_models"))
    a = ap.parse_args()
    {"rows": cmd_rows, "fit": cmd_fit, "fused": cmd_fused, "report": cmd_report}[a.step](a.models)
