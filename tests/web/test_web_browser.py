"""The page in a real browser: headless Chromium (Debian's package) driven by Selenium.

Skipped only when chromium or chromedriver is absent (``make system-deps`` installs both).
Screenshots go to $AUDIOLSH_ARTIFACTS (default: test-artifacts/ at the repository's root): a combined
similar result, a segments timeline and the library page, each at desktop (1280x800) and phone
(390x844) size.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium and chromedriver are not installed (make system-deps)")
WAIT_S = 30.0
REPO = Path(__file__).resolve().parents[2]
SIZES = {"desktop": (1280, 800, False), "phone": (390, 844, True)}


@pytest.fixture(scope="module")
def server(web_corpus: Any) -> Iterator[str]:
    # two tracks a list: of the corpus's four, the clip's own is the match and three are left
    with serve(web_corpus.library, warm_up=True, page_k=2) as url:
        yield url


@contextmanager
def serve(library: Path, **settings: Any) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    app = create_app(Settings(index_path=library, **settings))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the server did not start")
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1800", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    path = Path(os.environ.get("AUDIOLSH_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails on anything else."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def screenshots(driver: Any, artifacts: Path, stem: str, element_id: str | None) -> None:
    """``stem``-desktop.png and ``stem``-phone.png with ``element_id`` at the top of the screen
    (None: the page's top); at both sizes nothing is wider than the screen."""
    for size, (width, height, mobile) in SIZES.items():
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        try:
            wait_for(driver, lambda d, w=width: d.execute_script("return window.innerWidth") == w)
            driver.execute_script("const e = arguments[0] && document.getElementById(arguments[0]);"
                                  "if (e) { e.scrollIntoView({block: 'start'}); window.scrollBy(0, -60); }"
                                  "else window.scrollTo(0, 0);", element_id)  # -60: the sticky header
            wait_for(driver, lambda d: d.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"))
            path = artifacts / f"{stem}-{size}.png"
            driver.save_screenshot(str(path))
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        assert png_size(path) == (width, height)
        assert path.stat().st_size > 20_000  # a page, not a blank screen


def upload(driver: Any, server: str, path: Path) -> None:
    driver.set_window_size(1280, 1800)
    driver.get(server + "/")
    driver.find_element("id", "file").send_keys(str(path))


def wait_for(driver: Any, condition: Any, timeout_s: float = WAIT_S) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(condition)


def visible_text(driver: Any, element_id: str) -> Any:
    def check(d: Any) -> str | bool:
        el = d.find_element("id", element_id)
        return (el.is_displayed() and el.text.strip()) or False

    return check


def canvas_ink(driver: Any, element_id: str) -> int:
    """How many pixels of a canvas were painted."""
    return int(driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;", element_id))


def test_the_page_names_the_other_track_that_holds_the_same_audio(browser: Any, same_audio: Any) -> None:
    with serve(same_audio.library, warm_up=False) as url:
        upload(browser, url, same_audio.clip)
        title = wait_for(browser, visible_text(browser, "match-title"))
        detail = browser.find_element("id", "match-detail").text
    assert title in same_audio.where
    (other,) = set(same_audio.where) - {title}
    at = round(same_audio.where[other])
    assert f"the same audio is also in {other} at {at // 60}:{at % 60:02d}" in detail, detail


def test_the_page_says_a_weak_candidate_was_checked_against_the_tracks_audio(
    server: str, browser: Any, web_corpus: Any, tmp_path: Path
) -> None:
    clip = tmp_path / "noisy.wav"
    clip.write_bytes(web_corpus.noisy_clip("delta.wav", offset_s=12.0, duration_s=3.0, snr_db=-9.0, seed=8))
    upload(browser, server, clip)
    assert wait_for(browser, visible_text(browser, "match-title")) == "delta.wav"
    assert "checked against the track's audio" in browser.find_element("id", "match-detail").text


def test_upload_names_the_track(server: str, browser: Any, web_corpus: Any, tmp_path: Path,
                                artifacts: Path) -> None:
    clip = tmp_path / "mystery clip.wav"
    # 24.7 s in: the page says 0:25 (rounded), not 0:24.
    clip.write_bytes(web_corpus.clip("charlie.ogg", offset_s=24.7, duration_s=10.0))
    upload(browser, server, clip)
    assert "What is this track?" in browser.page_source
    title = wait_for(browser, visible_text(browser, "match-title"))
    assert title == "charlie.ogg"
    assert "starts at 0:25 in this track" in browser.find_element("id", "match-detail").text
    assert "BPM" in browser.find_element("id", "query-detail").text
    # The CLI's default mode is the page's first tab, selected.
    tabs = browser.find_elements("css selector", ".tabs [data-by]")
    assert [t.get_attribute("data-by") for t in tabs] == ["combined", "rhythm", "timbre", "chroma", "peaks"]
    assert tabs[0].get_attribute("aria-selected") == "true"
    most = browser.find_elements("css selector", "#most li .name")
    least = browser.find_elements("css selector", "#least li .name")
    # The clip's own track is the match, in neither list; no track is in both: of four tracks
    # two of the other three are the most similar, and the third the least.
    assert (len(most), len(least)) == (2, 1)
    assert sorted(e.text for e in most + least) == ["alpha.wav", "bravo.flac", "delta.wav"]
    # The bars draw the [0, 1] score: the least similar track's is the shortest, under half.
    widths = [float(e.value_of_css_property("width").removesuffix("px")) / float(
        e.find_element("xpath", "..").value_of_css_property("width").removesuffix("px"))
        for e in browser.find_elements("css selector", "#most li .bar span, #least li .bar span")]
    assert len(widths) == 3 and widths[2] < min(widths[:2]) and widths[2] < 0.5
    assert len(browser.find_elements("css selector", "#most audio")) == len(most)
    m3u = browser.find_element("id", "m3u-most").get_attribute("href")
    assert "/api/playlist.m3u?ids=" in m3u
    wait_for(browser, lambda d: canvas_ink(d, "spectrogram") > 1000 and canvas_ink(d, "beat") > 100)
    screenshots(browser, artifacts, "web-combined", "similar-card")
    # The match player seeks to where the clip starts (range requests make that possible).
    browser.execute_script("document.querySelectorAll('audio').forEach((a) => { a.muted = true; });"
                           "document.getElementById('match-player').load();")
    wait_for(browser, lambda d: d.execute_script(
        "const a = document.getElementById('match-player'); return a.readyState >= 1 && a.currentTime > 24;"))
    # One player at a time: starting a list's player pauses the match player.
    browser.execute_script("document.getElementById('match-player').play();")
    wait_for(browser, lambda d: d.execute_script("return !document.getElementById('match-player').paused"))
    browser.execute_script("document.querySelector('#most audio').play();")
    wait_for(browser, lambda d: d.execute_script(
        "return !document.querySelector('#most audio').paused"
        " && [...document.querySelectorAll('audio')].filter((a) => !a.paused).length === 1"))
    # Peaks has no least similar; k picks the list length (a new query).
    peaks = browser.find_element("css selector", '.tabs [data-by="peaks"]')
    peaks.click()
    assert peaks.get_attribute("aria-selected") == "true"
    assert "not defined for peak sets" in browser.find_element("id", "least").text
    peak_names = [e.text for e in browser.find_elements("css selector", "#most li .name")]
    assert peak_names and "charlie.ogg" not in peak_names  # the clip's own track is the match
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "k")).select_by_value("3")
    wait_for(browser, lambda d: len(d.find_elements("css selector", "#most li .name")) == 3)
    peaks = browser.find_element("css selector", '.tabs [data-by="peaks"]')
    assert peaks.get_attribute("aria-selected") == "true"


def test_segments_timeline_of_a_long_upload(server: str, browser: Any, web_corpus: Any, tmp_path: Path,
                                            artifacts: Path) -> None:
    """40 s: alpha, then delta: the timeline shows both, in order, each playable where it starts."""
    import numpy as np

    a, d = web_corpus.audio("alpha.wav"), web_corpus.audio("delta.wav")
    sr = 22050
    mix = tmp_path / "radio_show_part_1.wav"
    mix.write_bytes(web_corpus.wav(np.concatenate([a[5 * sr: 25 * sr], d[10 * sr: 30 * sr]])))
    upload(browser, server, mix)
    wait_for(browser, visible_text(browser, "segments-detail"))
    blocks = browser.find_elements("css selector", "#timeline .segment")
    assert [b.text for b in blocks] == ["alpha.wav", "delta.wav"]
    lefts = [float(b.value_of_css_property("left").removesuffix("px")) for b in blocks]
    assert lefts[0] < 20 < lefts[1]  # delta starts half-way along
    rows = browser.find_elements("css selector", "#segment-list li")
    assert "0:00" in rows[0].text and "from 0:05" in rows[0].text and "delta.wav" in rows[1].text
    screenshots(browser, artifacts, "web-segments", "segments-card")
    browser.execute_script("document.getElementById('segment-player').muted = true;")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", blocks[1])
    blocks[1].click()
    player = browser.find_element("id", "segment-player")
    assert f"/api/tracks/{web_corpus.ids['delta.wav']}/audio#t=" in player.get_attribute("src")


def test_results_download_as_json_and_csv(server: str, browser: Any, web_corpus: Any, tmp_path: Path,
                                          downloads: Path) -> None:
    import csv
    import json

    clip = tmp_path / "query.wav"
    clip.write_bytes(web_corpus.clip("alpha.wav", offset_s=20.0, duration_s=8.0))
    browser.set_window_size(1280, 1800)
    browser.get(server + "/")
    browser.find_element("id", "file").send_keys(str(clip))
    assert wait_for(browser, visible_text(browser, "match-title")) == "alpha.wav"
    browser.find_element("id", "download-json").click()
    browser.find_element("id", "download-csv").click()
    json_file, csv_file = downloads / "query-audiolsh.json", downloads / "query-audiolsh.csv"
    wait_for(browser, lambda d: json_file.is_file() and csv_file.is_file())  # renamed when complete
    data = json.loads(json_file.read_text())
    assert data["identify"]["match"]["track_id"] == web_corpus.ids["alpha.wav"] and "plots" not in data
    rows = list(csv.DictReader(csv_file.open(newline="")))
    assert rows[0]["kind"] == "match" and rows[0]["path"].endswith("alpha.wav")
    kinds = {(r["kind"], r["by"]) for r in rows[1:]}
    lists = ("most_similar", "least_similar")
    modes = ("combined", "rhythm", "timbre", "chroma", "peaks")
    assert kinds == {(k, b) for k in lists for b in modes} - {("least_similar", "peaks")}


def test_bad_upload_shows_a_friendly_message(server: str, browser: Any, tmp_path: Path) -> None:
    fake = tmp_path / "song.mp3"
    fake.write_text("just some text, renamed\n" * 50)
    browser.set_window_size(1280, 1200)
    browser.get(server + "/")
    browser.find_element("id", "file").send_keys(str(fake))
    message = wait_for(browser, visible_text(browser, "error"))
    assert "song.mp3" in message and "not an audio file" in message
    assert not browser.find_element("id", "results").is_displayed()


def test_recording_from_the_microphone(server: str, browser: Any, artifacts: Path) -> None:
    """Chromium's fake microphone (a beep) is recorded, uploaded as WebM and answered."""
    browser.set_window_size(1280, 1800)
    browser.get(server + "/")
    record = browser.find_element("id", "record")
    if not record.is_enabled():
        pytest.skip("the server cannot decode recordings (no ffmpeg)")
    record.click()
    wait_for(browser, lambda d: "Stop" in d.find_element("id", "record-label").text)
    time.sleep(4.0)
    record.click()
    wait_for(browser, lambda d: d.find_element("id", "results").is_displayed()
             or d.find_element("id", "error").is_displayed())
    error = browser.find_element("id", "error")
    assert not error.is_displayed(), error.text
    assert browser.find_element("id", "query-name").text.startswith("recording.")
    assert browser.find_element("id", "match-title").text  # a track, or "Not in the library"
    browser.save_screenshot(str(artifacts / "web-recording.png"))


def test_library_page_search_and_find_similar(server: str, browser: Any, web_corpus: Any,
                                              artifacts: Path) -> None:
    browser.set_window_size(1280, 1400)
    browser.get(server + "/library")
    rows = browser.find_elements("css selector", "#tracks tbody tr")
    assert len(rows) == len(web_corpus.ids)
    screenshots(browser, artifacts, "web-library", None)
    browser.find_element("id", "q").send_keys("DEL")
    shown = [r for r in rows if r.is_displayed()]
    assert [r.find_element("css selector", ".name").text for r in shown] == ["delta.wav"]
    # Find similar: the query page on that track, the track itself left out of its lists.
    shown[0].find_element("css selector", "a.similar-link").click()
    assert wait_for(browser, visible_text(browser, "match-title")) == "delta.wav"
    # k = 2 (the server's page_k): two of the other three are the most similar, the third the least
    wait_for(browser, lambda d: len(d.find_elements("css selector", "#most li .name")) == 2)
    names = [e.text for e in browser.find_elements("css selector", "#most li .name")]
    least = [e.text for e in browser.find_elements("css selector", "#least li .name")]
    assert sorted(names + least) == ["alpha.wav", "bravo.flac", "charlie.ogg"]
    assert not browser.find_element("id", "clip-card").is_displayed()
    timbre = browser.find_element("css selector", '.tabs [data-by="timbre"]')
    timbre.click()
    # The timbre lists come from their own request: the playlist link names them.
    wait_for(browser, lambda d: "by%20timbre" in d.find_element("id", "m3u-most").get_attribute("href"))
    assert len(browser.find_elements("css selector", "#most li .name")) == 2
    assert "delta.wav" not in browser.find_element("id", "most").text
    browser.save_screenshot(str(artifacts / "web-similar-to-a-track.png"))


@pytest.mark.parametrize(("url", "rendered"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_api_docs_render_from_local_files(server: str, browser: Any, url: str, rendered: str) -> None:
    """Swagger UI and ReDoc draw the API's operations from this server's files; the one other
    host the page names (ReDoc's logo on its maker's CDN) is blocked by the page's policy."""
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.blocked = []; document.addEventListener('securitypolicyviolation',"
        " (e) => window.blocked.push(e.blockedURI));")})
    try:
        browser.set_window_size(1280, 1200)
        browser.get(server + url)
        wait_for(browser, lambda d: len(d.find_elements("css selector", rendered)) >= 5)
        assert "Identify a clip" in browser.find_element("tag name", "body").text
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name);")
        blocked = browser.execute_script("return window.blocked;")
        assert [u for u in loaded if not u.startswith(server)] == blocked
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": script["identifier"]})
