"""Shared fixtures: seeded randomness, a Redis server, synthesised track files and every answer a
library gives (the library and Spark tests build libraries of the same files and compare)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import load, synth
from audiolsh.library import Library, analyse
from audiolsh.query.identify import identify
from audiolsh.query.nearest import nearest_passages
from audiolsh.query.similar import similar


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A developer's ~/.config/audiolsh/config.toml or AUDIOLSH_* variables change no test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "no-config"))
    for name in ("AUDIOLSH_CONFIG", "AUDIOLSH_WORKERS", "AUDIOLSH_FORMAT", "AUDIOLSH_HOST", "AUDIOLSH_PORT",
                 "AUDIOLSH_SERVER_WORKERS", "AUDIOLSH_MIN_CONFIDENCE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator: every test sees the same random stream."""
    return np.random.default_rng(20240601)


@pytest.fixture(scope="session")
def redis_socket(tmp_path_factory: pytest.TempPathFactory):
    """A private redis-server on a unix socket in a temporary folder, persistence off; stopped
    by its process id afterwards.  A missing redis-server fails (``make test`` installs it)."""
    import shutil
    import subprocess
    import time

    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: `make system-deps` (or apt-get install redis-server)")
    import redis

    folder = tmp_path_factory.mktemp("redis")
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        client.close()
        yield str(sock)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_socket: str) -> str:
    """A fresh key prefix on the tests' redis-server."""
    import uuid

    return f"unix://{redis_socket}?prefix=test-{uuid.uuid4().hex[:12]}"


SR = 22050


@pytest.fixture(scope="session")
def synth_tracks(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[Path]]:
    """``make(n, duration_s, seed)``: n seeded synthetic tracks as WAV files in a fresh folder."""

    def make(n: int, duration_s: float, seed: int) -> list[Path]:
        root = tmp_path_factory.mktemp("music")
        files = []
        for i in range(n):
            path = root / f"track{i}.wav"
            sf.write(path, synth.music(duration_s=duration_s, sr=SR, seed=seed + i), SR)
            files.append(path)
        return files

    return make


def library_answers(lib: Library, files: list[Path], *, first_s: float = 4.0, clip_s: float = 10.0,
                    k: int = 4) -> list[object]:
    """For a clip of each file: similar by every mode (and the vote, and the worst), identify,
    nearest; comparable across libraries of the same files."""
    out: list[object] = []
    for i, f in enumerate(files):
        y, sr = load(f, sr=SR, offset_s=first_s + i, duration_s=clip_s)
        clip = analyse(y, sr, modes=lib.modes, window_s=lib.config.window_s, hop_s=lib.config.hop_s)
        for by in ("rhythm", "timbre", "chroma", "peaks", "combined"):
            out.append([(r.track_id, Path(r.path).name, round(r.raw_score, 5), r.offset_s)
                        for r in similar(lib, clip, by=by, k=k)])
        vote = similar(lib, clip, by="chroma", method="vote", k=3)
        worst = similar(lib, clip, by="timbre", k=2, worst=True)
        out.append([(r.track_id, round(r.raw_score, 5)) for r in vote + worst])
        m = identify(lib, y, sr)
        out.append(None if m is None else (m.track_id, round(m.offset_s, 2)))
        out.append([(p.track_id, p.offset_s, round(p.score, 5))
                    for p in nearest_passages(lib, f, k=3, offset_s=first_s + 2.0, duration_s=clip_s - 2.0)])
    return out


@pytest.fixture(scope="session")
def answers() -> Callable[..., list[object]]:
    return library_answers


class HostileFiles:
    """Real-format inputs a careless or hostile user gives: garbage MP3 frames, an MP3 whose
    header lies about its length."""

    SR = 44100
    #: MPEG-1 Layer III holds 1152 samples a frame: 81 days of them
    XING_81_DAYS = 81 * 86400 * SR // 1152

    @staticmethod
    def fake_mp3(path: Path, n_frames: int = 200, seed: int = 0) -> Path:
        """MPEG-1 Layer III frame headers (128 kbit/s, 44.1 kHz, 417 bytes a frame) around
        garbage: libmpg123 finds every frame and can decode none of them."""
        rng = np.random.default_rng(seed)
        path.write_bytes(b"".join(b"\xff\xfb\x90\x64" + rng.integers(0, 256, 413, dtype=np.uint8).tobytes()
                                  for _ in range(n_frames)))
        return path

    @classmethod
    def real_mp3(cls, path: Path, duration_s: float = 6.0, seed: int = 2) -> Path:
        sf.write(path, synth.music(duration_s=duration_s, sr=cls.SR, seed=seed), cls.SR, format="MP3",
                 subtype="MPEG_LAYER_III")
        return path

    @classmethod
    def lying_mp3(cls, path: Path, duration_s: float = 6.0, seed: int = 2) -> Path:
        """A real MP3 whose Xing header says it holds 81 days of frames."""
        data = bytearray(cls.real_mp3(path, duration_s, seed).read_bytes())
        at = data.find(b"Xing")
        assert at > 0 and int.from_bytes(data[at + 4: at + 8], "big") & 1, "no Xing frame count"
        data[at + 8: at + 12] = cls.XING_81_DAYS.to_bytes(4, "big")
        path.write_bytes(bytes(data))
        return path


@pytest.fixture(scope="session")
def hostile() -> HostileFiles:
    return HostileFiles()


#: soundfile's format and subtype by file extension, for tagged test files.
_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
            ".mp3": ("MP3", "MPEG_LAYER_III")}


def write_tagged(path: Path, y: np.ndarray, sr: int = SR, **tags: str) -> Path:
    """Audio in the format its extension names, tagged with mutagen as a tagger would: Vorbis
    comments (Ogg, FLAC), ID3 (MP3 through EasyID3, WAV as raw frames, whose text encoding
    ``latin1_<field>=...`` chooses Latin-1, as old taggers wrote it)."""
    import mutagen
    from mutagen.id3 import TALB, TDRC, TIT2, TPE1
    from mutagen.wave import WAVE

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, subtype = _FORMATS[path.suffix]
    sf.write(path, y, sr, format=fmt, subtype=subtype)
    if not tags:
        return path
    if path.suffix == ".wav":
        wav = WAVE(path)
        wav.add_tags()
        frames = {"artist": TPE1, "title": TIT2, "album": TALB, "date": TDRC}
        for key, value in tags.items():
            latin1 = key.startswith("latin1_")
            wav.tags.add(frames[key.removeprefix("latin1_")](encoding=0 if latin1 else 3, text=[value]))
        wav.save()
        return path
    audio = mutagen.File(path, easy=True)
    if audio.tags is None:
        audio.add_tags()
    for key, value in tags.items():
        audio[key] = value
    audio.save()
    return path


@pytest.fixture(scope="session")
def tagged_music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short synthesised tracks in four formats, tagged as a collection is (and not): a folder
    per artist, tags with a year and an album, Latin-1 mojibake, a control character for a
    title, an untagged file, and an untagged copy of the second half of one track."""
    root = tmp_path_factory.mktemp("tagged")
    song = {name: synth.music(duration_s=14.0, sr=SR, seed=700 + i)
            for i, name in enumerate(("blue", "dawn", "night", "odd", "plain"))}
    write_tagged(root / "Ana" / "blue.flac", song["blue"], artist="Ana", title="Blue", album="Colours",
                 date="1999-05-01")
    write_tagged(root / "Ana" / "dawn.mp3", song["dawn"], artist="Ana", title="Dawn", date="2004")
    write_tagged(root / "bo.ogg", song["night"], artist="Bö Trio", title="Night Song")
    # UTF-8 bytes stored as Latin-1 text ("Björk" read back as "BjÃ¶rk"), and a title of
    # control characters only: the artist is repaired, the title falls back to the file name.
    write_tagged(root / "odd.wav", song["odd"], latin1_artist="Björk".encode().decode("latin-1"),
                 title="\x00\x01\x1f")
    write_tagged(root / "plain.wav", song["plain"])
    write_tagged(root / "copies" / "blue-copy.wav", song["blue"][7 * SR:])
    return root


@pytest.fixture(scope="session")
def tag_writer() -> Callable[..., Path]:
    """``write_tagged(path, y, sr=SR, **tags)``, for tests that make tagged files of their own."""
    return write_tagged


def as_format_6(idx: Path) -> None:
    """Write a directory library back as format 6 wrote it: tracks without tags (meta {}), no roots."""
    import json
    import sqlite3

    db = sqlite3.connect(idx / "tracks" / "catalogue.sqlite")
    with db:
        db.execute("UPDATE tracks SET meta = '{}'")
        db.execute("DELETE FROM config WHERE name = 'roots'")
        (config,) = db.execute("SELECT value FROM config WHERE name = 'library'").fetchone()
        db.execute("UPDATE config SET value = ? WHERE name = 'library'",
                   (json.dumps({**json.loads(config), "format_version": 6}),))
    db.close()


@pytest.fixture(scope="session")
def format_6() -> Callable[[Path], None]:
    """:func:`as_format_6`, for tests of libraries written before tags were read."""
    return as_format_6
