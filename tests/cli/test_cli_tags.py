"""Tracks named by their tags: mutagen tags in the catalogue, ``title``/``artist`` in records,
"Artist - Title" and relative paths in tables, ``--track`` by id, path or name, and libraries
indexed before tags were read (format 6)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiolsh.cli import cli
from audiolsh.library import LIBRARY_VERSION, Extracted, Library
from audiolsh.library.tags import MAX_TAG_CHARS, read_tags

SR = 22050
#: Wide enough that no table cell wraps: an absolute path in a table would show whole.
WIDE = {"COLUMNS": "400"}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env=env).invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def indexed(tagged_music: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tagged files indexed once for the module (about 7 s: six 14-s files in four formats,
    the three modes the table commands need)."""
    idx = tmp_path_factory.mktemp("tags-idx") / "lib"
    code, _, err = run("index", str(tagged_music), "--index", str(idx), "--modes",
                       "fingerprint,embedding,timbre", "-j", "1")
    assert code == 0, err
    return idx


@pytest.fixture(scope="module")
def tracks(indexed: Path) -> dict[str, dict]:
    """``info --tracks --json``'s tracks by file name."""
    code, out, err = run("info", "--tracks", "--json", "--index", str(indexed))
    assert code == 0, err
    return {Path(t["path"]).name: t for t in json.loads(out)["tracks"]}


@pytest.fixture(scope="module")
def clip(tagged_music: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 7 s of Ana - Blue (its copy holds the other 7), as WAV."""
    y, _ = sf.read(tagged_music / "Ana" / "blue.flac", dtype="float32")
    path = tmp_path_factory.mktemp("tags-clip") / "clip.wav"
    sf.write(path, y[: 7 * SR], SR)
    return path


def test_tags_of_every_format_are_in_the_catalogue(tracks: dict[str, dict], indexed: Path,
                                                   tagged_music: Path) -> None:
    fields = {name: (t["title"], t["artist"], t["album"], t["year"]) for name, t in tracks.items()}
    assert fields == {
        "blue.flac": ("Blue", "Ana", "Colours", 1999),
        "dawn.mp3": ("Dawn", "Ana", None, 2004),
        "bo.ogg": ("Night Song", "Bö Trio", None, None),
        "odd.wav": ("odd.wav", "Björk", None, None),  # mojibake repaired, a title of controls dropped
        "plain.wav": ("plain.wav", None, None, None),
        "blue-copy.wav": ("blue-copy.wav", None, None, None),
    }
    assert tracks["blue.flac"]["path"] == str(tagged_music / "Ana" / "blue.flac")  # JSON keeps it absolute
    assert tracks["plain.wav"]["meta"] == {"tags": {}}  # read, none found (not "never read")
    with Library.open(indexed, readonly=True) as lib:
        assert lib.config.to_dict()["format_version"] == LIBRARY_VERSION == 7
        assert lib.catalogue.config("roots") == {"roots": [str(tagged_music)]}


def test_tables_show_names_and_paths_relative_to_the_folder_indexed(
        indexed: Path, tagged_music: Path, clip: Path) -> None:
    """Every command with a table, once each (about 10 s: the first query of each pays its
    loading, and clusters imports scikit-learn)."""
    root = str(tagged_music)
    code, out, err = run("info", "--tracks", "--index", str(indexed), env=WIDE)
    assert code == 0, err
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:]]
            for line in out.splitlines() if line.count("│") > 5 and line.split("│")[1].strip().isdigit()}
    assert [r[:4] for r in rows.values()] == [
        ["Ana - Blue", "Ana/blue.flac", "Colours", "1999"], ["Ana - Dawn", "Ana/dawn.mp3", "", "2004"],
        ["Bö Trio - Night Song", "bo.ogg", "", ""], ["blue-copy.wav", "copies/blue-copy.wav", "", ""],
        ["Björk - odd.wav", "odd.wav", "", ""], ["plain.wav", "plain.wav", "", ""]]
    assert root not in out
    queries = {
        "identify": ["identify", str(clip)],
        "similar": ["similar", str(clip), "--by", "timbre", "-k", "3"],
        "nearest": ["nearest", str(clip), "-k", "2", "--duration", "6"],
        "overlaps": ["overlaps"],
    }
    tables = {}
    for name, args in queries.items():
        code, tables[name], err = run(*args, "--index", str(indexed), env=WIDE)
        assert code == 0, (name, err)
        assert "Ana - Blue" in tables[name] and root not in tables[name] and "/tmp" not in tables[name], name
    assert "Ana/blue.flac" in tables["identify"] and "copies/blue-copy.wav" in tables["overlaps"]
    code, out, err = run("clusters", "--by", "timbre", "-n", "2", "--index", str(indexed), env=WIDE)
    assert code == 0 and "Ana - " in out and root not in out, err
    # At the default width names wrap between words, never inside one.
    code, out, _ = run("similar", str(clip), "--by", "timbre", "-k", "6", "--index", str(indexed))
    assert code == 0 and "Ana - Blue" in out and "Night Song" in out


def test_records_name_tracks_by_title_and_artist_and_keep_absolute_paths(
        indexed: Path, tagged_music: Path, clip: Path) -> None:
    blue = str(tagged_music / "Ana" / "blue.flac")
    code, out, err = run("identify", str(clip), "--index", str(indexed), "--format", "json")
    assert code == 0, err
    m = json.loads(out)[0]["match"]
    assert (m["path"], m["title"], m["artist"]) == (blue, "Blue", "Ana")
    assert list(m)[:4] == ["path", "track_id", "title", "artist"]
    code, out, err = run("similar", str(clip), "--by", "timbre", "-k", "6", "--include-self",
                         "--index", str(indexed), "--format", "json")
    assert code == 0, err
    assert (json.loads(out)[0]["match"]["title"], json.loads(out)[0]["match"]["artist"]) == ("Blue", "Ana")
    by_path = {r["path"]: (r["title"], r["artist"]) for r in json.loads(out)[0]["results"]}
    assert by_path[blue] == ("Blue", "Ana")
    assert by_path[str(tagged_music / "plain.wav")] == ("plain.wav", None)
    code, out, err = run("nearest", str(clip), "-k", "1", "--duration", "6", "--index", str(indexed),
                         "--format", "jsonl")
    best = json.loads(out)["results"][0]
    assert code == 0 and (best["path"], best["title"], best["artist"]) == (blue, "Blue", "Ana"), err
    code, out, err = run("overlaps", "--index", str(indexed), "--format", "json")
    (shared,) = json.loads(out)
    assert code == 0 and {(s["title"], s["artist"]) for s in (shared["a"], shared["b"])} == {
        ("Blue", "Ana"), ("blue-copy.wav", None)}
    # CSV: the absolute path and the tags, as the records have them.
    code, out, err = run("similar", str(clip), "--by", "timbre", "-k", "2", "--include-self",
                         "--index", str(indexed), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and list(rows[0])[:6] == ["query", "rank", "path", "title", "artist", "score"], err
    assert rows[0]["path"] == blue and rows[0]["artist"] == "Ana"


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_track_by_id_path_relative_path_or_name(indexed: Path, tagged_music: Path,
                                                tracks: dict[str, dict]) -> None:
    """Eight ways of naming a track, each a `similar --track` run (about 3 s)."""
    blue, dawn = tracks["blue.flac"]["track_id"], tracks["dawn.mp3"]["track_id"]
    given = {str(blue): blue, str(tagged_music / "Ana" / "blue.flac"): blue, "Ana/blue.flac": blue,
             "ana - BLUE": blue, "dawn": dawn, "NIGHT": tracks["bo.ogg"]["track_id"],
             "plain.wav": tracks["plain.wav"]["track_id"], "björk": tracks["odd.wav"]["track_id"]}
    for query, tid in given.items():
        code, out, err = run("similar", "--track", query, "--by", "timbre", "-k", "2",
                             "--index", str(indexed), "--format", "json")
        assert code == 0, (query, err)
        (record,) = json.loads(out)
        assert record["track_id"] == tid, query
        assert tid not in [r["track_id"] for r in record["results"]]


def test_an_ambiguous_or_unknown_track_is_one_line_and_exit_2(indexed: Path,
                                                             tracks: dict[str, dict]) -> None:
    blue, dawn = tracks["blue.flac"]["track_id"], tracks["dawn.mp3"]["track_id"]
    code, out, err = run("similar", "--track", "ana", "--by", "timbre", "--index", str(indexed))
    line = _error_line(err)
    assert code == 2 and not out
    assert "matches 2 tracks" in line and f"{blue}: Ana - Blue" in line and f"{dawn}: Ana - Dawn" in line
    # "blue" is a title and part of a file name: the untagged copy is listed by its relative path.
    code, _, err = run("similar", "--track", "blue", "--by", "timbre", "--index", str(indexed))
    assert code == 2 and "copies/blue-copy.wav" in _error_line(err)
    code, out, err = run("similar", "--track", "zzz", "--by", "timbre", "--index", str(indexed))
    assert code == 2 and not out and "no track has that id, path or name" in _error_line(err)
    # One that names nothing does not stop the others of the batch.
    code, out, err = run("similar", "--track", "zzz", "--track", str(dawn), "--track", "ana",
                         "--by", "timbre", "-k", "1", "--index", str(indexed), "--format", "json")
    assert code == 2 and [r["track_id"] for r in json.loads(out)] == [dawn]
    assert "'zzz'" in err and "matches 2 tracks" in err
    # remove resolves its targets the same way, and an ambiguous one removes nothing.
    code, _, err = run("remove", "ana", "--index", str(indexed))
    assert code == 2 and "matches 2 tracks" in _error_line(err)
    with Library.open(indexed, readonly=True) as lib:
        assert len(lib) == len(tracks)


def test_a_format_6_library_opens_with_file_names_and_index_reads_its_tags(
        tagged_music: Path, tmp_path: Path, format_6: Callable[[Path], None]) -> None:
    idx = tmp_path / "old"
    index = ("index", str(tagged_music / "Ana"), "--index", str(idx), "--modes", "timbre", "-j", "1")
    code, _, err = run(*index)
    assert code == 0, err
    format_6(idx)
    code, out, err = run("info", "--tracks", "--json", "--index", str(idx))
    assert code == 0, err
    assert {(t["title"], t["artist"]) for t in json.loads(out)["tracks"]} == {
        ("blue.flac", None), ("dawn.mp3", None)}
    code, out, _ = run("info", "--tracks", "--index", str(idx), env=WIDE)
    assert "blue.flac" in out and str(tagged_music) not in out  # relative to the folder they share
    code, out, err = run("similar", "--track", "dawn", "--by", "timbre", "--index", str(idx),
                         "--format", "json")
    assert code == 0 and json.loads(out)[0]["results"][0]["title"] == "blue.flac", err
    with Library.open(idx, readonly=True) as lib:
        assert lib.config.to_dict()["format_version"] == LIBRARY_VERSION  # read as the current one
    # The next index run over the files reads their tags and marks the library format 7.
    code, _, err = run(*index)
    assert code == 0 and "0 added" in err and "tags read for 2 indexed before" in err, err
    code, out, _ = run("info", "--tracks", "--json", "--index", str(idx))
    assert {(t["title"], t["artist"], t["year"]) for t in json.loads(out)["tracks"]} == {
        ("Blue", "Ana", 1999), ("Dawn", "Ana", 2004)}
    db = sqlite3.connect(idx / "tracks" / "catalogue.sqlite")
    (config,) = db.execute("SELECT value FROM config WHERE name = 'library'").fetchone()
    db.close()
    assert json.loads(config)["format_version"] == 7
    code, _, err = run(*index)
    assert code == 0 and "tags read" not in err


def test_tags_never_fail_indexing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  tag_writer: Callable[..., Path]) -> None:
    y = np.random.default_rng(3).standard_normal(SR).astype(np.float32) * 0.1
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(4).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert read_tags(garbage) == {} and read_tags(tmp_path / "missing.flac") == {}
    long = tag_writer(tmp_path / "long.flac", y, title="x" * 5000, artist=" \t Ana\x00 ", date="May 1987")
    assert read_tags(long) == {"title": "x" * MAX_TAG_CHARS, "artist": "Ana", "year": 1987}
    # A tag reader that crashes on a file: the file is indexed under its file name.
    import mutagen

    music = tmp_path / "music"
    tag_writer(music / "song.ogg", np.tile(y, 8), artist="Lost")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a tagger's bug")

    monkeypatch.setattr(mutagen, "File", crash)
    assert read_tags(long) == {}
    code, _, err = run("index", str(music), "--index", str(tmp_path / "idx"), "--modes", "timbre", "-j", "1")
    assert code == 0 and "1 added" in err, err
    with Library.open(tmp_path / "idx", readonly=True) as lib:
        (track,) = lib.tracks()
        assert track.meta == {"tags": {}} and lib.names().of_track(track) == "song.ogg"


def test_an_extraction_carries_its_tags_between_processes() -> None:
    ex = Extracted("a.flac", "abc", 3.0, tags={"title": "Blue", "year": 1999})
    assert Extracted.from_bytes(ex.to_bytes()).tags == {"title": "Blue", "year": 1999}


def test_a_narrow_table_wraps_names_between_words_and_keeps_paths_whole(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from audiolsh.cli.output import emit_table

    monkeypatch.setenv("COLUMNS", "80")  # not a terminal: tables are 100 wide
    rows = [{"query": "clip.wav", "rank": 1, "track": "The Quiet Ones - Rehearsal Take 3",
             "path": "inbox/rehearsal_take_3.flac", "score": 0.2384, "offset_s": 30.0,
             "query_offset_s": 5.0, "elapsed_ms": 1234.5}]
    emit_table(rows)
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 100 and len(lines) > 4
    cells = [c.strip() for line in lines for c in line.split("│")]
    assert "inbox/rehearsal_take_3.flac" in cells  # whole, on one line
    track = [line.split("│")[3].strip() for line in lines if line.startswith("│")]
    assert len(track) > 1 and " ".join(track) == "The Quiet Ones - Rehearsal Take 3"  # wrapped at spaces
    assert {"0.2384", "30", "5", "1234"} <= set(cells)  # numbers whole


def test_m4a_tags_are_read(tmp_path: Path) -> None:
    """MP4 atoms (an AAC file as ffmpeg, a system package of the project, writes it)."""
    import subprocess

    m4a = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
                    "-c:a", "aac", "-metadata", "artist=Ana", "-metadata", "title=Tone",
                    "-metadata", "date=2011-02-03", "-metadata", "album=Tests", str(m4a)], check=True)
    assert read_tags(m4a) == {"artist": "Ana", "title": "Tone", "album": "Tests", "year": 2011}


def test_paths_are_relative_to_the_deepest_root_or_the_folder_outside_tracks_share() -> None:
    from audiolsh.library.tags import Names

    names = Names.of(["/m/Music/", "/m/Music/Live"], ["/m/Music/Ana/a.flac", "/old/x/b.wav", "/old/y/c.wav"])
    assert [names.relative(p) for p in ("/m/Music/Ana/a.flac", "/m/Music/Live/b.ogg", "/old/x/b.wav")] == [
        "Ana/a.flac", "b.ogg", "x/b.wav"]
    assert Names.of([], ["/m/Music/Ana/a.flac"]).relative("/m/Music/Ana/a.flac") == "a.flac"
    assert Names.of(["/m/Music"], ["/m/Music/Ana/a.flac"]).roots == ("/m/Music",)  # not the deeper shared one
