"""Streamed analysis (block by block) against the whole-signal analysis of the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import decode, load, synth
from audiolsh.features.framing import Framer
from audiolsh.library.extract import analyse, extract

MODES = ("fingerprint", "embedding", "rhythm", "timbre", "chroma", "peaks")


def _write(path: Path, *, duration_s: float, sr: int, channels: int, seed: int) -> Path:
    y = synth.music(duration_s=duration_s, sr=sr, seed=seed)
    sf.write(path, np.stack([y * (0.4 + 0.5 * c / channels) for c in range(channels)], axis=1), sr,
             subtype="PCM_16", format="FLAC")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("duration_s", "sr", "channels", "block"), [
    (37.3, 44100, 2, 10007),   # block boundaries fall mid-frame at every stage
    (12.1, 48000, 3, 4099),
    (9.2, 22050, 1, 1 << 18),  # shorter than one window, no resampling
    (61.0, 32000, 1, 77777),
])
def test_streamed_features_equal_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            duration_s: float, sr: int, channels: int, block: int) -> None:
    path = str(_write(tmp_path / "t.flac", duration_s=duration_s, sr=sr, channels=channels, seed=7))
    y, y_sr = load(path, sr=22050)
    whole = analyse(y, y_sr, modes=MODES, window_s=10.0, hop_s=5.0)
    monkeypatch.setattr(decode, "_BLOCK_FRAMES", block)
    streamed = extract(path, "x", MODES, 10.0, 5.0)

    assert streamed.duration_s == whole.duration_s
    assert list(streamed.vectors) == list(whole.vectors)
    for mode, (X, offsets) in whole.vectors.items():
        Xs, offsets_s = streamed.vectors[mode]
        np.testing.assert_array_equal(offsets_s, offsets)
        # float32 features: BLAS blocking and summation order differ, nothing else
        np.testing.assert_allclose(Xs, X, rtol=1e-4, atol=1e-4 * float(np.abs(X).max()), err_msg=mode)
    assert whole.chroma_frames is not None and streamed.chroma_frames is not None
    np.testing.assert_allclose(streamed.chroma_frames[0], whole.chroma_frames[0], atol=1e-5)
    np.testing.assert_array_equal(streamed.chroma_frames[1], whole.chroma_frames[1])
    # Peak picking is exact: the same peak sets and landmark hashes.
    assert whole.peaks is not None and streamed.peaks is not None
    np.testing.assert_array_equal(streamed.peaks[0].indptr, whole.peaks[0].indptr)
    np.testing.assert_array_equal(streamed.peaks[0].elements, whole.peaks[0].elements)
    np.testing.assert_array_equal(streamed.peaks[1], whole.peaks[1])
    np.testing.assert_array_equal(streamed.landmarks.hashes, whole.landmarks.hashes)
    np.testing.assert_array_equal(streamed.landmarks.times, whole.landmarks.times)


@pytest.mark.parametrize(("center", "pad_mode", "n"), [
    (True, "constant", 5000), (True, "reflect", 5000), (False, "constant", 5000),
    (True, "reflect", 700), (False, "constant", 300), (True, "constant", 10),
])
def test_framer_gives_librosa_frames(rng: np.random.Generator, center: bool, pad_mode: str, n: int) -> None:
    import librosa

    y = rng.standard_normal(n).astype(np.float32)
    n_fft, hop = 512, 128
    framer = Framer(n_fft, hop, center=center, pad_mode=pad_mode)
    segs = [framer.push(y[a : a + 333]) for a in range(0, n, 333)] + [framer.finish()]
    got = np.concatenate([librosa.util.frame(s, frame_length=n_fft, hop_length=hop) for s in segs
                          if s is not None], axis=1)
    padded = np.pad(y, n_fft // 2, mode=pad_mode) if center else np.pad(y, (0, max(n_fft - n, 0)))
    want = librosa.util.frame(padded, frame_length=n_fft, hop_length=hop)
    np.testing.assert_array_equal(got, want)
    assert framer.n_frames == want.shape[1]
