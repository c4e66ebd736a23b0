"""The SyncNet reference's lossy picture path, in memory: ffmpeg's MJPEG encoder at its default
rate control, then OpenCV's JPEG decoder.

The public SyncNet code extracts frames with ``ffmpeg -i CLIP -threads 1 -f image2 DIR/%06d.jpg``
(no quality flag) and reads them back with ``cv2.imread``.  That round trip moves the scores by
several per cent (``shared/syncnet-reference/README.md``), so :class:`MjpegRoundTrip` does the same
thing without files, one decoded picture after the other, in order:

1. the decoded picture's planes, converted from limited to full range (yuv420p -> yuvj420p, and
   4:2:2 / 4:4:4 to yuvj422p / yuvj444p, as the command line picks) with the integer formulas of
   FFmpeg 5.1's libswscale (the reference's ffmpeg is 5.1.9; FFmpeg 8's libswscale rounds
   differently on about a fifth of the samples), or passed through when the picture already is
   full range (other pixel formats go to yuvj420p through this FFmpeg's libswscale, which is close
   but not bit-identical to 5.1's);
2. libavcodec's MJPEG encoder as the ffmpeg command line sets it up: that yuvj format, the library
   defaults (200 kbit/s, quantiser 2..31, optimal Huffman tables), time base 1 / the stream's frame
   rate, the stream's sample aspect ratio (it goes into the JFIF header, whose size the rate
   control counts) and one thread.  The rate control carries over from picture to picture: the
   quantiser starts fine and climbs to about 25 within the first second;
3. ``cv2.imdecode`` into BGR (libjpeg-turbo, fancy upsampling), as ``cv2.imread`` does.

The encoder is PyAV's bundled libavcodec (:data:`LIBAVCODEC_VERIFIED`, FFmpeg 8.1.2 in PyAV
18.1.0): on both reference clips it gives the same quantiser sequence as the reference's
ffmpeg 5.1.9 and pictures identical to the reference's JPEG files, pixel for pixel.  Another
libavcodec may rate-control differently: :func:`encoder_versions` says which one ran, and the
integration test checks the quantiser sequence against the reference's.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import DecodeError

#: the libavcodec (major, minor) whose MJPEG rate control was checked against the reference's
#: ffmpeg 5.1.9 (PyAV 18.1.0 bundles FFmpeg 8.1.2 = libavcodec 62.28.102)
LIBAVCODEC_VERIFIED = (62, 28)
#: the FFmpeg version whose command line the round trip follows (the reference's)
FOLLOWS_FFMPEG = "5.1"
#: libavcodec's default MJPEG bit rate (the reference passes no rate or quality option)
BIT_RATE = 200_000


def _range_luts() -> tuple[np.ndarray, np.ndarray]:
    """FFmpeg 5.1 libswscale's limited -> full range conversion of 8-bit luma and chroma
    (lumRangeToJpeg_c / chrRangeToJpeg_c on 15-bit intermediates, then the 15 -> 8 bit output
    rounding), as 256-entry tables."""
    v = np.arange(256, dtype=np.int64)
    y = ((np.minimum(v << 7, 30189) * 19077 - 39057361) >> 14)
    c = ((np.minimum(v << 7, 30775) * 4663 - 9289992) >> 12)
    return (np.clip((y + 64) >> 7, 0, 255).astype(np.uint8), np.clip((c + 64) >> 7, 0, 255).astype(np.uint8))


LUMA_TO_FULL, CHROMA_TO_FULL = _range_luts()


def encoder_versions() -> dict:
    """Which libavcodec encodes and which FFmpeg's command line the round trip follows."""
    import av

    lib = av.library_versions.get("libavcodec", ())
    return {"libavcodec": ".".join(str(x) for x in lib), "ffmpeg": getattr(av, "ffmpeg_version_info", None),
            "follows_ffmpeg": FOLLOWS_FFMPEG, "verified": tuple(lib[:2]) == LIBAVCODEC_VERIFIED}


#: 8-bit planar YUV -> the MJPEG encoder's pixel format that ffmpeg's command line picks for it
_TARGET = {f"yuv{j}{s}p": f"yuvj{s}p" for s in ("420", "422", "444") for j in ("", "j")}


def _plane(frame, i: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]


def jpeg_qscale(data: bytes) -> int | None:
    """The MJPEG quantiser scale of one of libavcodec's JPEG pictures: its (only) quantisation table
    is the MPEG-1 intra matrix times qscale / 8, whose second zig-zag entry is 16."""
    i = data.find(b"\xff\xdb")
    return None if i < 0 or i + 6 >= len(data) else data[i + 6] // 2


class MjpegRoundTrip:
    """Feed decoded PyAV frames in order; get each one back as OpenCV would read ffmpeg's JPEG of it.

    ``fps`` and ``sar`` are the video stream's frame rate and sample aspect ratio (the ffmpeg
    command line's encoder settings).  ``qscales`` lists the quantiser of every picture so far."""

    def __init__(self, fps: Fraction | float | None = None, sar: Fraction | None = None):
        self.fps = Fraction(fps).limit_denominator(1001000) if fps else Fraction(25)
        self.sar = sar if sar and sar > 0 else Fraction(1, 1)
        self._enc = None
        self._size: tuple | None = None
        self.qscales: list[int | None] = []

    def _encoder(self, width: int, height: int, pix_fmt: str = "yuvj420p"):
        import av

        if self._enc is None or self._size != (width, height, pix_fmt):
            if self._enc is not None:  # a new picture size (a new stream): flush the old encoder
                self._enc.encode(None)
            enc = av.CodecContext.create("mjpeg", "w")
            enc.width, enc.height = width, height
            enc.pix_fmt = pix_fmt
            enc.time_base = 1 / self.fps
            enc.framerate = self.fps
            enc.bit_rate = BIT_RATE
            enc.sample_aspect_ratio = self.sar
            enc.thread_count = 1
            self._enc, self._size = enc, (width, height, pix_fmt)
        return self._enc

    def full_range(self, frame):
        """``frame`` as the full-range PyAV frame the reference's ffmpeg 5.1 feeds its MJPEG encoder:
        the yuvj format of the same chroma subsampling (4:2:0, 4:2:2 or 4:4:4), ranges converted
        with 5.1's formulas; yuvj420p for anything else."""
        import av

        name = frame.format.name
        target = _TARGET.get(name)
        if target is None:
            return frame.reformat(format="yuvj420p")  # this FFmpeg's libswscale: close, not bit-exact to 5.1
        full = name.startswith("yuvj") or frame.color_range == 2  # AVCOL_RANGE_JPEG
        out = av.VideoFrame(frame.width, frame.height, target)
        for i, lut in enumerate((LUMA_TO_FULL, CHROMA_TO_FULL, CHROMA_TO_FULL)):
            src = _plane(frame, i)
            dst = _plane(out, i)
            if full:
                np.copyto(dst, src)
            else:
                np.take(lut, src, out=dst)
        return out

    def encode(self, frame) -> bytes:
        """The JPEG file ffmpeg would write for ``frame`` (the next picture of the stream)."""
        pic = self.full_range(frame)
        enc = self._encoder(pic.width, pic.height, pic.format.name)
        pic.pts = len(self.qscales)
        pic.time_base = enc.time_base
        packets = enc.encode(pic)
        if len(packets) != 1:  # MJPEG is intra-only without delay: one packet per picture
            raise DecodeError(f"the MJPEG encoder returned {len(packets)} packets for one picture")
        data = bytes(packets[0])
        self.qscales.append(jpeg_qscale(data))
        return data

    def bgr(self, frame) -> np.ndarray:
        """``frame`` after the round trip: (H, W, 3) uint8 BGR as ``cv2.imread`` gives it."""
        import cv2

        img = cv2.imdecode(np.frombuffer(self.encode(frame), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise DecodeError("OpenCV could not decode an MJPEG picture of the JPEG round trip")
        return img
