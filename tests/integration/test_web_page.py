"""The web page in a real browser (Debian chromium driven by Python playwright)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from avsync.api import DetectOptions, detect
from server_helpers import Server

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _chromium() -> str:
    for p in (os.environ.get("AVSYNC_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if p and os.path.isfile(p):
            return p
    pytest.skip("chromium not found (apt-get install chromium; .ci/run installs it)")


@pytest.fixture()
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    exe = _chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def server(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with Server(data, "--workers", "1") as srv:
        yield srv


def _shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("AVSYNC_TEST_OUTPUT") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_upload_shows_verdict_chart_and_fix(browser, server, far_out_clip, tmp_path):
    want = detect(far_out_clip, DetectOptions())
    page = browser.new_page(viewport={"width": 1000, "height": 1200}, accept_downloads=True)
    page.goto(server.url + "/")
    assert "avsync" in page.title()
    page.set_input_files("#file", str(far_out_clip))
    page.wait_for_selector("#result", state="visible", timeout=120_000)
    verdict = page.get_attribute("#verdict", "data-verdict")
    assert verdict == want.verdict == "out_of_sync"
    assert page.inner_text("#verdict") == "OUT OF SYNC"
    assert float(page.get_attribute("#offset", "data-ms")) == pytest.approx(want.offset_ms, abs=0.01)
    assert f"{want.confidence:.2f}" == page.inner_text("#confidence")
    # the chart: tolerance band, one point per assessable window, the confidence line
    assert page.locator("#chart #band").count() == 1
    n_ok = sum(1 for w in want.windows if w.offset_ms is not None)
    assert page.locator("#chart circle.pt").count() == n_ok > 3
    assert page.locator("#chart #confline").count() == 1
    assert "ffmpeg" in page.inner_text("#fix") and "-itsoffset" in page.inner_text("#fix")
    assert not page.is_visible("#error")
    # a legend under the panels names every mark
    legend = " ".join(page.locator("#chart #legend text").all_text_contents())
    for words in ("tolerance", "in tolerance", "out of tolerance", "not judged", "whole-file offset",
                  "confidence per window"):
        assert words in legend, legend
    # y ticks at round values; the last x tick inside the chart
    ticks = [float(t) for t in page.locator("#chart #yticks text").all_text_contents()]
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and steps.pop() in (10, 20, 25, 50, 100, 200, 250, 500), ticks
    box = page.locator("#chart").bounding_box()
    last = page.locator("#chart #xticks text").last.bounding_box()
    assert last["x"] + last["width"] <= box["x"] + box["width"] + 0.5
    # the fix command wraps between words only
    assert page.eval_on_selector("#fix pre", "e => getComputedStyle(e).wordBreak") == "normal"
    # downloads: the report (JSON), the plot (PNG) and the corrected file
    with page.expect_download() as dl:
        page.click("#dl-json")
    rep = json.loads(Path(dl.value.path()).read_text())
    assert rep["schema"] == "avsync.report/1" and rep["offset_ms"] == pytest.approx(want.offset_ms, abs=0.01)
    assert dl.value.suggested_filename.endswith(".avsync.json")
    with page.expect_download() as dl:
        page.click("#dl-png")
    assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.is_visible("#dl-fixed")
    with page.expect_download() as dl:
        page.click("#dl-fixed")
    fixed = tmp_path / dl.value.suggested_filename
    dl.value.save_as(str(fixed))
    assert fixed.name == far_out_clip.stem + ".fixed" + far_out_clip.suffix
    again = detect(fixed, DetectOptions())
    assert abs(again.offset_ms) < 40.0, again.offset_ms  # the corrected file is in sync within a frame
    shot = _shots(tmp_path) / "web_page_result.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_bad_file_shows_the_error(browser, server, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    page = browser.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    text = page.inner_text("#error")
    assert text.startswith("holiday.mp4: ") and "cannot open" in text
    assert not page.is_visible("#result")
    page.screenshot(path=str(_shots(tmp_path) / "web_page_error.png"))
