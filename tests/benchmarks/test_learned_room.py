"""learned_room.py: the training pairs, the embedding, and the exhaustive scan's alignment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import learned_room as lr
from audiolsh.audio.synth import music

torch = pytest.importorskip("torch", reason="the pilot needs PyTorch (make test installs it)")


@pytest.fixture(scope="module")
def songs() -> list[np.ndarray]:
    return [music(duration_s=20.0, sr=lr.rp.SR, seed=s) for s in range(3)]


def test_the_embedding_is_one_unit_vector_a_window() -> None:
    model = lr.build_model(torch)
    y = torch.randn(5, lr.WIN)
    e = model(y).detach().numpy()
    assert e.shape == (5, lr.DIM)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    # the log-mel is centred per window: a louder copy is the same window
    np.testing.assert_allclose(model(3.0 * y).detach().numpy(), e, atol=1e-4)


@pytest.mark.parametrize(("db_hop", "at"), [(0.1, 7.3), (0.5, 7.3), (0.5, 5.0)])
def test_the_scan_finds_the_track_and_offset_a_clip_was_cut_from(songs: list[np.ndarray], db_hop: float,
                                                                  at: float) -> None:
    torch.manual_seed(0)
    model = lr.build_model(torch).eval()
    scan = lr.Scan(torch, model, [lr._resample(y, lr.rp.SR) for y in songs], db_hop)
    assert len(scan.E) == sum(1 + (round(20.0 * lr.SR) - lr.WIN) // round(db_hop * lr.SR) for _ in songs)
    start = round(at * lr.rp.SR)
    track, offset_s, score, z = scan.answer(songs[2][start:start + 3 * lr.rp.SR])
    assert track == 2
    assert abs(offset_s - at) < 0.06
    assert score > 0.99 and z > 3


def test_a_training_pair_is_a_clean_window_and_the_same_passage_in_a_room(tmp_path: Path,
                                                                          songs: list[np.ndarray]) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    for i, y in enumerate(songs):
        sf.write(folder / f"s{i}.wav", y, lr.rp.SR)
    np.save(tmp_path / "speech.npy", np.random.default_rng(1).standard_normal(30 * lr.SR).astype(np.float32))
    data = lr.Data(torch, [str(folder)], str(tmp_path / "speech.npy"), seed=3)
    assert data.hours == pytest.approx(3 * 20.0 / 3600, rel=1e-3)
    anchor, positive = data.batch(16)
    assert anchor.shape == positive.shape == (16, lr.WIN)
    assert torch.isfinite(positive).all()
    # every pair differs: noise at 12 dB or less, a room most of the time
    a, p = anchor.numpy(), positive.numpy()
    assert all(np.abs(a[i] - p[i]).max() > 0 for i in range(16))


def test_train_writes_a_model_that_evaluate_loads(tmp_path: Path, songs: list[np.ndarray]) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    for i, y in enumerate(songs):
        sf.write(folder / f"s{i}.wav", y, lr.rp.SR)
    np.save(tmp_path / "speech.npy", np.random.default_rng(1).standard_normal(30 * lr.SR).astype(np.float32))
    out = tmp_path / "m.pt"
    lr.train(argparse.Namespace(folders=[str(folder)], speech=str(tmp_path / "speech.npy"), steps=2, batch=8,
                                lr=1e-3, tau=0.05, seed=0, init=None, out=str(out)))
    again = tmp_path / "m2.pt"  # trained on from the first model
    lr.train(argparse.Namespace(folders=[str(folder)], speech=str(tmp_path / "speech.npy"), steps=1, batch=8,
                                lr=1e-3, tau=0.05, seed=0, init=str(out), out=str(again)))
    assert again.exists()
    systems = lr.learned(argparse.Namespace(model=[str(out)], db_hop=[0.5]), [str(folder / "s0.wav")])
    assert list(systems) == ["learned, indexed every 0.5 s"]
    both = lr.learned(argparse.Namespace(model=[str(out), str(again)], db_hop=[0.5]),
                      [str(folder / "s0.wav")])
    assert list(both) == ["learned m, indexed every 0.5 s", "learned m2, indexed every 0.5 s"]
    with pytest.raises(SystemExit, match="two models named 'm'"):
        lr.learned(argparse.Namespace(model=[str(out), str(out)], db_hop=[0.5]), [str(folder / "s0.wav")])
    start = round(9.0 * lr.rp.SR)
    track, offset_s, _, _ = systems["learned, indexed every 0.5 s"](songs[0][start:start + 3 * lr.rp.SR])
    assert track == 0 and abs(offset_s - 9.0) < 0.06


def test_the_diagnostic_talkers_are_the_protocols_kind_of_voice_at_other_seeds(tmp_path: Path) -> None:
    out = tmp_path / "voices.npy"
    lr.speech(argparse.Namespace(source="protocol", pieces=2, out=str(out)))
    bank = np.load(out)
    assert bank.shape == (2 * 30 * lr.SR,) and bank.dtype == np.float32
    np.testing.assert_allclose(np.sqrt(np.mean(bank[: 30 * lr.SR] ** 2)), 1.0, rtol=1e-3)
