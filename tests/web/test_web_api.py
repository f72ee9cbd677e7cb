"""The REST API through FastAPI's test client: answers, records, bad uploads, errors."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library, index_audio
from audiolsh.query.identify import identify
from audiolsh.query.records import identify_record

IDENTIFY_KEYS = {"query", "match", "elapsed_ms"}
MATCH_KEYS = {"path", "track_id", "title", "artist", "offset_s", "score", "confidence", "matched", "speed",
              "tempo", "pitch", "verified", "also"}
RESULT_KEYS = {"track_id", "path", "title", "artist", "score", "rank", "offset_s", "query_offset_s",
               "raw_score"}


def post(client: Any, url: str, name: str, data: bytes) -> Any:
    return client.post(url, files={"file": (name, data, "application/octet-stream")})


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert "audiolsh-upload-" not in body["detail"]  # never the server's temporary path
    return body


# identification --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alpha.wav", "charlie.ogg"])
def test_identify_names_the_track_and_offset(client: Any, web_corpus: Any, name: str) -> None:
    r = post(client, "/api/identify", "clip.wav", web_corpus.clip(name, offset_s=12.0))
    assert r.status_code == 200, r.text
    record = r.json()
    assert set(record) == IDENTIFY_KEYS
    assert record["query"] == "clip.wav"
    match = record["match"]
    assert set(match) == MATCH_KEYS
    assert match["track_id"] == web_corpus.ids[name]
    assert Path(match["path"]).name == name
    assert abs(match["offset_s"] - 12.0) < 0.5
    assert 0.0 <= match["confidence"] <= 1.0 and match["also"] == []  # no other track holds this audio
    assert record["elapsed_ms"] > 0


def test_identify_checks_a_weak_candidate_against_the_tracks_file(client: Any, web_corpus: Any) -> None:
    """3 s of delta.wav under pink noise 9 dB louder: too few landmarks agree for a match, the
    waveform agrees with the file the server can read, and the answer is delta.wav."""
    clip = web_corpus.noisy_clip("delta.wav", offset_s=12.0, duration_s=3.0, snr_db=-9.0, seed=8)
    r = post(client, "/api/identify", "noisy.wav", clip)
    assert r.status_code == 200, r.text
    match = r.json()["match"]
    assert match is not None and Path(match["path"]).name == "delta.wav" and match["matched"]
    assert match["verified"] > 0.3 and abs(match["offset_s"] - 12.0) < 0.1


def test_identify_names_the_other_track_that_holds_the_same_audio(same_audio: Any) -> None:
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    app = create_app(Settings(index_path=same_audio.library, warm_up=False))
    with TestClient(app) as client:
        r = post(client, "/api/identify", "clip.wav", same_audio.clip.read_bytes())
    assert r.status_code == 200, r.text
    match = r.json()["match"]
    (other,) = match["also"]
    assert {Path(match["path"]).name, Path(other["path"]).name} == set(same_audio.where)
    for m in (match, other):
        assert abs(m["offset_s"] - same_audio.where[Path(m["path"]).name]) < 0.1 and m["matched"]
    assert set(other) == MATCH_KEYS - {"also"}


def test_identify_record_is_the_shared_record(client: Any, web_corpus: Any) -> None:
    """The API's answer is exactly what the shared record builder makes of the domain call."""
    data = web_corpus.clip("bravo.flac", offset_s=20.0)
    r = post(client, "/api/identify", "b.wav", data)
    y, sr = sf.read(io.BytesIO(data), dtype="float32")
    with Library.open(web_corpus.library, readonly=True) as library:
        expected = identify_record("b.wav", identify(library, y, sr))
    got = r.json()
    del got["elapsed_ms"]
    assert got == expected


def test_identify_says_not_in_the_library(client: Any, web_corpus: Any) -> None:
    r = post(client, "/api/identify", "other.wav", web_corpus.outsider.read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["match"] is None and r.json()["reason"]


def test_min_confidence_shows_the_weak_candidate_and_is_checked(client: Any, web_corpus: Any) -> None:
    from audiolsh.index.confidence import load

    data = web_corpus.outsider.read_bytes()
    r = client.post("/api/identify?min_confidence=0", files={"file": ("other.wav", data)})
    assert r.status_code == 200, r.text
    m = r.json()["match"]
    assert set(m) == MATCH_KEYS and m["matched"] is False
    assert m["confidence"] < load().default_min_confidence
    assert "below threshold" in r.json()["reason"]
    for bad in ("2", "-0.5", "high"):
        r = client.post(f"/api/identify?min_confidence={bad}", files={"file": ("o.wav", data)})
        body = assert_error(r, 422, "invalid_request")
        assert "min_confidence" in body["detail"]


def test_short_clip_is_identified_or_honestly_not(client: Any, web_corpus: Any) -> None:
    clip = web_corpus.clip("alpha.wav", offset_s=12.0, duration_s=1.5)
    r = post(client, "/api/identify", "short.wav", clip)
    assert r.status_code == 200, r.text
    record = r.json()
    if record["match"] is None:
        assert record["reason"]
    else:
        assert record["match"]["track_id"] == web_corpus.ids["alpha.wav"] and "reason" not in record
    r = post(client, "/api/segments", "short.wav", clip)
    assert r.status_code == 200, r.text
    # The page identifies it too; similarity says it needs the server's min_clip_s.
    out = post(client, "/api/analyse?min_confidence=0", "short.wav", clip).json()
    assert out["identify"]["match"] is not None
    (only,) = out["similar"]
    assert only["results"] == [] and only["error"].startswith("too short for similarity: 1.500 s")


def test_truncated_wav_still_identified(client: Any, web_corpus: Any) -> None:
    """A WAV cut short (header promises more frames) is read as far as it goes."""
    data = (web_corpus.music / "delta.wav").read_bytes()
    r = post(client, "/api/identify", "cut.wav", data[: len(data) // 2])
    assert r.status_code == 200, r.text
    assert r.json()["match"]["track_id"] == web_corpus.ids["delta.wav"]


# similarity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["rhythm", "timbre", "chroma", "combined", "peaks"])
def test_similar_names_the_clips_own_track_and_leaves_it_out(client: Any, web_corpus: Any, by: str) -> None:
    own = web_corpus.ids["bravo.flac"]
    clip = {"file": ("c.wav", web_corpus.clip("bravo.flac"))}
    r = client.post(f"/api/similar?by={by}&k=3", files=clip)
    assert r.status_code == 200, r.text
    record = r.json()
    assert set(record) == {"query", "match", "results", "elapsed_ms"}
    assert record["match"]["track_id"] == own and abs(record["match"]["offset_s"] - 12.0) < 0.1
    results = record["results"]
    assert [x["rank"] for x in results] == [1, 2, 3]
    assert all(set(x) == RESULT_KEYS for x in results)
    assert own not in [x["track_id"] for x in results]
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= x <= 1.0 for x in scores)
    # include_self: the own track is listed, first.
    kept = client.post(f"/api/similar?by={by}&k=3&include_self=true", files=clip).json()
    assert kept["match"] == record["match"] and kept["results"][0]["track_id"] == own


def test_similar_worst_is_least_similar(client: Any, web_corpus: Any) -> None:
    clip = web_corpus.clip("alpha.wav")
    best = client.post("/api/similar?by=timbre&k=2", files={"file": ("c.wav", clip)}).json()["results"]
    worst = client.post("/api/similar?by=timbre&k=2&worst=true",
                        files={"file": ("c.wav", clip)}).json()["results"]
    # Four tracks: the clip's own and the two most similar are left out; one remains.
    left = set(web_corpus.ids.values()) - {web_corpus.ids["alpha.wav"]} - {x["track_id"] for x in best}
    assert [x["track_id"] for x in worst] == sorted(left)
    # The least similar passage of all scores below the best passage of every track.
    assert worst[0]["score"] < min(x["score"] for x in best)


@pytest.mark.parametrize("query", ["by=loudness", "k=0", "k=1000", "worst=maybe"])
def test_similar_bad_parameters(client: Any, web_corpus: Any, query: str) -> None:
    r = client.post(f"/api/similar?{query}", files={"file": ("c.wav", web_corpus.clip("alpha.wav"))})
    assert_error(r, 422, "invalid_request")


def test_least_similar_by_peaks_is_refused_in_words(client: Any, web_corpus: Any) -> None:
    r = post(client, "/api/similar?by=peaks&worst=true", "c.wav", web_corpus.clip("alpha.wav"))
    body = assert_error(r, 422, "bad_parameter")
    assert body["detail"].startswith("least similar is not defined for peak sets")


def test_similar_to_a_library_track(client: Any, web_corpus: Any) -> None:
    """The library page's "find similar": the CLI's similar --track, the track left out."""
    from click.testing import CliRunner

    from audiolsh.cli import cli

    tid = web_corpus.ids["bravo.flac"]
    r = client.get(f"/api/tracks/{tid}/similar?by=timbre&k=3")
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["track_id"] == tid and Path(record["query"]).name == "bravo.flac"
    assert [x["rank"] for x in record["results"]] == [1, 2, 3]
    assert tid not in {x["track_id"] for x in record["results"]}
    result = CliRunner().invoke(cli, ["similar", "--track", str(tid), "--by", "timbre", "-k", "3",
                                      "--index", str(web_corpus.library), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.output.strip().splitlines()[-1])
    for rec in (from_cli, record):
        del rec["elapsed_ms"]
    assert record == from_cli
    worst = client.get(f"/api/tracks/{tid}/similar?by=combined&k=2&worst=true").json()["results"]
    # four tracks: the query and the 2 most similar are left out of the least similar
    assert len(worst) == 1 and tid not in {x["track_id"] for x in worst}
    assert_error(client.get("/api/tracks/4242/similar"), 404, "not_found")
    assert_error(client.get(f"/api/tracks/{tid}/similar?by=peaks&worst=true"), 422, "bad_parameter")


def test_analyse_returns_everything_the_page_shows(client: Any, web_corpus: Any) -> None:
    r = post(client, "/api/analyse?k=2", "c.wav", web_corpus.clip("charlie.ogg", offset_s=5.0))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["identify"]["match"]["track_id"] == web_corpus.ids["charlie.ogg"]
    lists = {(x["by"], x["worst"]): x for x in out["similar"]}
    # Every mode of the CLI, the default (combined) first.
    assert out["similar"][0]["by"] == "combined"
    modes = ("combined", "rhythm", "timbre", "chroma", "peaks")
    assert set(lists) == {(b, w) for b in modes for w in (False, True)}
    assert lists["peaks", True]["results"] == [] and "not defined" in lists["peaks", True]["error"]
    # Four tracks: the clip's own is left out, the two most similar fill the most similar list
    # and the least similar list has the one left: no track is in both.
    own = web_corpus.ids["charlie.ogg"]
    for by in modes:
        most = [r["track_id"] for r in lists[by, False]["results"]]
        least = [] if by == "peaks" else [r["track_id"] for r in lists[by, True]["results"]]
        assert len(most) == 2 and len(least) == (by != "peaks") and not set(most) & set(least), by
        assert own not in most + least
    assert out["segments"] is None and out["scanned_s"] == out["duration_s"]  # a 10-s clip: no timeline
    spec = out["plots"]["spectrogram"]
    image = np.frombuffer(base64.b64decode(spec["data"]), np.uint8)
    assert image.size == spec["n_mels"] * spec["n_columns"]
    assert image.max() == 255 and image.min() < 128  # scaled to the clip's own range
    assert abs(spec["duration_s"] - 10.0) < 0.01
    beat = out["plots"]["beat_spectrum"]
    assert len(beat["values"]) == round(4.0 / beat["lag_step_s"]) + 1
    assert beat["values"][0] == pytest.approx(1.0, abs=1e-3)
    assert beat["tempo_bpm"] == pytest.approx(60.0 / beat["peak_lag_s"], abs=0.1)


def medley(web_corpus: Any) -> bytes:
    """40 s: 20 s of alpha from 5 s, then 20 s of delta from 10 s."""
    a, d = web_corpus.audio("alpha.wav"), web_corpus.audio("delta.wav")
    sr = 22050
    return web_corpus.wav(np.concatenate([a[5 * sr: 25 * sr], d[10 * sr: 30 * sr]]))


def test_segments_of_a_long_upload(client: Any, web_corpus: Any) -> None:
    """Which track plays when, past the analysed 30 s (the CLI's identify --segments)."""
    record = post(client, "/api/segments", "medley.wav", medley(web_corpus)).json()
    assert set(record) == {"query", "segments", "elapsed_ms"} and record["query"] == "medley.wav"
    segs = record["segments"]
    assert [s["track_id"] for s in segs] == [web_corpus.ids["alpha.wav"], web_corpus.ids["delta.wav"]]
    alpha, delta = segs
    assert alpha["start_s"] < 2.0 and abs(alpha["end_s"] - 20.0) < 2.5 and abs(delta["end_s"] - 40.0) < 2.5
    # Where each stretch starts in its track: 5 s into alpha, 10 s into delta (plus the stretch's own start).
    assert abs(alpha["offset_s"] - (5.0 + alpha["start_s"])) < 0.2
    assert abs(delta["offset_s"] - (10.0 + delta["start_s"] - 20.0)) < 0.2
    out = post(client, "/api/analyse?k=1", "medley.wav", medley(web_corpus)).json()
    assert out["segments"] == segs and out["duration_s"] == 30.0 and out["scanned_s"] == 40.0


# bad uploads -----------------------------------------------------------------------------------


def test_empty_upload(client: Any) -> None:
    body = assert_error(post(client, "/api/identify", "empty.mp3", b""), 422, "bad_audio")
    assert "empty" in body["detail"]


def test_text_renamed_mp3(client: Any) -> None:
    text = b"This is not music, only text pretending to be an MP3 file.\n" * 200
    body = assert_error(post(client, "/api/identify", "song.mp3", text), 422, "bad_audio")
    assert body["detail"].startswith("song.mp3: ")


def test_truncated_flac(client: Any, web_corpus: Any) -> None:
    data = (web_corpus.music / "bravo.flac").read_bytes()[:3000]
    assert_error(post(client, "/api/similar", "bravo.flac", data), 422, "bad_audio")


def test_silence(client: Any, web_corpus: Any) -> None:
    silence = np.zeros(22050 * 5, np.float32)
    body = assert_error(post(client, "/api/identify", "quiet.wav", web_corpus.wav(silence)), 422, "bad_audio")
    assert "silent" in body["detail"]


def test_too_short(client: Any, web_corpus: Any) -> None:
    body = assert_error(post(client, "/api/identify", "s.wav", web_corpus.clip("alpha.wav", duration_s=0.5)),
                        422, "bad_audio")
    assert "too short" in body["detail"] and "at least 1 s" in body["detail"]
    body = assert_error(post(client, "/api/similar", "s.wav", web_corpus.clip("alpha.wav", duration_s=1.5)),
                        422, "bad_audio")
    assert "at least 3 s" in body["detail"]  # similarity keeps the server's min_clip_s


def test_a_clip_just_under_the_minimum_says_its_length_as_the_command_line_does(
        client: Any, web_corpus: Any) -> None:
    near = web_corpus.clip("alpha.wav", duration_s=0.998)
    body = assert_error(post(client, "/api/identify", "near.wav", near), 422, "bad_audio")
    assert body["detail"] == "near.wav: too short: 0.998 s of audio, at least 1 s is needed"


def test_a_clip_with_nothing_to_identify_is_refused_by_its_name(client: Any, web_corpus: Any) -> None:
    click = np.zeros(22050 * 4, np.float32)
    click[1000] = 0.9  # audio, but no landmark
    for url in ("/api/identify", "/api/analyse"):
        body = assert_error(post(client, url, "click.wav", web_corpus.wav(click)), 422, "bad_audio")
        assert body["detail"].startswith("click.wav: no landmarks found"), body


def test_a_weak_candidate_names_the_web_parameter(client: Any, web_corpus: Any) -> None:
    r = client.post("/api/identify", files={"file": ("other.wav", web_corpus.outsider.read_bytes())})
    assert r.status_code == 200 and r.json()["match"] is None
    assert "below min_confidence (" in r.json()["reason"] and "--" not in r.json()["reason"]


def test_an_upload_not_sent_as_a_file_is_told_how(client: Any, web_corpus: Any) -> None:
    data = web_corpus.clip("alpha.wav")
    raw = client.post("/api/identify", content=data, headers={"content-type": "audio/wav"})
    body = assert_error(raw, 415, "unsupported_media_type")
    assert "audio/wav" in body["detail"] and "multipart/form-data" in body["detail"]
    text = client.post("/api/identify", data={"file": "hello"},
                       files={"other": ("x.txt", b"x")})  # multipart, but 'file' is a text field
    body = assert_error(text, 422, "invalid_request")
    assert "text, not a file" in body["detail"] and "UploadFile" not in body["detail"]


def test_header_that_would_decode_into_gigabytes(client: Any) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.full((4000, 8), 0.1, np.float32), 655350, format="FLAC")
    body = assert_error(post(client, "/api/identify", "wide.flac", buf.getvalue()), 422, "bad_audio")
    assert "channels" in body["detail"]


def test_60_mb_upload_refused_before_reading(client: Any) -> None:
    big = b"\0" * (60 * 1024 * 1024)
    body = assert_error(post(client, "/api/identify", "big.wav", big), 413, "upload_too_large")
    assert "50 MB" in body["detail"]


def test_60_mb_chunked_upload_refused(client: Any) -> None:
    """Without a Content-Length the body is counted as it arrives."""
    boundary = "audiolshboundary"

    def body() -> Any:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode()
        for _ in range(60):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/api/identify", content=body(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_error(r, 413, "upload_too_large")


def test_missing_file_field(client: Any, web_corpus: Any) -> None:
    r = client.post("/api/identify", files={"clip": ("c.wav", web_corpus.clip("alpha.wav"))})
    body = assert_error(r, 422, "invalid_request")
    assert "'file'" in body["detail"]


def test_upload_name_is_never_a_path(web_corpus: Any, tmp_path: Path) -> None:
    """A hostile name is shown back without its folders and nothing is written under it;
    the spooled copy lives in the configured folder and is deleted after the request."""
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    spool = tmp_path / "spool"
    spool.mkdir()
    target = tmp_path / "evil.wav"
    app = create_app(Settings(index_path=web_corpus.library, warm_up=False, tmp_dir=spool))
    with TestClient(app) as c:
        name = f"../../{tmp_path.name}/evil.wav"
        r = c.post("/api/identify", files={"file": (str(target), web_corpus.clip("alpha.wav"))})
        assert r.status_code == 200 and r.json()["query"] == "evil.wav"
        r = c.post("/api/identify", files={"file": (name, b"not audio")})
        assert r.status_code == 422 and r.json()["detail"].startswith("evil.wav: ")
    assert not target.exists()
    assert list(spool.iterdir()) == []


# the catalogue ---------------------------------------------------------------------------------


def test_tracks_paged_and_searched(client: Any, web_corpus: Any) -> None:
    first = client.get("/api/tracks?limit=3").json()
    assert first["total"] == 4 and len(first["items"]) == 3
    rest = client.get("/api/tracks?offset=3&limit=3").json()
    names = [t["name"] for t in first["items"] + rest["items"]]
    assert sorted(names) == sorted(web_corpus.ids)
    found = client.get("/api/tracks?q=CHAR").json()
    assert [t["name"] for t in found["items"]] == ["charlie.ogg"] and found["total"] == 1
    track = found["items"][0]
    assert track["duration_s"] == pytest.approx(40.0, abs=0.1) and track["n_items"] > 0
    assert_error(client.get("/api/tracks?limit=0"), 422, "invalid_request")


def test_track_audio_supports_ranges(client: Any, web_corpus: Any) -> None:
    tid = web_corpus.ids["bravo.flac"]
    raw = (web_corpus.music / "bravo.flac").read_bytes()
    whole = client.get(f"/api/tracks/{tid}/audio")
    assert whole.status_code == 200 and whole.content == raw
    assert whole.headers["content-type"] == "audio/flac"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/tracks/{tid}/audio", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == raw[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(raw)}"
    assert_error(client.get("/api/tracks/999999/audio"), 404, "not_found")
    head = client.head(f"/api/tracks/{tid}/audio")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(raw)) and not head.content


@pytest.mark.parametrize(("asked", "status", "code"), [
    ("bytes=abc", 400, "bad_range"), ("bytes=5-2", 400, "bad_range"),
    ("bytes=999999999-", 416, "range_not_satisfiable")])
def test_a_bad_range_is_refused_in_json(client: Any, web_corpus: Any, asked: str, status: int,
                                        code: str) -> None:
    tid = web_corpus.ids["bravo.flac"]
    body = assert_error(client.get(f"/api/tracks/{tid}/audio", headers={"Range": asked}), status, code)
    assert asked in body["detail"]


def test_a_range_of_another_unit_is_ignored(client: Any, web_corpus: Any) -> None:
    tid = web_corpus.ids["bravo.flac"]
    r = client.get(f"/api/tracks/{tid}/audio", headers={"Range": "items=0-1"})
    assert r.status_code == 200 and r.content == (web_corpus.music / "bravo.flac").read_bytes()


def test_health(client: Any) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["pid"] == os.getpid()  # the process that answered (TestClient: this one)


def test_health_says_how_big_the_library_is(client: Any, web_corpus: Any) -> None:
    from audiolsh.library import Library

    with Library.open(web_corpus.library, readonly=True) as library:
        info = library.info()
    body = client.get("/health").json()
    assert body["n_tracks"] == len(web_corpus.ids) == info["n_tracks"]
    assert set(body["rows"]) == set(info["modes"])
    assert body["rows"]["fingerprint"] == info["indexes"]["fingerprint"]["n_hashes"] > 0
    for mode in set(info["modes"]) - {"fingerprint"}:
        assert body["rows"][mode] == info["indexes"][mode]["n_items"] > 0


# pages, docs and errors ------------------------------------------------------------------------


def test_query_page(client: Any) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Drop an audio file" in r.text and 'id="record"' in r.text and "4 tracks" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/app.js", "/static/plots.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_library_page_lists_tracks_groups_and_searches(client: Any, web_corpus: Any) -> None:
    page = client.get("/library").text
    for name in web_corpus.ids:
        assert name in page
    assert "Groups by timbre" in page and "2:40" in page  # total duration of 4 x 40 s
    assert "learned normalisation: wccn-v1" in page
    # "Find similar" from every row.
    assert f'href="/?track={web_corpus.ids["alpha.wav"]}"' in page
    filtered = client.get("/library?q=alp").text
    assert 'aria-label="Play alpha.wav"' in filtered and 'aria-label="Play delta.wav"' not in filtered


def test_tagged_tracks_are_named_artist_title() -> None:
    """Tracks with tags show "Artist - Title" (the playlist, the library page); others their file name."""
    from types import SimpleNamespace

    from audiolsh.library.tags import track_name as display_name

    def track(**tags: str) -> SimpleNamespace:  # the catalogue keeps tags in meta["tags"]
        return SimpleNamespace(path="/m/01_x.flac", meta={"tags": tags})

    assert display_name(track(title="Blue", artist="Ann Lee")) == "Ann Lee - Blue"
    assert display_name(track(title="Blue")) == "Blue"
    assert display_name(track(artist="Ann Lee")) == "Ann Lee - 01_x.flac"
    assert display_name(track()) == display_name(SimpleNamespace(path="/m/01_x.flac", meta={})) == "01_x.flac"


def test_names_wrap_at_word_boundaries_only() -> None:
    """File names have few spaces: they may also wrap after _ and -, and nowhere else."""
    from audiolsh.web.pages import _wbr

    assert str(_wbr("my_song-v2 <live>.wav")) == "my_<wbr>song-<wbr>v2 &lt;live&gt;.wav"


def test_openapi_and_docs(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/api/identify", "/api/similar", "/api/segments", "/api/tracks", "/api/tracks/{track_id}/audio",
            "/api/tracks/{track_id}/similar", "/api/playlist.m3u", "/health"} <= set(schema["paths"])
    params = {p["name"]: p for p in schema["paths"]["/api/similar"]["post"]["parameters"]}
    assert set(params) == {"by", "k", "worst", "include_self"}
    assert set(params["by"]["schema"]["enum"]) == {"combined", "rhythm", "timbre", "chroma", "peaks"}


@pytest.mark.parametrize(("url", "marker"), [("/docs", "swagger-ui"), ("/redoc", "<redoc")])
def test_api_docs_are_served_offline(client: Any, url: str, marker: str) -> None:
    """Swagger UI and ReDoc come from the installed package: no other host is named, and every
    file the page loads is served here."""
    import re

    page = client.get(url)
    assert page.status_code == 200 and marker in page.text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.text, re.I), page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 2
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > (100 if asset.endswith(".svg") else 10_000), asset
    assert client.get("/openapi.json").status_code == 200


def test_playlist_of_a_result_list(client: Any, web_corpus: Any) -> None:
    ids = [web_corpus.ids[n] for n in ("delta.wav", "alpha.wav")]
    r = client.get("/api/playlist.m3u", params={"ids": ids, "name": "like alpha"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/x-mpegurl")
    assert r.headers["content-disposition"] == 'attachment; filename="like alpha.m3u"'
    lines = r.text.splitlines()
    assert lines == ["#EXTM3U", "#EXTINF:40,delta.wav", str(web_corpus.music.resolve() / "delta.wav"),
                     "#EXTINF:40,alpha.wav", str(web_corpus.music.resolve() / "alpha.wav")]
    assert_error(client.get("/api/playlist.m3u", params={"ids": [ids[0], 4242]}), 404, "not_found")
    assert_error(client.get("/api/playlist.m3u"), 422, "invalid_request")
    for bad in (-5, 10**20):  # refused as a track id in a path is, not looked up
        assert_error(client.get("/api/playlist.m3u", params={"ids": [ids[0], bad]}), 422, "invalid_request")
    bad_name = client.get("/api/playlist.m3u", params={"ids": ids, "name": "../x\r\n"})
    assert_error(bad_name, 422, "invalid_request")


def test_unexpected_errors_are_plain_json(web_corpus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.services import QueryService
    from audiolsh.web.settings import Settings

    def boom(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(QueryService, "identify", boom)
    app = create_app(Settings(index_path=web_corpus.library, warm_up=False))
    assert app.debug is False
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/identify", files={"file": ("c.wav", b"x")})
    assert r.status_code == 500
    assert r.json()["error"] == "internal_error" and "secret" not in r.text and "Traceback" not in r.text


def test_unknown_route_and_method(client: Any) -> None:
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.get("/api/identify"), 405, "method_not_allowed")


def test_missing_library_fails_at_startup(tmp_path: Path) -> None:
    from audiolsh.errors import IndexFormatError
    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    with pytest.raises(IndexFormatError, match="no music library"):
        create_app(Settings(index_path=tmp_path))



def test_track_audio_is_the_catalogues_own_file_never_a_decoy(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A library indexed by a relative path, served from another folder holding a text file of
    the same relative name: the indexed file is served, never the decoy; once the indexed file
    changes, or the catalogue holds a relative path, the answer is a 404."""
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    indexer, server = tmp_path / "indexer", tmp_path / "server"
    (indexer / "music").mkdir(parents=True)
    (server / "music").mkdir(parents=True)
    song = indexer / "music" / "song.ogg"
    sf.write(song, synth.music(duration_s=12.0, sr=22050, seed=77), 22050, format="OGG", subtype="VORBIS")
    (server / "music" / "song.ogg").write_text("a planted text file, not the indexed audio\n")
    monkeypatch.chdir(indexer)
    with Library.create(tmp_path / "lib") as library:
        assert not index_audio(library, ["music/song.ogg"], workers=1).failed
        tid = library.tracks()[0].id
        # a catalogue row of an older library: a path relative to wherever it was indexed
        with library.catalogue.write() as w:
            old = w.add_track(path="music/old.ogg", content_hash="0" * 40, duration_s=1.0, kind="audio")
    monkeypatch.chdir(server)
    app = create_app(Settings(index_path=tmp_path / "lib", warm_up=False))
    with TestClient(app) as client:
        served = client.get(f"/api/tracks/{tid}/audio")
        assert served.status_code == 200 and served.content == song.read_bytes()
        assert_error(client.get(f"/api/tracks/{old}/audio"), 404, "not_found")
        song.write_bytes((server / "music" / "song.ogg").read_bytes())  # replaced in place
        assert_error(client.get(f"/api/tracks/{tid}/audio"), 404, "not_found")
        song.unlink()
        assert_error(client.get(f"/api/tracks/{tid}/audio"), 404, "not_found")
