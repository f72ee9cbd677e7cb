"""`audiolsh index`, `nearest`, `identify`, `similar`, `clusters`, `info`, `remove` on synthesised songs
in real file formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiolsh.audio import synth
from audiolsh.cli import cli
from audiolsh.library import Library

SR = 22050


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("music")
    (root / "album").mkdir()
    formats = [("a.wav", "WAV", "PCM_16"), ("album/b.flac", "FLAC", "PCM_16"),
               ("album/c.ogg", "OGG", "VORBIS")]
    for seed, (name, fmt, subtype) in enumerate(formats):
        y = synth.music(duration_s=40.0, sr=SR, seed=seed + 1)
        sf.write(root / name, y, SR, format=fmt, subtype=subtype)
    (root / "notes.txt").write_text("not audio, and not an audio extension either")
    return root


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_index_then_nearest_finds_the_track_and_offset(tmp_path: Path, library: Path) -> None:
    idx = tmp_path / "idx"
    code, _, err = run("index", str(library), "--index", str(idx), "-j", "1")
    assert code == 0, err
    assert "3 added" in err
    y, _ = sf.read(library / "album" / "b.flac", dtype="float32")
    clip = tmp_path / "clip.wav"
    start_s = 12
    noise = synth.white_noise(duration_s=8.0, sr=SR, seed=3, amplitude=0.02)
    noisy = y[start_s * SR : (start_s + 8) * SR] + noise
    sf.write(clip, noisy, SR)
    code, out, err = run("nearest", str(clip), "--index", str(idx), "-k", "3", "--format", "jsonl")
    assert code == 0, err
    record = json.loads(out)
    best = record["results"][0]
    assert best["path"].endswith("album/b.flac")
    assert abs(best["offset_s"] - start_s) <= 1.0
    with Library.open(idx, readonly=True) as lib:  # the records' vocabulary: track_id too
        assert best["track_id"] == next(t.id for t in lib.tracks() if t.path.endswith("b.flac"))
    assert record["query"] == str(clip) and record["elapsed_ms"] > 0
    # --offset analyses a later part of the query file: the passage found moves with it.
    track = str(library / "album" / "b.flac")
    code, out, err = run("nearest", track, "--index", str(idx), "--offset", "20", "--duration", "8",
                         "--format", "jsonl")
    assert code == 0, err
    best = json.loads(out)["results"][0]
    assert best["path"] == track and best["offset_s"] == 20.0


def test_rerun_skips_indexed_files_and_bad_files_do_not_stop_the_batch(
    tmp_path: Path, library: Path
) -> None:
    idx = tmp_path / "idx"
    bad_dir = tmp_path / "more"
    bad_dir.mkdir()
    (bad_dir / "broken.mp3").write_bytes(b"\x00" * 10)
    (bad_dir / "empty.wav").write_bytes(b"")
    sf.write(bad_dir / "silent.wav", np.zeros(SR * 5, np.float32), SR)
    code, _, err = run("index", str(library), str(bad_dir), "--index", str(idx), "-j", "2")
    assert code == 2
    for name in ("broken.mp3", "empty.wav", "silent.wav"):
        assert name in err
    assert "Traceback" not in err
    with Library.open(idx) as lib:
        assert len(lib.tracks()) == 3
        n = len(lib.indexes["embedding"])
    code, _, err = run("index", str(library), "--index", str(idx))
    assert code == 0 and "0 added, 3 already indexed" in err
    with Library.open(idx) as lib:
        assert len(lib.indexes["embedding"]) == n


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, library: Path) -> Path:
    idx = tmp_path_factory.mktemp("lib") / "idx"
    code, _, err = run("index", str(library), "--index", str(idx), "-j", "1")
    assert code == 0, err
    return idx


def test_identify_names_the_track_and_offset_and_says_no_match(
    tmp_path: Path, library: Path, indexed: Path
) -> None:
    y, _ = sf.read(library / "a.wav", dtype="float32")
    clip = tmp_path / "clip.wav"
    noise = synth.white_noise(duration_s=7.0, sr=SR, seed=5, amplitude=0.05)
    sf.write(clip, y[15 * SR : 22 * SR] + noise, SR)
    stranger = tmp_path / "stranger.wav"
    sf.write(stranger, synth.music(duration_s=8.0, sr=SR, seed=99), SR)
    missing = tmp_path / "missing.mp3"
    code, out, err = run("identify", str(clip), str(missing), str(stranger), "--index", str(indexed),
                         "--format", "jsonl")
    assert code == 2 and "missing.mp3" in err  # the bad clip is named, the batch goes on
    found, unknown = (json.loads(line) for line in out.splitlines())
    assert found["query"] == str(clip) and found["elapsed_ms"] > 0
    m = found["match"]
    assert m["path"].endswith("a.wav") and abs(m["offset_s"] - 15.0) <= 0.5
    assert 0.0 < m["confidence"] <= 1.0 and abs(m["speed"] - 1.0) < 0.02
    assert unknown["match"] is None
    code, out, _ = run("identify", str(clip), "--index", str(indexed), "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("query,match,title,artist,offset_s")


def test_identify_reports_the_pitch_shift_of_a_clip(tmp_path: Path, library: Path, indexed: Path) -> None:
    import librosa

    y, _ = sf.read(library / "a.wav", dtype="float32")
    shifted, plain = tmp_path / "up.wav", tmp_path / "plain.wav"
    sf.write(shifted, librosa.effects.pitch_shift(y[12 * SR : 18 * SR], sr=SR, n_steps=1), SR)
    sf.write(plain, y[12 * SR : 18 * SR], SR)
    code, out, err = run("identify", str(shifted), str(plain), "--index", str(indexed), "--format", "jsonl")
    assert code == 0, err
    up, same = (json.loads(line)["match"] for line in out.splitlines())
    assert up["path"].endswith("a.wav") and up["pitch"] == pytest.approx(2 ** (1 / 12), abs=0.011)
    assert up["speed"] == 1.0 and up["tempo"] == 1.0 and same["pitch"] == 1.0
    code, out, err = run("identify", str(shifted), "--index", str(indexed), "--format", "csv")
    assert code == 0 and "pitch" in out.splitlines()[0].split(","), err
    # The table shows the column only when a clip is pitch-shifted.
    code, out, err = run("identify", str(plain), "--index", str(indexed))
    assert code == 0 and "pitch" not in out, err


def test_identify_names_every_track_that_holds_the_clips_audio(tmp_path: Path) -> None:
    root = tmp_path / "music"
    root.mkdir()
    original = synth.music(duration_s=30.0, sr=SR, seed=21)
    intro = synth.music(duration_s=10.0, sr=SR, seed=22)
    sf.write(root / "original.wav", original, SR)
    sf.write(root / "remaster.flac", np.concatenate([intro, 0.7 * original]), SR)  # the same audio, later
    sf.write(root / "other.wav", synth.music(duration_s=30.0, sr=SR, seed=23), SR)
    idx = str(tmp_path / "idx")
    code, _, err = run("index", str(root), "--index", idx, "-j", "1")
    assert code == 0, err
    clip, plain = tmp_path / "clip.wav", tmp_path / "plain.wav"
    sf.write(clip, original[12 * SR : 18 * SR], SR)
    sf.write(plain, synth.music(duration_s=30.0, sr=SR, seed=23)[5 * SR : 11 * SR], SR)
    code, out, err = run("identify", str(clip), str(plain), "--index", idx, "--format", "jsonl")
    assert code == 0, err
    m, alone = (json.loads(line)["match"] for line in out.splitlines())
    where = {"original.wav": 12.0, "remaster.flac": 22.0}
    names = [m["path"].rsplit("/", 1)[-1]] + [a["path"].rsplit("/", 1)[-1] for a in m["also"]]
    assert sorted(names) == sorted(where)
    for r, name in zip([m, *m["also"]], names):
        assert abs(r["offset_s"] - where[name]) <= 0.1 and r["matched"]
    assert "also" not in m["also"][0] and alone["path"].endswith("other.wav") and alone["also"] == []
    # The table names the other track and where the clip is in it; a plain answer has no such column.
    code, out, err = run("identify", str(clip), "--index", idx)
    assert code == 0 and "also" in out and names[1] in out, err
    assert f"{m['also'][0]['offset_s']:.2f} s" in out, out
    code, out, err = run("identify", str(plain), "--index", idx)
    assert code == 0 and "also" not in out, err


def test_identify_searches_any_clip_of_1_s_and_shows_weak_candidates(
    tmp_path: Path, library: Path, indexed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiolsh.index.confidence import load

    y, _ = sf.read(library / "a.wav", dtype="float32")
    short, tiny, noise = tmp_path / "short.wav", tmp_path / "tiny.wav", tmp_path / "noise.wav"
    sf.write(short, y[10 * SR : int(11.5 * SR)], SR)
    sf.write(tiny, y[10 * SR : int(10.5 * SR)], SR)
    sf.write(noise, synth.pink_noise(duration_s=4.0, sr=SR, seed=8, amplitude=0.3), SR)
    idx = str(indexed)
    code, out, err = run("identify", str(tiny), str(short), str(noise), "--index", idx, "--format", "jsonl")
    # Only the 0.5-s clip is an error, named; the batch goes on.
    (line,) = err.strip().splitlines()
    assert code == 2 and "tiny.wav" in line and "too short" in line and "at least 1.000 s" in line
    found, unknown = (json.loads(r) for r in out.splitlines())
    if found["match"] is not None:
        assert found["match"]["path"].endswith("a.wav") and abs(found["match"]["offset_s"] - 10.0) <= 0.5
    else:
        assert found["reason"]
    assert unknown["match"] is None and unknown["reason"]
    # --min-confidence 0: the best candidate whatever its confidence, flagged as weak.
    code, out, err = run("identify", str(noise), "--index", idx, "--format", "jsonl", "--min-confidence", "0")
    assert code == 0, err
    record = json.loads(out)
    weak = record["match"]
    assert weak is not None and weak["matched"] is False
    assert weak["confidence"] < load().default_min_confidence
    assert record["reason"].startswith("below threshold")
    # ... the same from the config file's key, and in the table.
    config = tmp_path / "config.toml"
    config.write_text("min_confidence = 0.0\n")
    monkeypatch.setenv("AUDIOLSH_CONFIG", str(config))
    code, out, err = run("identify", str(noise), "--index", idx, "--format", "csv")
    assert code == 0, err
    assert "matched" in out.splitlines()[0] and ",False," in out.splitlines()[1]
    monkeypatch.setenv("COLUMNS", "250")  # the weak candidate's speed column must not wrap the flag
    code, out, err = run("identify", str(noise), "--index", idx)
    assert code == 0 and "below threshold" in out and "matched" in out, err
    code, _, err = run("identify", str(noise), "--index", idx, "--min-confidence", "1.5")
    assert code == 2 and "--min-confidence" in err
    code, out, err = run("identify", "--segments", str(short), "--index", idx, "--format", "jsonl")
    assert code == 0 and "segments" in json.loads(out), err


def test_similar_and_worst_and_by_track(tmp_path: Path, library: Path, indexed: Path) -> None:
    y, _ = sf.read(library / "album" / "c.ogg", dtype="float32")
    clip = tmp_path / "c-part.wav"
    sf.write(clip, y[5 * SR : 17 * SR], SR)
    for by in ("rhythm", "timbre", "chroma", "combined", "peaks"):
        code, out, err = run("similar", str(clip), "--by", by, "-k", "2", "--index", str(indexed),
                             "--format", "jsonl")
        assert code == 0, err
        record = json.loads(out)
        # Identification finds the clip's own track: it is the match, not a similar track.
        assert record["match"]["path"].endswith("c.ogg") and abs(record["match"]["offset_s"] - 5.0) < 0.1
        assert [r["rank"] for r in record["results"]] == [1, 2]
        assert not any(r["path"].endswith("c.ogg") for r in record["results"]), (by, record)
        code, out, err = run("similar", str(clip), "--by", by, "-k", "2", "--include-self",
                             "--index", str(indexed), "--format", "jsonl")
        assert json.loads(out)["results"][0]["path"].endswith("c.ogg"), (by, out)
    # The least similar leave out the k most similar (here the clip's own track, included).
    code, out, _ = run("similar", str(clip), "--worst", "-k", "1", "--by", "timbre", "--include-self",
                       "--index", str(indexed), "--format", "json")
    worst = json.loads(out)[0]["results"]
    assert len(worst) == 1 and not worst[0]["path"].endswith("c.ogg") and worst[0]["score"] < 0.5
    # Every other track among the k most similar: --worst has none left, and says so.
    code, out, err = run("similar", str(clip), "--worst", "-k", "2", "--by", "timbre",
                         "--index", str(indexed), "--format", "jsonl")
    record = json.loads(out)
    assert code == 0 and record["results"] == [], err
    assert "among its 2 most similar" in record["reason"] and "smaller -k" in record["reason"]
    code, out, _ = run("similar", str(clip), "--worst", "-k", "2", "--by", "timbre", "--index", str(indexed))
    assert code == 0 and "c-part.wav: no track left: every other track is among its 2 most similar" in out
    code, out, _ = run("similar", str(clip), "--worst", "-k", "1", "--by", "timbre", "--index", str(indexed),
                       "--format", "jsonl")
    assert len(json.loads(out)["results"]) == 1 and "reason" not in json.loads(out)
    # The table says which track is the clip's, on a line above it.
    code, out, _ = run("similar", str(clip), "-k", "1", "--by", "timbre", "--index", str(indexed))
    assert code == 0
    note, rest = out.split("\n", 1)
    assert note.startswith("c-part.wav: the match is ") and "c.ogg at " in note and "; left out" in note
    assert "raw score" in rest and "query offset s" in rest
    with Library.open(indexed) as lib:
        tid = next(t.id for t in lib.tracks() if t.path.endswith("c.ogg"))
    code, out, _ = run("similar", "--track", str(tid), "--by", "chroma", "--method", "vote",
                       "--index", str(indexed), "--format", "jsonl")
    assert code == 0 and all(r["track_id"] != tid for r in json.loads(out)["results"])
    code, _, err = run("similar", str(clip), "--by", "timbre", "--method", "vote", "--index", str(indexed))
    assert code == 2 and "--method" in err


def test_info_clusters_and_remove_on_a_library(tmp_path: Path, library: Path) -> None:
    idx = tmp_path / "idx"
    code, _, err = run("index", str(library), "--index", str(idx), "-j", "1", "--modes", "timbre,rhythm")
    assert code == 0, err
    code, out, _ = run("info", "--index", str(idx), "--format", "json")
    data = json.loads(out)
    assert data["n_tracks"] == 3 and data["modes"] == ["rhythm", "timbre"]
    assert data["normalisation"] == "wccn-v1"
    plain = tmp_path / "plain"
    code, _, err = run("index", str(library), "--index", str(plain), "-j", "1", "--modes", "timbre",
                       "--normalisation", "none")
    assert code == 0, err
    code, out, _ = run("info", "--index", str(plain))
    assert code == 0 and "normalisation" in out and "none" in out
    # An existing library keeps what it was built with, and says so.
    code, _, err = run("index", str(library), "--index", str(plain), "-j", "1", "--modes", "timbre",
                       "--normalisation", "wccn-v1")
    assert code == 0 and "keeps --normalisation none" in err
    code, out, _ = run("clusters", "--by", "timbre", "-n", "2", "--index", str(idx), "--format", "json")
    groups = json.loads(out)
    assert code == 0 and sorted(g["size"] for g in groups) in ([1, 2], [0, 3]) and len(groups) == 2
    code, _, err = run("remove", str(library / "a.wav"), "--index", str(idx))
    assert code == 0 and "removed" in err
    code, out, _ = run("info", "--index", str(idx), "--format", "json")
    assert json.loads(out)["n_tracks"] == 2
    code, _, err = run("identify", str(library / "a.wav"), "--index", str(idx))
    assert code == 2 and "without the fingerprint mode" in err


def test_info_names_tracks_indexed_without_an_envelope(tmp_path: Path, library: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A library made before fingerprint format 4 (its tracks without an energy envelope: made
    here by an ingest that drops it) opens, and ``info`` says how many tracks lack it."""
    from dataclasses import replace

    from audiolsh.features import stream_peaks

    finish = stream_peaks.Fingerprint.finish
    monkeypatch.setattr(stream_peaks.Fingerprint, "finish", lambda self: replace(finish(self), envelope=None))
    old = tmp_path / "old"
    code, _, err = run("index", str(library), "--index", str(old), "-j", "1", "--modes", "fingerprint")
    assert code == 0, err
    monkeypatch.undo()
    code, out, _ = run("info", "--index", str(old), "--format", "json")
    assert code == 0 and json.loads(out)["indexes"]["fingerprint"]["n_tracks_without_envelope"] == 3
    code, out, _ = run("info", "--index", str(old), "--format", "csv")
    assert code == 0 and "3 tracks indexed before fingerprint format 4 have no energy envelope" in out
    new = tmp_path / "new"
    code, _, err = run("index", str(library), "--index", str(new), "-j", "1", "--modes", "fingerprint")
    assert code == 0, err
    code, out, _ = run("info", "--index", str(new), "--format", "csv")
    assert code == 0 and "fingerprint" in out and "energy envelope" not in out
