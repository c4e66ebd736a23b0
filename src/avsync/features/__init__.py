"""Audio and visual features, computed in one streaming pass over a source."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import DecodeError, NoAudio, NoVideo
from ..media.source import AudioChunk, DecodeOptions, MediaInfo, MediaSource
from .audio import AudioFeatureExtractor, AudioFeatures
from .visual import VisualFeatureExtractor, VisualFeatures

#: progress(done_seconds, total_seconds)
Progress = Callable[[float, float], None]


@dataclass
class Features:
    info: MediaInfo
    audio: AudioFeatures | None
    visual: VisualFeatures | None


def extract_features(source: MediaSource, faces: str = "auto", max_side: int = 640,
                     progress: Progress | None = None, max_duration_s: float | None = None) -> Features:
    """Decode ``source`` once and compute every per-frame / per-hop feature."""
    info = source.info
    source.require(audio=True, video=True)
    opts = DecodeOptions(max_side=max_side, max_duration_s=max_duration_s)
    aex = AudioFeatureExtractor(opts.audio_rate)
    vex = VisualFeatureExtractor(info.video_fps or 25.0, faces=faces)
    total = info.duration_s or 0.0
    last = -1.0
    for item in source.decode(opts):
        if isinstance(item, AudioChunk):
            aex.add(item)
        else:
            vex.add(item)
            if progress is not None and item.t - last >= 1.0:
                last = item.t
                progress(item.t, total)
    audio, visual = aex.finish(), vex.finish()
    if audio is None:
        raise NoAudio("no decodable audio", source.path)
    if visual is None:
        raise NoVideo("no decodable video frames", source.path)
    if progress is not None:
        progress(total, total)
    return Features(info=info, audio=audio, visual=visual)


__all__ = ["AudioFeatures", "Features", "VisualFeatures", "extract_features"]
