"""Dense check: real clip, audio moved 200 ms earlier from the middle on (content edit)."""
import sys, subprocess, numpy as np
import os; sys.path[:0] = [os.path.join(os.path.dirname(__file__), '..', 'src'), os.path.join(os.path.dirname(__file__), '..')]
clip, weights = sys.argv[1], sys.argv[2]
import av
d = float(av.open(clip).duration) / 1e6
mid = d / 2
out = '/tmp/wt3_step.mkv'
# audio: [0, mid) unchanged, then the audio from mid+0.2 on (audio leads by 200 ms after mid)
subprocess.run(['ffmpeg', '-v', 'error', '-y', '-i', clip, '-filter_complex',
                f'[0:a]atrim=0:{mid},asetpts=PTS-STARTPTS[a1];[0:a]atrim={mid + 0.2},asetpts=PTS-STARTPTS[a2];[a1][a2]concat=n=2:v=0:a=1[a]',
                '-map', '0:v', '-map', '[a]', '-c:v', 'copy', '-c:a', 'pcm_s16le', out], check=True)
from avsync.media import open_media
from avsync.features import extract_features
from avsync.estimators.fcn import frame_offsets
with open_media(out) as src:
    f = extract_features(src, trajectories=True)
t, o, c = frame_offsets(f, weights, smooth_s=1.0)
base = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
for x in np.arange(0, d, 0.5):
    i = np.argmin(abs(t - x)); print(f"t={t[i]:5.2f}s offset={o[i]:+7.1f} ms conf={c[i]:.2f}")
# step position: first time after which the smoothed offsets stay nearer base+200 than base
near = np.abs(o - (base + 200)) < np.abs(o - base)
idx = [i for i in range(len(t)) if near[i:].mean() > 0.8 and not near[:i].mean() > 0.5] if len(t) else []
step = t[idx[0]] if idx else None
print(f"edit at {mid:.2f} s; offsets step at {step} s; error {None if step is None else round(step - mid, 2)} s")
