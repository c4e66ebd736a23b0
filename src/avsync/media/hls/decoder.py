"""Decoding HLS segments held in memory, one after the other, on one continuous timeline."""
from __future__ import annotations

import io

from ...errors import DecodeError
from ..base import AudioChunk, DecodeOptions, VideoFrame, audio_stream, frame_rate, short_reason, video_stream
from ..decode import Decoder


class SegmentDecoder:
    """Decodes successive segments into analysis items with one persistent
    :class:`~avsync.media.decode.Decoder`: codec contexts and the audio clock carry over from
    segment to segment.  ``params`` collects the stream parameters of the first segments."""

    def __init__(self, options: DecodeOptions = DecodeOptions(), label: str = "stream"):
        self.options = options
        self.label = label
        self._decoder = Decoder(options, label, persistent=True)
        self.params: dict = {}

    def reset_timeline(self) -> None:
        """After skipped segments or a discontinuity: audio restarts at its next timestamp."""
        self._decoder.reset_timeline()

    def decode(self, data: bytes, init: bytes | None = None) -> list[VideoFrame | AudioChunk]:
        """The items of one segment (``init``: its EXT-X-MAP header, if any)."""
        import av

        blob = (init or b"") + data
        try:
            c = av.open(io.BytesIO(blob), metadata_errors="ignore")
        except Exception as exc:
            raise DecodeError(f"segment is not decodable media ({short_reason(exc)})", self.label) from None
        try:
            v, a = video_stream(c), audio_stream(c)
            self._note_params(v, a)
            return list(self._decoder.walk(c, v, a))
        finally:
            c.close()

    def _note_params(self, v, a) -> None:
        if v is not None and "video_fps" not in self.params:
            rate = frame_rate(v)
            fps = float(rate) if rate else 25.0
            self.params.update(video_fps=fps if 0 < fps <= 1000 else 25.0, width=v.codec_context.width,
                               height=v.codec_context.height, video_codec=v.codec_context.name)
        if a is not None and "audio_rate" not in self.params:
            self.params.update(audio_rate=a.codec_context.sample_rate, audio_channels=a.codec_context.channels,
                               audio_codec=a.codec_context.name)
