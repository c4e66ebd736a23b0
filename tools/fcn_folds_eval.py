import sys, pickle, json, time, collections
import os; sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'src'))
import warnings; warnings.filterwarnings('ignore')
from avsync.bench.feature_shift import evaluate, summarise
feats = pickle.load(open(os.environ.get('FCN_OUT', '/tmp/fcn_models') + '/speech_feats.pkl', 'rb'))
F = {1: "grid_bbaf2n grid_brbk7n grid_lbax4n grid_lbbc2a grid_lrwp9a grid_lwbsza grid_id2_vcd_swwp2s lrs2_demo_00001 lrs2_demo_00004",
     2: "sadtalker_RD_Radio2_000 sadtalker_WDA_AlexandriaOcasioCortez_000 sadtalker_WDA_KatieHill_000 vretalk_face1 vretalk_face2 vretalk_face3 aniportrait_pose_ref_video",
     3: "syncnet_example lrs2_demo_00008 lrs2_demo_00016 lrs2_demo_00022 visualvoice_noisy_restaurant ave_0lFf-HP86Q0"}
fold_of = {}
for k, v in F.items():
    for s in v.split():
        for n in feats:
            if n.startswith(s): fold_of[n] = k
assert len(fold_of) == 22, (len(fold_of), set(feats) - set(fold_of))
methods = [("lips", None)] + [("fcn", os.environ.get('FCN_OUT', '/tmp/fcn_models') + f'/{m}.pt') for m in ("pool", "fold1", "fold2", "fold3")]
t = time.time()
rows = evaluate(feats, methods)
print("eval s", round(time.time() - t, 1), file=sys.stderr)
json.dump(rows, open(os.environ.get('FCN_OUT', '/tmp/fcn_models') + '/feature_shift_rows.json', 'w'))
def fmt(s):
    return " ".join(f"{k}={100*v:.1f}%" if k != 'n' else f"n={v}" for k, v in s.items())
def sel(method, clips=None, length=None, kind=None):
    out = []
    for r in rows:
        if r['method'] != method: continue
        if clips is not None and r['clip'] not in clips: continue
        if length == '<5' and r['duration_s'] >= 5: continue
        if length == '>=5' and r['duration_s'] < 5: continue
        out.append(r)
    return out
for k in (1, 2, 3):
    clips = {n for n, f in fold_of.items() if f == k}
    print(f"\nFold {k} (held out: {len(clips)} clips)")
    for m in ("lips", f"fcn@fold{k}.pt", "fcn@pool.pt"):
        print(f"  {m:14s} all  {fmt(summarise(sel(m, clips)))}")
        for L in ('<5', '>=5'):
            s = sel(m, clips, L)
            if s: print(f"  {m:14s} {L:4s} {fmt(summarise(s))}")
# pooled held-out: each clip scored by the fold model that never saw it
held = [r for r in rows if r['method'] == f"fcn@fold{fold_of[r['clip']]}.pt"]
print("\nAll 22 clips, each by the model of the fold that held it out")
for L in (None, '<5', '>=5'):
    h = [r for r in held if L is None or (r['duration_s'] < 5) == (L == '<5')]
    print(f"  fcn(folds)     {L or 'all':4s} {fmt(summarise(h))}")
    print(f"  lips           {L or 'all':4s} {fmt(summarise(sel('lips', None, L)))}")
    print(f"  fcn@pool.pt    {L or 'all':4s} {fmt(summarise(sel('fcn@pool.pt', None, L)))}")
print("\nPer clip abs<=1f (lips / fcn held-out fold / fcn pool):")
for n in sorted(feats):
    a = summarise(sel('lips', {n}))['abs_1f']; b = summarise([r for r in held if r['clip'] == n])['abs_1f']; c = summarise(sel('fcn@pool.pt', {n}))['abs_1f']
    print(f"  {n:45s} fold{fold_of[n]} {100*a:5.1f} {100*b:5.1f} {100*c:5.1f}")
