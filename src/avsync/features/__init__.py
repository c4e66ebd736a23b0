"""Audio and visual features, computed in one streaming pass over a source."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import NoAudio, NoVideo
from ..media.base import AudioChunk, DecodeOptions, MediaInfo, MediaSource, VideoFrame
from ..progress import Progress
from .audio import MEL_BANDS, AudioFeatureExtractor, AudioFeatures
from .mesh import CHILD_MIN_S
from .prefetch import PREFETCH_DEPTH, Prefetch
from .visual import VisualFeatureExtractor, VisualFeatures

@dataclass
class Features:
    info: MediaInfo
    audio: AudioFeatures | None
    visual: VisualFeatures | None
    #: with several people on screen: the region of the picture ``visual`` was measured in, and
    #: the other faces as ``(region, VisualFeatures)`` (see features.several); empty otherwise
    region: tuple[int, int, int, int] | None = None
    others: list = field(default_factory=list)

    def faces(self) -> list["Features"]:
        """One Features per face followed (this one first); just ``[self]`` with one face."""
        out = [self]
        for region, visual in self.others:
            out.append(Features(info=self.info, audio=self.audio, visual=visual, region=region))
        return out


def extract_features(source: MediaSource, faces: str = "auto", max_side: int = 640,
                     progress: Progress | None = None, max_duration_s: float | None = None,
                     trajectories: bool = False, threads: int | None = None, several: bool = False) -> Features:
    """Decode ``source`` once and compute every per-frame / per-hop feature.

    ``trajectories`` adds what the learned estimators read: the mouth landmark
    trajectories (``visual.lips``) and a log-mel spectrogram (``audio.mel``).
    Decoding runs in a background thread, overlapping the face analysis (about 1.2
    cores busy in all); ``threads`` is the video decoder's own thread count: None lets
    FFmpeg choose (about one per core), 1 suits many extractions side by side (a
    little less CPU in all).  Decoding inline instead of in the background thread
    measured ~3-6 % more CPU, so the background thread stays in every case.  ``several``: look
    for several people on screen first and follow each face in its own region (``others``)."""
    source.require(audio=True, video=True)
    opts = DecodeOptions(max_side=max_side, max_duration_s=max_duration_s, threads=threads)
    # decoding starts at once, so it overlaps with loading the face models (~0.5 s)
    with Prefetch(source.decode(opts), depth=PREFETCH_DEPTH) as feed:
        builder = FeatureBuilder(source.info, source.path, faces=faces, trajectories=trajectories,
                                 audio_rate=opts.audio_rate, progress=progress, several=several)
        try:
            for item in feed:
                builder.add(item)
        except BaseException:
            builder.close()
            raise
    return builder.finish()


class FeatureBuilder:
    """Features from decoded items fed one at a time (:meth:`add`), for callers that run the
    decode walk themselves; :func:`extract_features` is the usual way in."""

    def __init__(self, info: MediaInfo, path: str, faces: str = "auto", trajectories: bool = False,
                 audio_rate: int = 16000, progress: Progress | None = None, several: bool = False):
        self.info, self.path, self.progress = info, path, progress
        self._total = info.duration_s or 0.0
        self._last = -1.0
        self._audio = AudioFeatureExtractor(audio_rate, mel_bands=MEL_BANDS if trajectories else 0)
        # the face mesh's child process pays for itself on longer media only
        child = None if (info.duration_s or 0.0) >= CHILD_MIN_S else False
        self._make = lambda region=None: VisualFeatureExtractor(info.video_fps or 25.0, faces=faces,
                                                                trajectories=trajectories, region=region,
                                                                mesh_child=child)
        self._visual = self._make() if not (several and faces != "off") else None
        self._others: list[tuple[tuple[int, int, int, int], VisualFeatureExtractor]] = []
        self._region = None
        self._held: list[VideoFrame] = []  # the first frames, until the faces are counted

    def _count_faces(self) -> None:
        """Count the faces on the held frames, start one extractor per face, replay the frames."""
        from .several import regions, scan_faces

        held, self._held = self._held, []
        boxes = scan_faces([f.image for f in held]) if held else []
        if len(boxes) < 2:
            self._visual = self._make()
        else:
            rs = regions(boxes, held[0].image.shape)
            self._region = rs[0]
            self._visual = self._make(rs[0])
            self._others = [(r, self._make(r)) for r in rs[1:]]
        for f in held:
            self._add_frame(f)

    def add(self, item: VideoFrame | AudioChunk) -> None:
        if isinstance(item, AudioChunk):
            self._audio.add(item)
            return
        if self._visual is None:
            from .several import SCAN_MAX_FRAMES, SCAN_S

            self._held.append(item)
            if len(self._held) >= SCAN_MAX_FRAMES or item.t - self._held[0].t >= SCAN_S:
                self._count_faces()
        else:
            self._add_frame(item)

    def _add_frame(self, item: VideoFrame) -> None:
        self._visual.add(item)
        for _, v in self._others:
            v.add(item)
        if self.progress is not None and item.t - self._last >= 1.0:
            self._last = item.t
            self.progress("decode", item.t, self._total)

    def close(self) -> None:
        """Stop the extractors' helpers (the face mesh's child process) without finishing."""
        for v in [self._visual] + [v for _, v in self._others]:
            if v is not None:
                v.close()

    def finish(self) -> Features:
        """The features; :class:`NoAudio` / :class:`NoVideo` when nothing of a stream decoded."""
        if self._visual is None:
            self._count_faces()
        audio, visual = self._audio.finish(), self._visual.finish()
        if audio is None:
            raise NoAudio("no decodable audio", self.path)
        if visual is None:
            raise NoVideo("no decodable video frames", self.path)
        if self.progress is not None:
            self.progress("decode", self._total, self._total)
        others = [(r, v.finish()) for r, v in self._others]
        return Features(info=self.info, audio=audio, visual=visual, region=self._region,
                        others=[(r, v) for r, v in others if v is not None])


__all__ = ["AudioFeatures", "FeatureBuilder", "Features", "VisualFeatures", "extract_features"]
