"""The streaming multipart parser of the service (no server: a fake request feeds the body)."""
from __future__ import annotations

import asyncio
import os

import pytest

pytest.importorskip("python_multipart", reason="the serve extra (python-multipart) is not installed")

from avsync.apps.service.uploads import receive_upload, safe_name  # noqa: E402


class FakeRequest:
    def __init__(self, body: bytes, boundary: str):
        self.headers = {"content-type": f"multipart/form-data; boundary={boundary}",
                        "content-length": str(len(body))}
        self._body = body

    async def stream(self):
        for i in range(0, len(self._body), 7):  # small chunks: the parser must keep state across them
            yield self._body[i:i + 7]


def body(parts, boundary="XyZb0und"):
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: video/mp4\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), boundary


@pytest.mark.parametrize("file_first", [True, False])
def test_the_file_name_survives_fields_after_the_file_part(tmp_path, file_first):
    parts = [("file", "holiday.mp4", b"\x00" * 100), ("tolerance", None, b"atsc"), ("method", None, b"lips")]
    if not file_first:
        parts = parts[1:] + parts[:1]
    data, b = body(parts)
    up = asyncio.run(receive_upload(FakeRequest(data, b), str(tmp_path), 10_000))
    assert up.name == "holiday.mp4"
    assert os.path.basename(up.path) == "holiday.mp4" and up.size == 100
    assert up.fields == {"tolerance": "atsc", "method": "lips"}


@pytest.mark.parametrize("raw,want", [("Café_Ümlaut.mp4", "Café_Ümlaut.mp4"), ("интервью.mkv", "интервью.mkv"),
                                      ("東京 ニュース.mp4", "東京_ニュース.mp4"), ("../../etc/passwd", "passwd"),
                                      ("a\u202eb.mp4", "a_b.mp4"), ("..", "upload"), ("a/b\\c.mp4", "c.mp4")])
def test_safe_names_keep_letters_of_any_script(raw, want):
    assert safe_name(raw) == want


def test_a_non_ascii_name_reaches_the_upload(tmp_path):
    data, b = body([("file", "Grüße.mp4", b"\x01" * 10)])
    up = asyncio.run(receive_upload(FakeRequest(data, b), str(tmp_path), 10_000))
    assert up.name == "Grüße.mp4"
