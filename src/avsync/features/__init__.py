"""Audio and visual features, computed in one streaming pass over a source."""
from __future__ import annotations

from dataclasses import dataclass
import queue
import threading
from typing import Callable, Iterator

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
    for item in _prefetch(source.decode(opts)):
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


def _prefetch(items: Iterator, depth: int = 32) -> Iterator:
    """Run ``items`` in a background thread, ``depth`` items ahead: decoding (which
    releases the GIL inside FFmpeg) overlaps with the face analysis of earlier frames.
    Memory stays bounded by ``depth`` small frames; errors re-raise in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for it in items:
                while not stop.is_set():
                    try:
                        q.put(it, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    th = threading.Thread(target=work, name="avsync-decode", daemon=True)
    th.start()
    try:
        while True:
            it = q.get()
            if it is done:
                return
            if isinstance(it, BaseException):
                raise it
            yield it
    finally:
        stop.set()
        th.join(timeout=5)


__all__ = ["AudioFeatures", "Features", "VisualFeatures", "extract_features"]
