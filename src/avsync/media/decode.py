"""The one PyAV decode walk of the media layer.

:func:`decoded_frames` is the demux-and-decode loop (damaged packets skipped);
:class:`Decoder` turns its frames into stamped :class:`VideoFrame` / :class:`AudioChunk` items
as :class:`DecodeOptions` asks (picture kind and size, audio rate, format and layout, gap filling).
A file is walked by one :class:`Decoder`; HLS segments are walked one after the other by a
*persistent* one, whose codec contexts, resampler and audio clock carry over from segment to
segment.  Every reader of the package (file and HLS sources, the dataset clip reader, the
benchmarks) decodes through here.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Iterator

import numpy as np

from ..errors import DecodeError
from .base import (AUDIO_GAP_S, DISCONTINUITY_BACK_S, DISCONTINUITY_S, AudioChunk, DecodeOptions, VideoFrame, analysis_size, bgr_image, frame_rotation,
                   grey_image, rgb_image, rotate, short_reason)


def configure_video(stream, options: DecodeOptions) -> None:
    """Decoder threads and the in-loop filter skip of ``options`` on a demuxed video stream."""
    if options.threads is None or options.threads > 1:
        stream.thread_type = "AUTO"
        if options.threads is not None:
            stream.codec_context.thread_count = options.threads
    else:
        stream.codec_context.thread_count = 1
    if options.fast_video:
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}


def decoded_frames(container, streams: list, decoder_for: Callable | None = None,
                   max_packets: int | None = None) -> Iterator[tuple[object, object]]:
    """``(packet, frame)`` for every frame decoded from ``streams`` of ``container``, in packet order.

    A packet the codec rejects as invalid data is skipped.  With ``decoder_for(packet)`` (codec
    contexts that outlive the container), packets are decoded by the context it returns, empty
    (flush) packets are skipped so buffered frames carry over, and any codec error skips the packet.
    ``max_packets`` stops after that many packets.  Demuxer errors propagate."""
    import av

    for n, packet in enumerate(container.demux(streams)):
        if max_packets is not None and n >= max_packets:
            return
        if decoder_for is None:
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # a damaged packet: skip it, keep going
        else:
            if packet.size == 0:
                continue
            try:
                frames = decoder_for(packet).decode(packet)
            except av.error.FFmpegError:
                continue
        for frame in frames:
            yield packet, frame


class Decoder:
    """Decoded PyAV frames -> stamped items, as ``options`` asks.

    One instance walks one container (:meth:`walk`), or, with ``persistent``, successive
    containers of one stream (HLS segments): its codec contexts and audio clock continue from
    one to the next, nothing is flushed at a container's end, and audio timestamps that jump
    back by more than a second start a new audio timeline.

    Timestamps of a stream that jump ahead by more than :data:`DISCONTINUITY_S` or back by more than
    :data:`DISCONTINUITY_BACK_S` are a discontinuity (``discontinuities`` lists them: ``at_s``, the
    last time before it, and ``jump_s``): a file's walk ends there (what comes before it is
    analysed; filling hours of silence would take memory without bound); a persistent decoder
    starts a new timeline."""

    def __init__(self, options: DecodeOptions = DecodeOptions(), label: str = "", persistent: bool = False):
        self.options = options
        self.label = label
        self.persistent = persistent
        self._size = None
        self._extra_sizes: list | None = None
        self._resampler = None
        self._next_audio: Fraction | None = None  # exact time of the next resampled sample
        self._rate = options.audio_rate
        self._contexts: dict[str, tuple[str, object]] = {}  # kind -> (codec name, context)
        self._dtype = np.int16 if options.audio_format == "s16" else np.float32
        self._jpeg = None  # colour "jpeg": the MJPEG round trip (its rate control spans the stream)
        self._video_rate: tuple = (None, None)  # the video stream's (frame rate, sample aspect ratio)
        self._last: dict[str, Fraction] = {}  # stream kind -> the last timestamp seen
        self.discontinuities: list[dict] = []
        #: the codec or demuxer error that ended a walk after something was decoded (``at_s``: the
        #: last timestamp decoded before it, ``reason``), or None
        self.error: dict | None = None

    def reset_timeline(self) -> None:
        """Audio restarts at its next timestamp (after a gap or a discontinuity)."""
        self._next_audio = None
        self._resampler = None
        self._last = {}

    # -- the walk ------------------------------------------------------------------------------
    def walk(self, container, video, audio) -> Iterator[VideoFrame | AudioChunk]:
        """Items of ``container``'s ``video`` and ``audio`` streams (either may be None), in
        packet order.  A codec or demuxer error before anything came out raises
        :class:`DecodeError`; later (a truncated or corrupt tail) the walk ends with what it has.
        A persistent decoder ends quietly on any error."""
        import av

        streams = [s for s in (video, audio) if s is not None]
        if not streams:
            return
        opts = self.options
        if audio is not None and not self.persistent:
            self._resampler = None
            self._rate = opts.audio_rate or audio.codec_context.sample_rate
        if video is not None and self._video_rate[0] is None:
            self._video_rate = (video.guessed_rate or video.average_rate, video.sample_aspect_ratio)
        limit = None if self.persistent else opts.max_duration_s
        first_t: float | None = None
        produced = False
        frames = decoded_frames(container, streams, self._context if self.persistent else None)
        try:
            for packet, frame in frames:
                tb = frame.time_base or packet.time_base
                if frame.pts is None or tb is None:
                    continue
                pts = Fraction(frame.pts) * Fraction(tb)
                if first_t is None:
                    first_t = float(pts)
                if limit is not None and float(pts) - first_t > limit:
                    return
                kind = "video" if packet.stream is video else "audio"
                last = self._last.get(kind)
                if last is not None and not (-DISCONTINUITY_BACK_S <= float(pts - last) <= DISCONTINUITY_S):
                    self.discontinuities.append({"at_s": round(float(last), 3), "jump_s": round(float(pts - last), 3),
                                                 "stream": kind})
                    if not self.persistent:
                        break  # what comes after is on another timeline: the walk ends here
                    self.reset_timeline()
                self._last[kind] = pts
                if packet.stream is video:
                    item = self.picture(frame, pts)
                    if item is not None:
                        produced = True
                        yield item
                else:
                    for item in self.sound(frame, pts):
                        produced = True
                        yield item
            if not self.persistent:
                yield from self.flush()
        except av.error.FFmpegError as exc:
            if not produced and not self.persistent:
                raise DecodeError(f"cannot decode ({short_reason(exc)})", self.label) from None
            # truncated or corrupt tail: keep what was decoded, and say where it stopped
            last = max(self._last.values(), default=None)
            self.error = {"at_s": None if last is None else round(float(last), 3), "reason": short_reason(exc)}

    def _context(self, packet):
        """The persistent codec context for ``packet``'s stream kind (new when the codec changes)."""
        import av

        stream = packet.stream
        kind, name = stream.type, stream.codec_context.name
        have = self._contexts.get(kind)
        if have is None or have[0] != name:
            ctx = av.CodecContext.create(name, "r")
            if stream.codec_context.extradata:
                ctx.extradata = stream.codec_context.extradata
            if kind == "video":
                ctx.thread_type = "AUTO"
            else:
                self._rate = self.options.audio_rate or stream.codec_context.sample_rate
            have = self._contexts[kind] = (name, ctx)
        return have[1]

    # -- conversion ----------------------------------------------------------------------------
    def picture(self, frame, pts: Fraction) -> VideoFrame | None:
        """The frame as the options ask (None outside ``video_span``)."""
        opts = self.options
        if opts.video_span is not None:
            t0, t1 = opts.video_span
            t = float(pts)
            if t < t0 - 1e-6 or (t1 is not None and t >= t1 - 1e-6):
                if opts.colour == "jpeg":
                    self._jpeg_bgr(frame)  # the rate control sees every picture, as ffmpeg's does
                return None
        if self._size is None:
            self._size = analysis_size(frame.width, frame.height, opts.max_side)
            self._extra_sizes = [analysis_size(frame.width, frame.height, s) for s in opts.extra_sides]
        if not opts.colour:
            img = grey_image(frame, self._size)
        elif opts.colour == "rgb":
            img = rgb_image(frame, self._size)
        elif opts.colour == "jpeg":
            img = self._jpeg_bgr(frame)
            if (img.shape[1], img.shape[0]) != self._size:
                import cv2

                img = cv2.resize(img, self._size, interpolation=cv2.INTER_CUBIC)
        else:
            img = bgr_image(frame, self._size)
        extra = tuple(grey_image(frame, s) for s in self._extra_sizes)
        if opts.rotate:
            rot = frame_rotation(frame)
            img = rotate(img, rot)
            extra = tuple(rotate(x, rot) for x in extra)
        return VideoFrame(pts=pts, image=img, extra=extra)

    def _jpeg_bgr(self, frame) -> np.ndarray:
        """BGR after the SyncNet reference's JPEG round trip (:mod:`.jpeg`), at the picture's size."""
        if self._jpeg is None:
            from .jpeg import MjpegRoundTrip

            self._jpeg = MjpegRoundTrip(*self._video_rate)
        return self._jpeg.bgr(frame)

    @property
    def jpeg(self):
        """The MJPEG round trip of colour "jpeg" (None before the first picture): its ``qscales``."""
        return self._jpeg

    def sound(self, frame, pts: Fraction) -> Iterator[AudioChunk]:
        """The frame's samples, resampled, stamped on the exact audio clock (gaps filled)."""
        import av

        opts = self.options
        rate = self._rate
        if self.persistent and self._next_audio is not None and float(pts - self._next_audio) < -1.0:
            self.reset_timeline()  # timestamps went back: a new timeline
        if self._resampler is None:
            self._resampler = av.AudioResampler(format=opts.audio_format, layout=self._layout(frame), rate=rate)
        if self._next_audio is None:
            self._next_audio = pts
        elif opts.fill_gaps and float(pts - self._next_audio) > AUDIO_GAP_S:
            gap = int(round(float(pts - self._next_audio) * rate))
            channels = self._resampler.layout.nb_channels if self._resampler.layout is not None else 1
            yield AudioChunk(self._next_audio, np.zeros((gap,) if channels == 1 else (gap, channels),
                                                        self._dtype), rate)
            self._next_audio += Fraction(gap, rate)
        frame.pts = None  # let the resampler count samples itself
        yield from self._chunks(self._resampler.resample(frame))

    def flush(self) -> Iterator[AudioChunk]:
        """What the resampler still holds (end of the audio)."""
        if self._resampler is not None and self._next_audio is not None:
            yield from self._chunks(self._resampler.resample(None))

    def _layout(self, frame) -> str:
        if self.options.audio_layout is not None:
            return self.options.audio_layout
        return "mono" if (frame.layout.nb_channels or 1) == 1 else "stereo"

    def _chunks(self, frames) -> Iterator[AudioChunk]:
        rate = self._rate
        for out in frames:
            data = out.to_ndarray()
            channels = out.layout.nb_channels
            if channels == 1:
                data = data.reshape(-1)
            elif out.format.is_planar:
                data = data.T
            else:
                data = data.reshape(-1, channels)
            data = data.astype(self._dtype, copy=False)
            if data.shape[0]:
                yield AudioChunk(self._next_audio, data, rate)
                self._next_audio += Fraction(data.shape[0], rate)
