"""The web app names tracks as the CLI does: the tags in the catalogue API and the library page,
``title``/``artist`` in query records (a fingerprint-only library of the tagged test files)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from audiolsh.library import Library, index_audio


@pytest.fixture(scope="module")
def client(tagged_music: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An app over a fingerprint-only library of the tagged files (a few seconds, once)."""
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    where = tmp_path_factory.mktemp("web-tags") / "library"
    with Library.create(where, modes=("fingerprint",)) as library:
        assert not index_audio(library, [tagged_music], workers=1).failed
    with TestClient(create_app(Settings(index_path=where, warm_up=False))) as c:
        yield c


def test_the_catalogue_api_gives_names_and_tags(client: Any, tagged_music: Path) -> None:
    items = {Path(t["path"]).name: t for t in client.get("/api/tracks").json()["items"]}
    blue = items["blue.flac"]
    assert (blue["name"], blue["title"], blue["artist"], blue["album"], blue["year"]) == (
        "Ana - Blue", "Blue", "Ana", "Colours", 1999)
    assert blue["path"] == str(tagged_music / "Ana" / "blue.flac")
    plain = items["plain.wav"]
    assert (plain["name"], plain["title"], plain["artist"], plain["year"]) == (
        "plain.wav", "plain.wav", None, None)
    # The search finds tags as well as file names.
    assert [t["name"] for t in client.get("/api/tracks?q=colours").json()["items"]] == ["Ana - Blue"]
    by_artist = client.get("/api/tracks?q=ANA").json()["items"]
    assert {t["name"] for t in by_artist} == {"Ana - Blue", "Ana - Dawn"}
    assert [t["name"] for t in client.get("/api/tracks?q=dawn.mp3").json()["items"]] == ["Ana - Dawn"]


def test_the_library_page_and_a_match_show_the_names(client: Any, tagged_music: Path) -> None:
    page = client.get("/library").text.replace("<wbr>", "")  # the page's break opportunities
    assert "Bö Trio - Night Song" in page and "Ana - Blue" in page and ">plain.wav<" in page
    # a file name finds its tagged track
    searched = client.get("/library?q=dawn.mp3").text.replace("<wbr>", "")
    assert "Ana - Dawn" in searched and "Ana - Blue" not in searched
    y, sr = sf.read(tagged_music / "bo.ogg", dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, y[2 * sr: 9 * sr], sr, format="WAV")
    r = client.post("/api/identify", files={"file": ("clip.wav", buf.getvalue(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    match = r.json()["match"]
    assert (match["title"], match["artist"], Path(match["path"]).name) == ("Night Song", "Bö Trio", "bo.ogg")
