"""Within-track normalisation (WCCN): the maths, and the matrices that ship with the package."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.audio import synth
from audiolsh.errors import ParameterError
from audiolsh.features import normalisation as wccn
from audiolsh.features.excerpts import excerpt_features

# Packages of the corpora the evaluation reports on (dev) or chose the shrinkage on (hold).
EVALUATION_PACKAGES = {"asc-music", "singularity-music", "wesnoth-1.16-music", "warzone2100-music",
                       "extremetuxracer-data", "flare-game", "lincity-ng-data", "megaglest-data",
                       "xmoto-data"}


def _tracks(seed: int, *, n_tracks: int = 40, per_track: int = 12,
            d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose track shows in dims 0..3 (small spread) and whose section varies widely in
    dims 4..d (large within-track spread): plain cosine is dominated by the section."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((n_tracks, d))
    centres[:, :4] = rng.normal(0, 1.0, (n_tracks, 4))
    labels = np.repeat(np.arange(n_tracks), per_track)
    X = centres[labels] + rng.normal(0, 0.3, (len(labels), d))
    X[:, 4:] += rng.normal(0, 3.0, (len(labels), d - 4))
    return X, labels


def _nn_same_track(X: np.ndarray, labels: np.ndarray) -> float:
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    return float(np.mean(labels[S.argmax(axis=1)] == labels))


def test_wccn_whitens_the_within_track_scatter_and_finds_the_track() -> None:
    X, labels = _tracks(0)
    A = wccn.fit_within_track(X, labels, shrinkage=0.0)
    assert A.shape == (16, 16) and A.dtype == np.float32 and np.allclose(A, A.T, atol=1e-5)
    # Within-track covariance of the transformed rows is the identity.
    means = np.stack([X[labels == t].mean(axis=0) for t in np.unique(labels)])
    D = (X - means[labels]) @ A
    W = D.T @ D / (len(X) - len(means))
    assert np.allclose(W, np.eye(16), atol=1e-3)
    # Learned on some tracks, it helps on others it never saw.
    Y, other = _tracks(1)
    assert _nn_same_track(Y, other) < 0.5
    assert _nn_same_track(Y @ A, other) > _nn_same_track(Y, other) + 0.3


def test_full_shrinkage_is_plain_cosine_and_bad_input_is_refused() -> None:
    X, labels = _tracks(2)
    A = wccn.fit_within_track(X, labels, shrinkage=1.0)
    assert np.allclose(A, A[0, 0] * np.eye(16), atol=1e-6 * abs(A[0, 0]))
    with pytest.raises(ParameterError, match="shrinkage"):
        wccn.fit_within_track(X, labels, shrinkage=1.5)
    with pytest.raises(ParameterError, match="two tracks"):
        wccn.fit_within_track(X[:12], labels[:12])
    with pytest.raises(ParameterError, match="labels"):
        wccn.fit_within_track(X, labels[:-1])


def test_the_shipped_normalisation_fits_the_descriptors_and_saw_no_evaluation_track() -> None:
    learned = wccn.load(wccn.DEFAULT)
    assert learned is not None and wccn.load("none") is None
    y = synth.music(duration_s=12.0, sr=22050, seed=0)
    feats = excerpt_features(y, 22050, modes=("rhythm", "timbre"))
    for mode in ("rhythm", "timbre"):
        dim = np.asarray(feats[mode].X).shape[1]
        A = learned.matrix(mode, dim)
        assert A is not None and A.shape == (dim, dim)
        assert np.allclose(A, A.T, atol=1e-4) and np.linalg.eigvalsh(A.astype(np.float64)).min() > 0
    assert learned.matrix("chroma", 12) is None
    # The combined mode's matrix takes rhythm and timbre side by side.
    dims = [np.asarray(feats[m].X).shape[1] for m in ("rhythm", "timbre")]
    assert learned.matrix("combined", sum(dims)) is not None
    assert not learned.matrices["timbre"].flags.writeable  # shared by every library of the process
    meta = learned.meta
    assert meta["n_tracks"] >= 100 and meta["shrinkage"] == wccn.SHRINKAGE
    trained_on = {p for corpus in meta["corpora"] for p in corpus["packages"]}
    assert trained_on and not trained_on & EVALUATION_PACKAGES
    with pytest.raises(ParameterError, match="dimension"):
        learned.matrix("timbre", 7)
    with pytest.raises(ParameterError, match="unknown normalisation"):
        wccn.load("wccn-v0")


def test_the_shipped_normalisation_is_read_through_cpythons_ast_race(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy parses each array header with ast.literal_eval, which CPython 3.11 can fail
    spuriously while another thread builds an AST: the read is tried again."""
    import ast

    real = ast.literal_eval
    calls = 0

    def first_call_fails(text: str) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=5, after=4)")
        return real(text)

    expected = wccn.load(wccn.DEFAULT)
    assert expected is not None
    wccn.load.cache_clear()
    monkeypatch.setattr(ast, "literal_eval", first_call_fails)
    try:
        again = wccn.load(wccn.DEFAULT)
    finally:
        wccn.load.cache_clear()
    assert calls > 1 and again is not None and again.meta == expected.meta
    assert set(again.matrices) == set(expected.matrices)
    for mode, A in expected.matrices.items():
        np.testing.assert_array_equal(again.matrices[mode], A)


def test_save_writes_plain_arrays_with_a_header(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "n.npz"
    wccn.save(str(path), "n", {"timbre": np.eye(3)}, {"n_tracks": 2})
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"header", "mode_timbre"}
        assert np.array_equal(data["mode_timbre"], np.eye(3, dtype=np.float32))


def test_joint_rows_put_every_block_at_unit_length() -> None:
    rng = np.random.default_rng(3)
    R, T = rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    J = wccn.joint_rows([R, T], [(), (2, 4)])
    assert J.shape == (5, 10) and J.dtype == np.float32
    for a, b in ((0, 4), (4, 6), (6, 10)):
        assert np.allclose(np.linalg.norm(J[:, a:b], axis=1), 1.0, atol=1e-6)
    assert np.allclose(J[:, :4], R / np.linalg.norm(R, axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(ParameterError, match="add up"):
        wccn.joint_rows([R], [(3,)])


def test_a_tempo_scaled_copy_stays_nearest_under_the_normalised_rhythm() -> None:
    import librosa

    from audiolsh.features.excerpts import fit_standardizer, standardize

    sr = 22050
    clips = [synth.music(duration_s=12.0, sr=sr, seed=s) for s in range(8)]
    X = np.stack([excerpt_features(c, sr, modes=("rhythm",))["rhythm"].X[0] for c in clips])
    faster = [librosa.effects.time_stretch(c, rate=1.05)[: int(10.5 * sr)] for c in clips]
    Xs = np.stack([excerpt_features(c, sr, modes=("rhythm",))["rhythm"].X[0] for c in faster])
    mean, std = fit_standardizer(np.vstack([X, Xs]))
    A = wccn.load(wccn.DEFAULT).matrix("rhythm", X.shape[1])  # type: ignore[union-attr]

    def unit(Z: np.ndarray) -> np.ndarray:
        return Z / np.linalg.norm(Z, axis=1, keepdims=True)

    S = unit(standardize(Xs, mean, std) @ A) @ unit(standardize(X, mean, std) @ A).T
    assert np.array_equal(S.argmax(axis=1), np.arange(len(clips)))
