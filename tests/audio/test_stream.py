"""Decoding in blocks: the same samples as ``load``, the checks made on the way, bounded memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import decode, load, synth
from audiolsh.audio.stream import SignalStats, stream_blocks
from audiolsh.errors import AudioError

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _write_long(path: Path, *, duration_s: float, sr: int, channels: int, silent: bool = False) -> Path:
    synth.write_long_flac(path, duration_s=duration_s, sr=sr, channels=channels, silent=silent)
    return path


@pytest.mark.parametrize(("sr", "channels"), [(44100, 2), (22050, 1), (48000, 6)])
def test_blocks_equal_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sr: int, channels: int) -> None:
    y = synth.music(duration_s=8.3, sr=sr, seed=1)
    path = tmp_path / "t.flac"
    sf.write(path, np.stack([y] * channels, axis=1) * 0.7, sr, subtype="PCM_16")
    whole, _ = load(path, sr=22050)
    monkeypatch.setattr(decode, "_BLOCK_FRAMES", 3001)
    stats = SignalStats(22050)
    blocks = list(stream_blocks(path, sr=22050, stats=stats))
    assert max(len(b) for b in blocks) <= 3001
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert stats.n_samples == len(whole)
    assert stats.peak == pytest.approx(float(np.abs(whole).max()))


def test_too_short_and_too_long_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "t.flac"
    sf.write(path, synth.music(duration_s=4.0, sr=22050, seed=2), 22050)
    with pytest.raises(AudioError, match="too short"):
        list(stream_blocks(path, sr=22050, min_duration_s=5.0))
    with pytest.raises(AudioError, match="too long"):
        list(stream_blocks(path, sr=22050, max_duration_s=2.5))
    assert len(np.concatenate(list(stream_blocks(path, sr=22050, max_duration_s=4.0)))) == 4 * 22050


def test_ffmpeg_pipe_equals_load(tmp_path: Path) -> None:
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    wav = tmp_path / "t.wav"
    sf.write(wav, np.stack([synth.music(duration_s=6.0, sr=44100, seed=3)] * 2, axis=1) * 0.5, 44100)
    m4a = tmp_path / "t.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    whole, _ = load(m4a, sr=22050)
    np.testing.assert_array_equal(np.concatenate(list(stream_blocks(m4a, sr=22050))), whole)


def _peak_rss_mb(script: str) -> float:
    """Peak resident memory (MB) of a fresh interpreter running ``script``.  VmHWM, not
    ``ru_maxrss``: Linux carries ``ru_maxrss`` over ``exec`` from the forking process (pytest's
    own few hundred MB), the high-water mark of the new image starts afresh."""
    code = textwrap.dedent(script) + textwrap.dedent("""
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                print(int(line.split()[1]) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    return float(out.stdout.split()[-1])


@pytest.mark.slow
def test_long_silent_file_is_refused_without_holding_it(tmp_path: Path) -> None:
    path = _write_long(tmp_path / "silence.flac", duration_s=40 * 60, sr=48000, channels=4, silent=True)
    rss = _peak_rss_mb(f"""
        from audiolsh.audio.stream import stream_blocks
        from audiolsh.errors import AudioError
        try:
            for _ in stream_blocks({str(path)!r}, sr=22050, min_duration_s=3.0):
                pass
        except AudioError as exc:
            assert "silent" in str(exc), exc
        else:
            raise SystemExit("not refused")
    """)
    assert rss < 120  # the 40 minutes at 22,050 Hz alone would be 212 MB as float32


@pytest.mark.slow
def test_extract_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    """Peak RSS of extracting every mode of a 5-min and a 20-min stereo FLAC: within a few MB
    of each other (whole-file analysis grew with the length: 737 MB at 10 min, 3 GB at 1 h)."""
    rss = {}
    for minutes in (5, 20):
        path = _write_long(tmp_path / f"{minutes}.flac", duration_s=minutes * 60, sr=44100, channels=2)
        rss[minutes] = _peak_rss_mb(f"""
            from audiolsh.library.extract import extract
            modes = ("fingerprint", "embedding", "rhythm", "timbre", "chroma", "peaks")
            r = extract({str(path)!r}, "x", modes, 10.0, 5.0)
            assert r.duration_s == {minutes * 60}
        """)
        path.unlink()
    assert rss[20] < 600, rss
    assert rss[20] - rss[5] < 60, rss
