"""The music library: every mode from one decode, one catalogue, similar / worst / vote / clusters."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from audiolsh.audio import load, synth
from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.features.scaling import Fusion, Standardizer
from audiolsh.library import COMBINED_PARTS, LIBRARY_VERSION, Library, analyse, index_audio
from audiolsh.query.hits import live_windows, track_windows
from audiolsh.query.identify import identify_clip
from audiolsh.query.similar import similar, stored_clip
from audiolsh.storage import join, open_storage

SR = 22050
MODES = ("embedding", "rhythm", "timbre", "chroma", "peaks")


def _clip(music_dir: Path, name: str, offset_s: float, duration_s: float, lib: Library):
    y, sr = load(music_dir / name, sr=SR, offset_s=offset_s, duration_s=duration_s)
    cfg = lib.config
    return analyse(y, sr, modes=lib.modes, window_s=cfg.window_s, hop_s=cfg.hop_s, path=name)


def _stored_config(where: Path) -> dict:
    """The library's config as its catalogue storage keeps it."""
    storage = open_storage(join(where, "tracks"), readonly=True)
    try:
        return storage.config("library")
    finally:
        storage.close()


def _store_config(where: Path, data: dict) -> None:
    storage = open_storage(join(where, "tracks"))
    with storage.write() as w:
        w.set_config(data, "library")
    storage.close()


def _make_legacy(where: Path, data: dict) -> None:
    """Lay a library out as formats 3 to 5 did: its config in library.json, none in the storage."""
    (where / "library.json").write_text(json.dumps(data))
    db = sqlite3.connect(where / "tracks" / "catalogue.sqlite")
    with db:
        db.execute("DELETE FROM config WHERE name = 'library'")
    db.close()


def test_library_layout_and_catalogue(lib_dir: Path) -> None:
    data = _stored_config(lib_dir)
    assert data["format"] == "audiolsh-library" and data["format_version"] == LIBRARY_VERSION
    assert not (lib_dir / "library.json").exists()  # everything is in the storage
    assert data["normalisation"] == "wccn-v1"
    # Standardisation and fusion statistics are stored in the library, as the engine needs them back.
    assert set(data["stats"]) == {"rhythm", "timbre", "chroma"}
    assert data["stats"]["timbre"]["blocks"] == [40, 280] and "blocks" not in data["stats"]["rhythm"]
    # The learned normalisation is named per mode (its matrix ships with the package); chroma has none.
    assert data["stats"]["rhythm"]["normalisation"] == data["stats"]["timbre"]["normalisation"] == "wccn-v1"
    assert "normalisation" not in data["stats"]["chroma"]
    # The joint form: the jointly normalised rhythm + timbre rows, and the peaks.
    assert set(data["fusion"]) == {"vectors", "peaks"}
    assert all(sd > 0 for _mu, sd in data["fusion"].values())
    with Library.open(lib_dir, readonly=True) as lib:
        assert len(lib) == 7
        names = sorted(Path(t.path).name for t in lib.tracks())
        assert names[0] == "drone0.flac"
        for name in ("embedding", "rhythm", "timbre", "chroma", "chroma_frames", "combined", "peaks"):
            assert len(lib.indexes[name].tracks()) == 7, name
        info = lib.info()
        assert info["n_tracks"] == 7 and info["indexes"]["rhythm"]["n_items"] >= 7 * 5


@pytest.mark.parametrize("by", ["rhythm", "timbre", "chroma", "combined", "peaks"])
def test_similar_ranks_the_source_track_first(lib_dir: Path, music_dir: Path, by: str) -> None:
    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(music_dir, "song2.wav", 12.0, 10.0, lib)
        found = similar(lib, clip, by=by, k=3)
    assert Path(found[0].path).name == "song2.wav", [r.path for r in found]
    assert [r.rank for r in found] == [1, 2, 3]
    assert found[0].score >= found[1].score >= found[2].score
    # A passage of the track is named (synthetic songs repeat, so not necessarily the cut one).
    assert found[0].offset_s is not None and 0.0 <= found[0].offset_s <= 30.0


def test_worst_is_the_least_similar_of_the_whole_collection(lib_dir: Path, music_dir: Path) -> None:
    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(music_dir, "song1.wav", 5.0, 10.0, lib)
        best = similar(lib, clip, by="timbre", k=7)
        worst = similar(lib, clip, by="timbre", k=2, worst=True)
        # Exact check: per track, the lowest cosine between the clip and any stored window.
        Q = lib.prepare("timbre", clip.vectors["timbre"][0])
        X, ids = lib.indexes["timbre"].live_data()
        items = lib.indexes["timbre"].items(ids)
        sub = np.array([it.track_id for it in items])
        tracks = lib.resolve_tracks("timbre", sub)
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        cos = (Qn @ Xn.T).min(axis=0)
        per_track = {int(t): float(cos[tracks == t].min()) for t in np.unique(tracks)}
    # The two most similar tracks are left out (a track is in one list only).
    most = {r.track_id for r in best[:2]}
    expected = sorted(set(per_track) - most, key=per_track.get)[:2]
    assert [r.track_id for r in worst] == expected
    assert np.allclose([r.raw_score for r in worst], [per_track[t] for t in expected], atol=1e-4)
    assert worst[0].score <= worst[1].score
    assert worst[0].score < best[-1].score or len(best) == 7
    # The worst of a tone-rich song is not the song itself.
    assert Path(worst[0].path).name != "song1.wav"


def test_chroma_vote_and_query_by_stored_track(lib_dir: Path, music_dir: Path) -> None:
    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(music_dir, "drone1.flac", 3.0, 10.0, lib)
        voted = similar(lib, clip, by="chroma", method="vote", k=3)
        assert Path(voted[0].path).name == "drone1.flac"
        tid = voted[0].track_id
        by_track = similar(lib, stored_clip(lib, tid, by="rhythm"), by="rhythm", k=3, exclude={tid})
        assert tid not in [r.track_id for r in by_track]
        # Another beatless drone is rhythmically nearer than any song with drums.
        assert Path(by_track[0].path).name.startswith("drone")
        # A stored track as the query holds exactly its own windows, in time order, in every part.
        own = stored_clip(lib, tid, by="combined")
        X, offsets = own.vectors["rhythm"]
        assert np.all(np.diff(offsets) > 0) and len(own.peaks[0]) == len(offsets) == len(X)
        assert np.allclose(own.vectors["timbre"][1], offsets)
        itself = similar(lib, own, by="combined", k=2)
        assert itself[0].track_id == tid and itself[0].raw_score > itself[1].raw_score
        with pytest.raises(ParameterError, match="--method"):
            similar(lib, clip, by="timbre", method="vote")
        with pytest.raises(ParameterError, match="Jaccard"):
            similar(lib, clip, by="peaks", worst=True)


def test_remove_track_and_resume_after_a_partial_commit(tmp_path: Path, music_dir: Path) -> None:
    lib = Library.create(tmp_path / "lib", modes=("timbre", "chroma"))
    files = sorted(music_dir.iterdir())
    index_audio(lib, files[:2], workers=1)
    # A crash after the modes committed but before the catalogue did: simulate it.
    from audiolsh.library import extract

    ex = extract(str(files[2]), "hash-of-third", lib.modes, lib.config.window_s, lib.config.hop_s)
    lib.indexes["timbre"].add(lib.prepare("timbre", ex.vectors["timbre"][0]))  # stray rows, no track
    with lib.indexes["chroma"].session() as s:
        h = s.add_track(ex.path, content_hash=ex.content_hash, duration_s=ex.duration_s)
        s.add(lib.prepare("chroma", ex.vectors["chroma"][0]), track=h, offsets_s=ex.vectors["chroma"][1])
    assert len(lib) == 2
    clip = analyse(load(files[2], sr=SR, duration_s=10.0)[0], SR, modes=lib.modes,
                   window_s=10.0, hop_s=5.0)
    # Rows of an incomplete track are never returned.
    assert all(r.path != str(files[2]) for r in similar(lib, clip, by="chroma", k=5))
    lib.add_batch([ex])
    assert len(lib) == 3 and len(lib.indexes["chroma"].tracks()) == 3  # not added twice
    assert similar(lib, clip, by="chroma", k=1)[0].path == str(files[2])
    gone = lib.tracks()[0]
    lib.remove_track(gone.id)
    assert len(lib) == 2 and gone.id not in [t.id for t in lib.tracks()]
    assert gone.path not in [r.path for r in similar(lib, clip, by="timbre", k=5)]
    with pytest.raises(ParameterError, match="no track"):
        lib.remove_track(gone.id)
    lib.close()
    with Library.open(tmp_path / "lib") as again:
        assert len(again) == 2


def test_bad_libraries_and_parameters(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no music library"):
        Library.open(tmp_path)
    with pytest.raises(ParameterError, match="unknown modes"):
        Library.create(None, modes=("tempo",))
    with pytest.raises(ParameterError, match="--hop"):
        Library.create(None, window_s=10.0, hop_s=20.0)
    Library.create(tmp_path / "a", modes=("timbre",)).close()
    with pytest.raises(ParameterError, match="cannot add"):
        Library.open_or_create(tmp_path / "a", modes=("timbre", "rhythm"))
    newer = {"format": "audiolsh-library", "format_version": 99}
    _store_config(tmp_path / "a", newer)
    with pytest.raises(IndexFormatError, match="newer"):
        Library.open(tmp_path / "a")
    with pytest.raises(ParameterError, match="normalisation"):
        Library.create(None, normalisation="lda")
    # Libraries of formats 1 and 2 hold combined and timbre vectors of other kinds: built again.
    for old in (1, 2):
        _store_config(tmp_path / "a", {**newer, "format_version": old})
        with pytest.raises(IndexFormatError, match="older than this audiolsh reads"):
            Library.open(tmp_path / "a")


def test_standardizer_and_fusion_maths() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, [1.0, 10.0, 0.0], size=(500, 3))
    s = Standardizer.fit(X)
    Z = s(X)
    assert np.allclose(Z[:, :2].mean(axis=0), 0, atol=1e-5)
    assert np.allclose(Z[:, :2].std(axis=0), 1, atol=1e-4)
    assert np.all(np.isfinite(Z))  # the constant column does not divide by zero
    assert np.allclose(Standardizer.from_dict(s.to_dict())(X), Z)
    b = Standardizer.fit(X, blocks=(1, 2))
    back = Standardizer.from_dict(json.loads(json.dumps(b.to_dict())))
    assert back.blocks == (1, 2) and np.allclose(back(X), b(X))
    assert np.allclose(np.linalg.norm(b(X)[:, 1:], axis=1), 1, atol=1e-5)
    # The combined rows' cosine, turned into the fused score, is the sum of the z-scored
    # rhythm and timbre cosines plus the z-scored Jaccard.
    fusion = Fusion({"rhythm": (0.1, 0.2), "timbre": (0.3, 0.05), "peaks": (0.02, 0.01)})
    A, B = rng.normal(size=(4, 5)), rng.normal(size=(4, 7))
    C = fusion.combine([A, B])
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
    J = rng.uniform(0, 0.2, size=(4, 4))
    expected = (An @ An.T - 0.1) / 0.2 + (Bn @ Bn.T - 0.3) / 0.05 + (J - 0.02) / 0.01
    assert np.allclose(fusion.score(C @ C.T, J), expected, atol=1e-3)
    assert Fusion.from_dict(fusion.to_dict()) == fusion and not fusion.joint
    # Joint form: rhythm and the two timbre blocks, each at unit length, side by side, through
    # the matrix, then a z-scored cosine plus the z-scored Jaccard.
    R, T = rng.normal(size=(4, 6)), rng.normal(size=(4, 320))
    M = rng.normal(size=(326, 326))
    M = M @ M.T / 326 + np.eye(326)
    joint = Fusion({"vectors": (0.2, 0.1), "peaks": (0.02, 0.01)}, M)
    C = joint.combine([R, T])

    def unit(Z: np.ndarray) -> np.ndarray:
        return Z / np.linalg.norm(Z, axis=1, keepdims=True)

    U = unit(np.hstack([unit(R), unit(T[:, :40]), unit(T[:, 40:])]) @ M)
    assert joint.joint and np.allclose(C, U, atol=1e-4)
    assert np.allclose(joint.score(C @ C.T, J), (U @ U.T - 0.2) / 0.1 + (J - 0.02) / 0.01, atol=1e-3)
    assert Fusion.from_dict(joint.to_dict(), M).matrix is M


def _fused_per_track(lib: Library, clip, sets=None):  # type: ignore[no-untyped-def]
    """Brute force over every stored window: rhythm and timbre cosines and peak Jaccard joined
    by (track, offset), z-scored with the library's statistics; each track's best and worst."""
    from audiolsh.search.brute import jaccard_rows

    stats = lib.fusion.stats
    per_part = {}
    for part in COMBINED_PARTS:
        data, ids = lib.indexes[part].live_data()
        sub, offsets = lib.indexes[part].item_arrays(ids)
        order = np.lexsort((offsets, lib.resolve_tracks(part, sub)))
        per_part[part] = (data.take(order) if part == "peaks" else data[order],
                          lib.resolve_tracks(part, sub)[order], offsets[order])
    tracks, offsets = per_part["rhythm"][1], per_part["rhythm"][2]
    for part in COMBINED_PARTS:  # the three indexes hold the same windows
        assert np.array_equal(per_part[part][1], tracks) and np.allclose(per_part[part][2], offsets)
    def unit(Z: np.ndarray) -> np.ndarray:
        return Z / np.linalg.norm(Z, axis=1, keepdims=True)

    def joint(R: np.ndarray, T: np.ndarray) -> np.ndarray:
        return unit(np.hstack([unit(R), unit(T[:, :40]), unit(T[:, 40:])]) @ lib.fusion.matrix)

    # The combined mode starts from the plain standardised parts (the stored rows without the
    # single modes' learned normalisation), side by side, through the joint matrix.
    plain = {part: (lib.prepare(part, clip.vectors[part][0], learned=False),
                    lib.prepare(part, lib.standardizer(part).invert(per_part[part][0]), learned=False))
             for part in ("rhythm", "timbre")}
    cos = joint(plain["rhythm"][0], plain["timbre"][0]) @ joint(plain["rhythm"][1], plain["timbre"][1]).T
    total = (cos - stats["vectors"][0]) / stats["vectors"][1]
    n_q, n_x = total.shape
    q_sets = lib.peak_sets(clip.peaks[0]) if sets is None else sets
    jac = jaccard_rows(q_sets, per_part["peaks"][0], np.tile(np.arange(n_x), (n_q, 1)))
    total = total + (jac - stats["peaks"][0]) / stats["peaks"][1]
    best = {int(t): float(total[:, tracks == t].max()) for t in np.unique(tracks)}
    low = {int(t): float(total[:, tracks == t].min()) for t in np.unique(tracks)}
    return best, low


def test_combined_is_the_fused_score_of_the_best_passage(lib_dir: Path, music_dir: Path) -> None:
    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(music_dir, "song2.wav", 12.0, 10.0, lib)
        found = similar(lib, clip, by="combined", k=4)
        best, low = _fused_per_track(lib, clip)
        worst = similar(lib, clip, by="combined", k=2, worst=True)
    expected = sorted(best, key=best.get, reverse=True)[:4]
    assert [r.track_id for r in found] == expected
    assert np.allclose([r.raw_score for r in found], [best[t] for t in expected], atol=1e-3)
    assert Path(found[0].path).name == "song2.wav"
    # --worst: the tracks holding the least similar passages of the whole collection, but for
    # the two most similar (a track is in one list only).
    rest = {t: v for t, v in low.items() if t not in expected[:2]}
    assert [r.track_id for r in worst] == sorted(rest, key=rest.get)[:2]
    assert np.allclose([r.raw_score for r in worst], sorted(rest.values())[:2], atol=1e-3)


@pytest.mark.parametrize("method", ["chroma-vote", "minhash-peaks"])
def test_seed_identification_methods_check_the_offset(lib_dir: Path, music_dir: Path, method: str) -> None:
    from audiolsh.query.identify import identify

    y, sr = load(music_dir / "song3.wav", sr=SR, offset_s=15.0, duration_s=10.0)
    with Library.open(lib_dir, readonly=True) as lib:
        found = identify(lib, y, sr, method=method)
        assert found is not None and Path(found.path).name == "song3.wav"
        # chroma frames vote to half a second; peak windows only to their 5-s hop
        tolerance = 1.0 if method == "chroma-vote" else 5.0
        assert abs(found.offset_s - 15.0) <= tolerance
        assert 0.0 < found.confidence <= 1.0 and found.method == method
        # The offset check: the same frames shuffled in time no longer agree on a start.
        blocks = y[: len(y) // 10 * 10].reshape(10, -1)[np.random.default_rng(0).permutation(10)]
        shuffled = identify(lib, blocks.ravel(), sr, method=method, threshold=0.0)
        assert shuffled is None or shuffled.confidence < found.confidence
        with pytest.raises(ParameterError, match="fingerprint"):
            identify(lib, y, sr, method="landmarks")


def test_fusion_statistics_come_from_pairs_of_different_tracks() -> None:
    """Within a track the rows are alike; the statistics describe what a query meets in the
    rest of the collection, so pairs of one track are left out."""
    from audiolsh.hashing import as_sets

    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], 20)
    directions = np.eye(8, dtype=np.float32)[:3]  # each track one direction: across tracks cos 0
    vectors = {p: directions[labels] + 1e-3 * rng.standard_normal((60, 8)).astype(np.float32)
               for p in ("rhythm", "timbre")}
    sets = as_sets([[int(t) * 100 + j for j in range(5)] for t in labels])  # disjoint across tracks
    fusion = Fusion.fit(vectors, sets, labels)
    for part in ("rhythm", "timbre"):
        assert abs(fusion.stats[part][0]) < 0.01
    assert fusion.stats["peaks"][0] == 0.0
    # Pairs of distinct rows only (one track): the within-track similarity, with a warning.
    alone = Fusion.fit({p: v[:20] for p, v in vectors.items()}, sets.take(np.arange(20)), labels[:20])
    assert alone.stats["rhythm"][0] > 0.99


def test_a_reader_opened_before_the_first_batch_and_an_empty_library(tmp_path: Path, music_dir: Path) -> None:
    where = tmp_path / "lib"
    Library.create(where, modes=("rhythm", "timbre", "peaks")).close()
    reader = Library.open(where, readonly=True)
    clip = _clip(music_dir, "song2.wav", 12.0, 10.0, reader)
    assert similar(reader, clip, by="combined", k=3) == []  # nothing indexed yet: no answer, no error
    with Library.open(where) as writer:
        index_audio(writer, [music_dir / "song2.wav", music_dir / "song1.wav"], workers=1)
    # The reader learns the statistics the first batch stored.
    found = similar(reader, clip, by="combined", k=2)
    assert Path(found[0].path).name == "song2.wav" and reader.fusion is not None
    reader.close()


def test_common_peak_pairs_are_left_out_of_stored_and_query_sets(tmp_path: Path) -> None:
    from audiolsh.query.identify import identify

    songs = [synth.music(duration_s=20.0, sr=SR, seed=40 + s) for s in range(12)]
    with Library.create(tmp_path / "lib", modes=("rhythm", "timbre", "peaks")) as lib:
        batch = [analyse(y, SR, modes=lib.modes, window_s=10.0, hop_s=5.0, path=f"s{i}.wav",
                         content_hash=f"{i:040x}") for i, y in enumerate(songs)]
        lib.add_batch(batch)
        common = np.asarray(lib.config.peaks_common, np.uint64)
        assert len(common)
        assert np.isin(common, np.concatenate([ex.peaks[0].elements for ex in batch])).all()
        stored, _ids = lib.indexes["peaks"].live_data()
        assert not np.isin(stored.elements, common).any()
        clip_y = songs[5][3 * SR : 13 * SR]
        clip = analyse(clip_y, SR, modes=lib.modes, window_s=10.0, hop_s=5.0)
        assert np.isin(clip.peaks[0].elements, common).any()
        # every query path leaves the same pairs out: by peaks, combined, and S4's identification
        kept = lib.peak_sets(clip.peaks[0])
        assert not np.isin(kept.elements, common).any()
        found = similar(lib, clip, by="peaks", k=2)
        assert found[0].path == "s5.wav"
        from audiolsh.search.brute import jaccard_rows

        own = np.flatnonzero(live_windows(lib, "peaks")[1] == found[0].track_id)
        best = jaccard_rows(kept, stored, np.tile(own, (len(kept), 1))).max()
        assert found[0].raw_score == pytest.approx(best, abs=1e-6)
        fused, _low = _fused_per_track(lib, clip)
        unfiltered, _ = _fused_per_track(lib, clip, clip.peaks[0])
        combined = similar(lib, clip, by="combined", k=3)
        top = sorted(fused.values(), reverse=True)[:3]
        assert [r.raw_score for r in combined] == pytest.approx(top, abs=1e-3)
        assert max(unfiltered.values()) < max(fused.values()) - 0.1  # the test can tell them apart
        match = identify(lib, clip_y, SR, method="minhash-peaks")
        assert match is not None and match.path == "s5.wav"
    data = _stored_config(tmp_path / "lib")
    assert data["peaks_common"] == [int(e) for e in common]
    with Library.open(tmp_path / "lib", readonly=True) as again:
        assert again.config.peaks_common == data["peaks_common"]
    # A library written before the key existed keeps every pair (its stored sets have them all).
    del data["peaks_common"]
    _store_config(tmp_path / "lib", data)
    with Library.open(tmp_path / "lib", readonly=True) as old:
        assert old.config.peaks_common == []


def test_a_first_batch_of_seven_tracks_keeps_every_pair(lib_dir: Path) -> None:
    """Too few tracks to tell the collection's common pairs from one track's motifs."""
    with Library.open(lib_dir, readonly=True) as lib:
        assert lib.config.peaks_common == []


def test_the_first_commit_waits_for_enough_tracks_to_learn_from(
    tmp_path: Path, music_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audiolsh.library as ingest

    sizes: list[int] = []
    real = Library.add_batch

    def spy(self: Library, batch: list) -> list[int]:  # type: ignore[type-arg]
        sizes.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(Library, "add_batch", spy)
    monkeypatch.setattr(ingest, "FIRST_BATCH", 3)
    songs = [music_dir / f"song{i}.wav" for i in range(4)]
    drones = [music_dir / f"drone{i}.flac" for i in range(3)]
    with Library.create(tmp_path / "lib", modes=("timbre",)) as lib:
        index_audio(lib, songs[:3], workers=1, commit_every=2)
        assert sizes == [3]  # the statistics come from 3 tracks, not from the first 2
        index_audio(lib, [songs[3], *drones], workers=1, commit_every=2)
        assert sizes == [3, 2, 2]  # a library that has tracks commits every 2 files


def test_the_learned_normalisation_of_single_modes_and_of_combined(
        lib_dir: Path, music_dir: Path) -> None:
    from audiolsh.features import normalisation as wccn
    from audiolsh.features.excerpts import standardize

    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(music_dir, "song2.wav", 4.0, 12.0, lib)
        X = clip.vectors["timbre"][0]
        std = lib.standardizer("timbre")
        assert std is not None and std.normalisation == "wccn-v1"
        A = wccn.load("wccn-v1").matrix("timbre", X.shape[1])  # type: ignore[union-attr]
        plain = standardize(X, std.mean, std.std, std.blocks)
        assert np.allclose(lib.prepare("timbre", X), plain @ A, atol=1e-4)
        assert not np.allclose(lib.prepare("timbre", X), plain, atol=1e-2)
        # The combined rows start from the plain standardised parts, through the joint matrix.
        rows, _ = lib.combined_rows(clip)
        R = lib.prepare("rhythm", clip.vectors["rhythm"][0], learned=False)
        J = wccn.joint_rows([R, plain], [(), (40, 280)]) @ lib.fusion.matrix  # type: ignore[union-attr]
        assert np.allclose(rows, J / np.linalg.norm(J, axis=1, keepdims=True), atol=1e-4)
        # A stored track comes back as raw features that prepare to its stored rows again.
        tid = next(t.id for t in lib.tracks() if t.path.endswith("song2.wav"))
        own = stored_clip(lib, tid, by="timbre")
        stored = lib.indexes["timbre"].rows(track_windows(lib, "timbre", tid)[0])
        def unit(Z: np.ndarray) -> np.ndarray:
            return Z / np.linalg.norm(Z, axis=1, keepdims=True)

        again = unit(lib.prepare("timbre", own.vectors["timbre"][0])) @ unit(np.asarray(stored)).T
        assert len(again) == len(stored) and np.allclose(again.max(axis=1), 1.0, atol=1e-4)


def test_without_normalisation_and_libraries_of_format_3(tmp_path: Path, music_dir: Path) -> None:
    where = tmp_path / "plain"
    with Library.create(where, modes=("rhythm", "timbre", "peaks"), normalisation="none") as lib:
        index_audio(lib, [music_dir], workers=1, commit_every=8)
        clip = _clip(music_dir, "song1.wav", 2.0, 12.0, lib)
        std = lib.standardizer("timbre")
        assert std is not None and std.matrix is None
        assert lib.info()["normalisation"] == "none"
        # Without a learned normalisation the combined mode keeps the sum of z-scored cosines.
        assert lib.fusion is not None and not lib.fusion.joint
        assert set(lib.fusion.stats) == set(COMBINED_PARTS)
        before = similar(lib, clip, by="timbre", k=3)
        assert Path(similar(lib, clip, by="combined", k=1)[0].path).name == "song1.wav"
    # A library of format 3 (no normalisation; its config in library.json beside the indexes, as
    # formats 3 to 5 kept it): it opens read-only and answers as before, and a writable open
    # moves its config into the catalogue storage.
    data = _stored_config(where)
    del data["normalisation"]
    data["format_version"] = 3
    _make_legacy(where, data)
    with Library.open(where, readonly=True) as lib:
        assert lib.config.normalisation == "none" and lib.standardizer("rhythm").matrix is None  # type: ignore[union-attr]
        assert [r.track_id for r in similar(lib, clip, by="timbre", k=3)] == [r.track_id for r in before]
    assert (where / "library.json").exists() and _stored_config(where) is None  # read-only: untouched
    with Library.open(where) as lib:
        assert [r.track_id for r in similar(lib, clip, by="timbre", k=3)] == [r.track_id for r in before]
    assert not (where / "library.json").exists()
    migrated = _stored_config(where)
    assert migrated["format_version"] == LIBRARY_VERSION and migrated["normalisation"] == "none"
    assert migrated["stats"] == data["stats"] and migrated["fusion"] == data["fusion"]
    with Library.open(where, readonly=True) as lib:
        assert [r.track_id for r in similar(lib, clip, by="timbre", k=3)] == [r.track_id for r in before]


def test_combined_also_takes_candidates_from_the_peak_sets(lib_dir: Path, music_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from audiolsh.search import Neighbors

    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(music_dir, "song3.wav", 6.0, 10.0, lib)
        expected = similar(lib, clip, by="combined", k=2)

        def nothing(data, k=10, **_kw):  # type: ignore[no-untyped-def]
            n = len(data)
            return Neighbors(np.full((n, k), -1, np.int64), np.full((n, k), np.inf, np.float32),
                             np.zeros(n, np.int64))

        # The combined vectors' index finds nothing at all: the peak sets still bring the passage.
        monkeypatch.setattr(lib.indexes["combined"], "query", nothing)
        found = similar(lib, clip, by="combined", k=2)
        assert found and found[0].track_id == expected[0].track_id
        assert Path(found[0].path).name == "song3.wav"
        assert found[0].raw_score == pytest.approx(expected[0].raw_score, abs=1e-4)


def test_a_vanishing_spread_is_not_a_z_score_divisor() -> None:
    from audiolsh.hashing import SetBatch

    # Two tracks of near-identical windows: every cosine is 1 up to rounding (a spread near
    # 1e-7); dividing by that would blow the part up, so it counts as 1.
    rng = np.random.default_rng(5)
    R = np.tile(rng.normal(size=(1, 6)), (8, 1)) + 1e-4 * rng.normal(size=(8, 6))
    T = np.tile(rng.normal(size=(1, 320)), (8, 1)) + 1e-4 * rng.normal(size=(8, 320))
    sets = SetBatch(np.arange(0, 9 * 3, 3, dtype=np.int64), np.tile(np.arange(3, dtype=np.uint64), 8))
    labels = np.repeat([0, 1], 4)
    for matrix in (None, np.eye(326)):
        fusion = Fusion.fit({"rhythm": R, "timbre": T}, sets, labels, matrix=matrix)
        assert all(sd == 1.0 for _mu, sd in fusion.stats.values()), fusion.stats


def test_two_first_writers_of_a_new_library_both_add_their_files(tmp_path: Path, music_dir: Path) -> None:
    """Two runs open a new library before either commits (`index A` and `index B` started
    together): the second's commit takes the dimensions the first stored, and both add all
    their files (it refused with 'cannot change dim of an index that holds items', leaving the
    modes it had reached with more tracks than the catalogue)."""
    files = sorted(music_dir.iterdir())
    where = tmp_path / "lib"
    with Library.create(where, modes=("fingerprint", "timbre", "embedding")) as first, \
            Library.open(where) as second:
        assert not index_audio(first, files[:4], workers=1).failed
        report = index_audio(second, files[4:], workers=1)
        assert not report.failed and len(report.added) == len(files) - 4
    with Library.open(where, readonly=True) as lib:
        info = lib.info()
        assert info["n_tracks"] == len(files)
        assert all(m["n_tracks"] == len(files) for m in info["indexes"].values()), info["indexes"]


def test_the_rows_of_a_large_segment_keep_their_tracks_and_offsets(tmp_path: Path) -> None:
    """A k-means build stores its rows cell by cell; the items committed with it (track, offset,
    key) were paired with the reordered ids, so every row of a segment of more than a couple of
    thousand rows (a batch's chroma frames past about nine minutes of audio) named another
    track's passage: chroma-vote named the wrong track for exact excerpts."""
    import soundfile as sf

    music = tmp_path / "music"
    music.mkdir()
    sr = 22050
    for seed in range(4):
        sf.write(music / f"long{seed}.wav", synth.music(duration_s=150.0, sr=sr, seed=40 + seed), sr)
    where = tmp_path / "lib"
    with Library.create(where, modes=("chroma",)) as lib:
        assert not index_audio(lib, [music], workers=1, commit_every=8).failed
    with Library.open(where, readonly=True) as lib:
        frames = lib._by_mode["chroma_frames"]
        (info,) = frames.storage.segments()
        ids = np.asarray(frames.storage.load_arrays(info.id)["ids"])
        assert len(ids) > 2000 and np.any(np.diff(ids) < 0)  # stored cell by cell
        for seed in range(4):
            y, y_sr = load(music / f"long{seed}.wav", sr=sr, offset_s=60.0, duration_s=12.0)
            m, _ = identify_clip(lib, y, y_sr, method="chroma-vote", min_confidence=0.0)
            assert m is not None and Path(m.path).name == f"long{seed}.wav", (seed, m)
            assert abs(m.offset_s - 60.0) < 1.5


@pytest.mark.parametrize("method", ["chroma-vote", "minhash-peaks"])
def test_a_seed_methods_no_match_says_why_and_min_confidence_0_shows_the_best(
        lib_dir: Path, music_dir: Path, method: str) -> None:
    """A seed method's no match came with no reason, and --min-confidence was ignored by it
    (0 did not show the best candidate, as it does for landmarks)."""
    y, sr = load(music_dir / "song3.wav", sr=SR, offset_s=15.0, duration_s=10.0)
    with Library.open(lib_dir, readonly=True) as lib:
        found, reason = identify_clip(lib, y, sr, method=method)
        assert found is not None and reason is None
        none, reason = identify_clip(lib, y, sr, method=method, threshold=1.0 + found.confidence)
        assert none is None and reason == f"best candidate below --threshold ({found.confidence:.3f} <" \
            f" {1.0 + found.confidence:g})"
        strict, _ = identify_clip(lib, y, sr, method=method, min_confidence=1.0 + found.confidence)
        assert strict is None  # --min-confidence is the seed method's threshold too
        best, reason = identify_clip(lib, y, sr, method=method, threshold=1.0, min_confidence=0.0)
        assert best == found and reason is None
