"""Decoding real-format files (WAV, FLAC, Ogg Vorbis/Opus, MP3, AAC) and every bad-file case."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from audiolsh.audio import AUDIO_EXTENSIONS, AudioInfo, content_hash, find_audio, info, load
from audiolsh.audio import decode as decode_mod
from audiolsh.audio.synth import music, tone
from audiolsh.errors import AudioError, ParameterError

SRC_SR = 44100  # files are written at 44.1 kHz so that the default sr=22050 resamples
SONG_S = 6.0
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg/ffprobe not on PATH")


def _ffmpeg(src: Path, dst: Path, *extra: str) -> Path:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src)]
    subprocess.run([*cmd, *extra, str(dst)], check=True)
    return dst


def _corr(a: np.ndarray, b: np.ndarray, *, max_lag: int = 0) -> float:
    """Highest Pearson correlation of ``a`` and ``b`` over shifts of up to ``max_lag`` samples."""
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(x.size, y.size)
        best = max(best, float(np.corrcoef(x[:n], y[:n])[0, 1]))
    return best


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return music(duration_s=SONG_S, sr=SRC_SR, seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, song: np.ndarray) -> dict[str, Path]:
    """The same song in every format, plus a stereo WAV; MP3/M4A only when ffmpeg exists."""
    d = tmp_path_factory.mktemp("formats")
    out = {
        "wav": d / "song.wav",
        "flac": d / "song.flac",
        "ogg": d / "song.ogg",
        "opus": d / "song.opus",
    }
    sf.write(out["wav"], song, SRC_SR, subtype="FLOAT")
    sf.write(out["flac"], song, SRC_SR, subtype="PCM_16")
    sf.write(out["ogg"], song, SRC_SR, format="OGG", subtype="VORBIS")
    song48 = soxr.resample(song, SRC_SR, 48000)
    sf.write(out["opus"], song48, 48000, format="OGG", subtype="OPUS")
    if HAVE_FFMPEG:
        out["mp3"] = _ffmpeg(out["wav"], d / "song.mp3", "-b:a", "192k")
        out["m4a"] = _ffmpeg(out["wav"], d / "song.m4a", "-c:a", "aac", "-b:a", "192k")
    return out


def _file(files: dict[str, Path], fmt: str) -> Path:
    if fmt not in files:
        pytest.skip(f"{fmt} test file needs ffmpeg, which is not on PATH")
    return files[fmt]


FORMATS = [
    "wav",
    "flac",
    "ogg",
    "opus",
    pytest.param("mp3", marks=needs_ffmpeg),
    pytest.param("m4a", marks=needs_ffmpeg),
]
COMPRESSED = [f for f in FORMATS if f not in ("wav", "flac")]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_resampled(files: dict[str, Path], song: np.ndarray, fmt: str) -> None:
    y, sr = load(_file(files, fmt), sr=22050)
    assert sr == 22050
    assert y.dtype == np.float32 and y.ndim == 1
    assert float(np.max(np.abs(y))) <= 1.0
    ref = soxr.resample(song, SRC_SR, 22050, quality="HQ")
    assert abs(y.size - ref.size) <= 0.01 * ref.size
    # Lossy decoders may shift by a few samples (codec delay); search a small lag.
    assert _corr(y, ref, max_lag=0 if fmt in ("wav", "flac") else 1200) > 0.9


def test_wav_native_rate_is_exact(files: dict[str, Path], song: np.ndarray) -> None:
    y, sr = load(files["wav"], sr=None)
    assert sr == SRC_SR
    np.testing.assert_array_equal(y, song)


def test_flac_native_rate_is_pcm16_exact(files: dict[str, Path], song: np.ndarray) -> None:
    y, sr = load(files["flac"], sr=None)
    assert sr == SRC_SR
    np.testing.assert_allclose(y, song, atol=1.0 / 32768)


@pytest.mark.parametrize("target_sr", [8000, 16000, 22050, 48000])
def test_resampling_gives_expected_length(files: dict[str, Path], target_sr: int) -> None:
    y, sr = load(files["wav"], sr=target_sr)
    assert sr == target_sr
    assert abs(y.size - round(SONG_S * target_sr)) <= 1


@needs_ffmpeg
def test_ffmpeg_fallback_resamples_and_keeps_native_rate(files: dict[str, Path]) -> None:
    with pytest.raises(RuntimeError):  # libsndfile really cannot open AAC: ffmpeg is used
        sf.SoundFile(files["m4a"])
    y, sr = load(files["m4a"], sr=16000)
    assert sr == 16000 and abs(y.size - SONG_S * 16000) <= 0.01 * SONG_S * 16000
    y, sr = load(files["m4a"], sr=None)
    assert sr == SRC_SR and abs(y.size - SONG_S * SRC_SR) <= 0.01 * SONG_S * SRC_SR


# --------------------------------------------------------------------------- excerpts


def test_wav_excerpt_is_exact_slice(files: dict[str, Path]) -> None:
    full, sr = load(files["wav"], sr=None)
    part, sr2 = load(files["wav"], sr=None, offset_s=1.5, duration_s=2.0)
    assert sr2 == sr
    start = round(1.5 * sr)
    np.testing.assert_array_equal(part, full[start : start + round(2.0 * sr)])


def test_wav_excerpt_to_end(files: dict[str, Path]) -> None:
    full, sr = load(files["wav"], sr=None)
    part, _ = load(files["wav"], sr=None, offset_s=4.0)
    np.testing.assert_array_equal(part, full[round(4.0 * sr) :])


def test_wav_excerpt_resampled_matches_slice(files: dict[str, Path]) -> None:
    full, sr = load(files["wav"], sr=22050)
    part, _ = load(files["wav"], sr=22050, offset_s=2.0, duration_s=3.0)
    ref = full[2 * sr : 5 * sr]
    assert abs(part.size - ref.size) <= 1
    n = min(part.size, ref.size)
    # Resampling edge effects only: the middle matches closely.
    np.testing.assert_allclose(part[500 : n - 500], ref[500 : n - 500], atol=1e-3)


@pytest.mark.parametrize("fmt", ["flac", *COMPRESSED])
def test_excerpt_matches_full_decode(files: dict[str, Path], fmt: str) -> None:
    path = _file(files, fmt)
    full, sr = load(path, sr=22050)
    part, _ = load(path, sr=22050, offset_s=2.0, duration_s=2.5)
    ref = full[2 * sr : round(4.5 * sr)]
    assert abs(part.size - ref.size) <= 0.01 * ref.size
    assert _corr(part, ref, max_lag=0 if fmt == "flac" else 64) > 0.9


@pytest.fixture
def requested(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frame count of every ``SoundFile.read`` call the test makes."""
    frames_asked: list[int] = []
    real_read: Callable[..., Any] = sf.SoundFile.read

    def spy(self: sf.SoundFile, frames: int = -1, **kwargs: Any) -> Any:
        frames_asked.append(frames)
        return real_read(self, frames, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    return frames_asked


def test_excerpt_does_not_decode_whole_file(files: dict[str, Path], requested: list[int]) -> None:
    y, sr = load(files["flac"], sr=None, offset_s=3.0, duration_s=0.5)
    assert y.size == round(0.5 * sr)
    assert requested == [round(0.5 * SRC_SR)]  # one read of just the excerpt, after a seek


# --------------------------------------------------------------------------- channels


def test_stereo_is_downmixed_by_averaging(tmp_path: Path) -> None:
    left = tone(440.0, duration_s=2.0, sr=SRC_SR, amplitude=0.5)
    right = tone(660.0, duration_s=2.0, sr=SRC_SR, amplitude=0.3)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SRC_SR, subtype="FLOAT")
    y, sr = load(path, sr=None)
    assert y.ndim == 1 and sr == SRC_SR
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)
    assert info(path).channels == 2


@needs_ffmpeg
def test_stereo_downmix_through_ffmpeg_keeps_level(tmp_path: Path) -> None:
    left = tone(440.0, duration_s=2.0, sr=SRC_SR, amplitude=0.5)
    right = tone(660.0, duration_s=2.0, sr=SRC_SR, amplitude=0.3)
    wav = tmp_path / "stereo.wav"
    sf.write(wav, np.stack([left, right], axis=1), SRC_SR, subtype="FLOAT")
    m4a = _ffmpeg(wav, tmp_path / "stereo.m4a", "-c:a", "aac", "-b:a", "192k")
    y, sr = load(m4a, sr=None)
    ref = (left + right) / 2
    assert y.ndim == 1 and sr == SRC_SR
    assert _corr(y, ref, max_lag=1200) > 0.9
    rms_ratio = float(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(ref**2)))
    assert 0.85 < rms_ratio < 1.15  # an average, not ffmpeg's +3 dB "-ac 1" sum


# --------------------------------------------------------------------------- header checks


def test_max_duration_stops_decoding_one_frame_past_the_limit(
    files: dict[str, Path], requested: list[int]
) -> None:
    """The header's length is a hint: what is decoded is measured, and decoding stops one frame
    past the limit (memory stays bounded by the limit, not by the file)."""
    with pytest.raises(AudioError, match="too long") as err:
        load(files["flac"], max_duration_s=1.0)
    assert "song.flac" in str(err.value)
    assert 0 < sum(requested) <= SRC_SR + 1


@needs_ffmpeg
def test_ffmpeg_decodes_no_more_than_the_limit(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        commands.append(cmd)
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(decode_mod.subprocess, "run", spy)
    with pytest.raises(AudioError, match="too long") as err:
        load(files["m4a"], max_duration_s=1.0)
    assert "song.m4a" in str(err.value)
    assert [Path(c[0]).name for c in commands] == ["ffprobe", "ffmpeg"]
    ffmpeg = commands[1]
    assert float(ffmpeg[ffmpeg.index("-t") + 1]) < 1.01


def test_max_duration_applies_to_the_excerpt(files: dict[str, Path]) -> None:
    y, sr = load(files["wav"], sr=None, duration_s=1.0, max_duration_s=1.5)
    assert y.size == sr
    with pytest.raises(AudioError, match="excerpt is too long"):
        load(files["wav"], duration_s=3.0, max_duration_s=1.5)


def test_min_and_max_duration_accept_a_file_in_range(files: dict[str, Path]) -> None:
    y, sr = load(files["wav"], min_duration_s=SONG_S - 0.5, max_duration_s=SONG_S + 0.5)
    assert abs(y.size / sr - SONG_S) < 1e-3


# --------------------------------------------------------------------------- bad files


def _assert_audio_error(path: Path, match: str, **kwargs: Any) -> AudioError:
    with pytest.raises(AudioError, match=match) as err:
        load(path, **kwargs)
    assert path.name in str(err.value)
    assert err.value.path == str(path)
    return err.value


def test_missing_file(tmp_path: Path) -> None:
    _assert_audio_error(tmp_path / "nope.wav", "not found")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _assert_audio_error(path, r"empty file \(0 bytes\)")


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    _assert_audio_error(folder, "directory")


def test_text_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are not the samples you are looking for\n" * 20)
    err = _assert_audio_error(path, "not audio")
    assert "libsndfile" in err.problem  # the decoder's reason is quoted


def test_truncated_wav_header(tmp_path: Path, files: dict[str, Path]) -> None:
    path = tmp_path / "truncated.wav"
    path.write_bytes(files["wav"].read_bytes()[:30])
    _assert_audio_error(path, "not audio|corrupt|unsupported")


def test_truncated_wav_data_loads_what_is_there(tmp_path: Path, files: dict[str, Path]) -> None:
    data = files["wav"].read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    y, sr = load(path, sr=None)
    assert 0 < y.size / sr < SONG_S


def test_header_only_wav_has_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "nodata.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SRC_SR)
    _assert_audio_error(path, "no audio samples")


def test_silent_file(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SRC_SR, dtype=np.float32), SRC_SR)
    _assert_audio_error(path, "silent")


def test_nearly_silent_file_is_silent_but_quiet_file_is_not(tmp_path: Path) -> None:
    hum = tone(100.0, duration_s=1.0, sr=SRC_SR, amplitude=1.0)
    below = tmp_path / "below.wav"
    sf.write(below, 3e-5 * hum, SRC_SR, subtype="FLOAT")  # -90 dBFS
    _assert_audio_error(below, "silent", sr=None)
    above = tmp_path / "above.wav"
    sf.write(above, 1e-3 * hum, SRC_SR, subtype="FLOAT")  # -60 dBFS
    y, _ = load(above, sr=None)
    assert 0.9e-3 < float(np.max(np.abs(y))) < 1.1e-3


def test_too_short(files: dict[str, Path]) -> None:
    _assert_audio_error(files["wav"], "too short", min_duration_s=SONG_S + 1)


def test_too_short_excerpt(files: dict[str, Path]) -> None:
    _assert_audio_error(
        files["wav"], "too short", offset_s=SONG_S - 0.5, duration_s=2.0, min_duration_s=1.0
    )


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_too_long(files: dict[str, Path], fmt: str) -> None:
    _assert_audio_error(files[fmt], "too long", max_duration_s=SONG_S / 2)


@pytest.mark.parametrize("fmt", ["wav", "ogg", pytest.param("m4a", marks=needs_ffmpeg)])
def test_offset_past_the_end(files: dict[str, Path], fmt: str) -> None:
    _assert_audio_error(_file(files, fmt), "beyond the end", offset_s=SONG_S + 1.0)


def test_non_finite_samples_are_corrupt(tmp_path: Path) -> None:
    y = tone(440.0, duration_s=1.0, sr=SRC_SR)
    y[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, y, SRC_SR, subtype="FLOAT")
    _assert_audio_error(path, "NaN")


def test_out_of_range_float_samples_are_clipped(tmp_path: Path) -> None:
    path = tmp_path / "hot.wav"
    sf.write(path, 1.5 * tone(440.0, duration_s=1.0, sr=SRC_SR, amplitude=1.0), SRC_SR,
             subtype="FLOAT")  # fmt: skip
    y, _ = load(path, sr=None)
    assert float(np.max(np.abs(y))) == pytest.approx(1.0)


@needs_ffmpeg
def test_ffmpeg_missing_is_reported(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode_mod.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg is not on PATH") as err:
        load(files["m4a"])
    assert "song.m4a" in str(err.value)
    load(files["flac"])  # libsndfile formats do not need ffmpeg


@needs_ffmpeg
def test_ffprobe_missing_still_decodes_at_a_given_rate(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        decode_mod.shutil, "which", lambda name: None if name == "ffprobe" else real_which(name)
    )
    y, sr = load(files["m4a"], sr=16000)
    assert sr == 16000 and abs(y.size - SONG_S * sr) <= 0.01 * SONG_S * sr
    with pytest.raises(AudioError, match="ffprobe"):
        load(files["m4a"], sr=None)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sr": 0},
        {"sr": -22050},
        {"sr": 22050.5},
        {"offset_s": -1.0},
        {"offset_s": float("nan")},
        {"duration_s": 0.0},
        {"duration_s": -2.0},
        {"min_duration_s": -1.0},
        {"max_duration_s": 0.0},
        {"min_duration_s": 5.0, "max_duration_s": 2.0},
    ],
)
def test_bad_parameters(files: dict[str, Path], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        load(files["wav"], **kwargs)


def test_bad_parameters_win_over_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ParameterError):
        load(tmp_path / "nope.wav", sr=0)


# --------------------------------------------------------------------------- info


@pytest.mark.parametrize(
    ("fmt", "expected_sr", "expected_format"),
    [
        ("wav", SRC_SR, "WAV"),
        ("flac", SRC_SR, "FLAC"),
        ("ogg", SRC_SR, "OGG"),
        ("opus", 48000, "OGG"),
        pytest.param("m4a", SRC_SR, "mp4", marks=needs_ffmpeg),
    ],
)
def test_info(files: dict[str, Path], fmt: str, expected_sr: int, expected_format: str) -> None:
    meta = info(files[fmt])
    assert isinstance(meta, AudioInfo)
    assert meta.path == files[fmt]
    assert meta.sr == expected_sr
    assert meta.channels == 1
    assert meta.duration_s == pytest.approx(SONG_S, abs=0.05)
    assert expected_format in meta.format
    with pytest.raises(AttributeError):  # frozen
        setattr(meta, "sr", 1)  # noqa: B010


def test_info_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found"):
        info(tmp_path / "missing.flac")
    text = tmp_path / "text.flac"
    text.write_text("hello\n")
    with pytest.raises(AudioError, match=r"text\.flac"):
        info(text)


# --------------------------------------------------------------------------- hashing, scanning


def test_content_hash(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(5 * (1 << 20) // 2)  # 2.5 MiB: several chunks
    a = tmp_path / "a.bin"
    a.write_bytes(data)
    b = tmp_path / "copy" / "b.wav"
    b.parent.mkdir()
    b.write_bytes(data)
    c = tmp_path / "c.bin"
    c.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert content_hash(a) == hashlib.sha1(data).hexdigest()
    assert content_hash(a) == content_hash(str(b))
    assert content_hash(c) != content_hash(a)
    assert len(content_hash(a)) == 40
    with pytest.raises(AudioError, match=r"missing\.wav"):
        content_hash(tmp_path / "missing.wav")


def test_audio_extensions() -> None:
    assert isinstance(AUDIO_EXTENSIONS, frozenset)
    expected = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif"}
    assert expected | {".aiff", ".wma"} == AUDIO_EXTENSIONS


def test_find_audio(tmp_path: Path) -> None:
    root = tmp_path / "music"
    for rel in [
        "b.flac",
        "a.wav",
        "sub/c.MP3",
        "sub/deeper/d.opus",
        "sub/notes.txt",
        "sub/cover.jpg",
        ".hidden/e.wav",
        "sub/._c.mp3",
    ]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    direct = tmp_path / "loose.txt"  # a file given directly is kept whatever its extension
    direct.write_bytes(b"x")

    found = find_audio([root, direct, root / "a.wav", str(root)])
    assert found == sorted(
        [root / "a.wav", root / "b.flac", root / "sub/c.MP3", root / "sub/deeper/d.opus", direct],
        key=str,
    )
    assert all(isinstance(p, Path) for p in found)
    assert find_audio([]) == []
    with pytest.raises(AudioError, match="nothing-here"):
        find_audio([tmp_path / "nothing-here"])


@needs_ffmpeg
def test_a_flac_stream_written_to_a_pipe_decodes_whole(tmp_path: Path) -> None:
    """``ffmpeg ... -f flac -`` cannot go back to write the length into the header; libsndfile
    stopped part-way through such a stream with a seek error (the README pipes one into
    ``identify -``), so it goes to ffmpeg, and every block reader does the same."""
    from audiolsh.audio.stream import stream_blocks

    y = music(duration_s=30.0, sr=44100, seed=3)
    sf.write(tmp_path / "song.wav", np.stack([y, y], axis=1), 44100, subtype="PCM_24")
    piped = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(tmp_path / "song.wav"),
                            "-f", "flac", "-"], capture_output=True, check=True).stdout
    path = tmp_path / "piped.flac"
    path.write_bytes(piped)
    assert sf.info(str(path)).frames >= 1 << 62  # the header does not say the length
    got, sr = load(path, sr=22050)
    assert sr == 22050 and abs(len(got) - 30 * 22050) <= 2
    assert _corr(got, load(tmp_path / "song.wav", sr=22050)[0]) > 0.999
    streamed = np.concatenate(list(stream_blocks(path, sr=22050)))
    assert abs(len(streamed) - len(got)) <= 2
    assert np.isnan(info(path).duration_s)  # not 4e14 s
