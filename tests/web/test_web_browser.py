"""The page in a real browser: headless Chromium (Debian's package) driven by Selenium.

Skipped only when chromium or chromedriver is absent (``make system-deps`` installs both).
Screenshots go to $AUDIOLSH_TEST_ARTIFACTS (default: pytest's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium and chromedriver are not installed (make system-deps)")
WAIT_S = 30.0


@pytest.fixture(scope="module")
def server(web_corpus: Any) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    # two tracks a list: of the corpus's four, the clip's own is the match and three are left
    app = create_app(Settings(index_path=web_corpus.library, warm_up=True, page_k=2))
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
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("AUDIOLSH_TEST_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


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


def test_upload_names_the_track(server: str, browser: Any, web_corpus: Any, tmp_path: Path,
                                artifacts: Path) -> None:
    clip = tmp_path / "mystery clip.wav"
    clip.write_bytes(web_corpus.clip("charlie.ogg", offset_s=12.0, duration_s=10.0))
    browser.set_window_size(1280, 1800)
    browser.get(server + "/")
    assert "What is this track?" in browser.page_source
    t0 = time.perf_counter()
    browser.find_element("id", "file").send_keys(str(clip))
    title = wait_for(browser, visible_text(browser, "match-title"))
    elapsed_s = time.perf_counter() - t0
    assert title == "charlie.ogg"
    assert "0:12" in browser.find_element("id", "match-detail").text
    assert elapsed_s < 5.0, f"the answer took {elapsed_s:.1f} s"
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
    wait_for(browser, lambda d: canvas_ink(d, "spectrogram") > 1000 and canvas_ink(d, "beat") > 100)
    # The match player seeks to where the clip starts (range requests make that possible).
    browser.execute_script("document.getElementById('match-player').muted = true;"
                           "document.getElementById('match-player').load();")
    wait_for(browser, lambda d: d.execute_script(
        "const a = document.getElementById('match-player'); return a.readyState >= 1 && a.currentTime > 11;"))
    chroma = browser.find_element("css selector", '.tabs [data-by="chroma"]')
    chroma.click()
    assert chroma.get_attribute("aria-selected") == "true"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 140, 4000))
    browser.save_screenshot(str(artifacts / "web-query-desktop.png"))
    # Phone width: nothing wider than the screen.
    browser.set_window_size(390, 1800)
    wait_for(browser, lambda d: d.execute_script("return window.innerWidth <= 400"))
    wait_for(browser, lambda d: d.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1"))
    browser.save_screenshot(str(artifacts / "web-query-phone.png"))
    assert (artifacts / "web-query-desktop.png").stat().st_size > 10_000


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
    assert kinds == {(k, b) for k in lists for b in ("rhythm", "timbre", "chroma")}


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


def test_library_page_search(server: str, browser: Any, web_corpus: Any, artifacts: Path) -> None:
    browser.set_window_size(390, 1400)
    browser.get(server + "/library")
    rows = browser.find_elements("css selector", "#tracks tbody tr")
    assert len(rows) == len(web_corpus.ids)
    browser.find_element("id", "q").send_keys("DEL")
    shown = [r for r in rows if r.is_displayed()]
    assert [r.find_element("css selector", ".name").text for r in shown] == ["delta.wav"]
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    browser.save_screenshot(str(artifacts / "web-library-phone.png"))
