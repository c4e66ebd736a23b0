import sys, pickle, glob, os
import os; sys.path[:0] = [os.path.join(os.path.dirname(__file__), '..', 'src'), os.path.join(os.path.dirname(__file__), '..')]
from research.feature_shift import load_clip_features
paths = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'media', 'speech', '*')) if not p.endswith('.csv'))
feats = load_clip_features(paths)
pickle.dump(feats, open(os.environ.get('FCN_OUT', '/tmp/fcn_models') + '/speech_feats.pkl', 'wb'))
print(len(feats))
