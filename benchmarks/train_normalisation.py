#!/usr/bin/env python
"""Learn the within-track normalisation shipped as ``audiolsh/features/data/<name>.npz``.

Every 10-s window (hop 5 s) of every track of each corpus folder gives rhythm and timbre
vectors; each folder is standardised with its own statistics, as a library standardises its
collection; :func:`audiolsh.features.normalisation.fit_within_track` then learns one matrix per
mode from all windows, a track being a class, and one ("combined") for the rhythm and timbre rows
side by side (:func:`audiolsh.features.normalisation.joint_rows`). The corpora must share no
track with the sets the evaluation reports on (dev, and the held-out set used to choose the shrinkage):

    ../shared/data/fetch-corpus --set train --packages hedgewars-data,supertux-data,\
freedroidrpg-data,neverball-data,frozen-bubble-data,pingus-data,openclonk-data
    ../shared/data/fetch-corpus --set train2 --packages boswars-data,blobwars-data,warmux-data,\
nexuiz-music,marsshooter-data,widelands-data,naev-data,ri-li-data,lugaru-data,7kaa-data,\
openarena-data,trigger-rally-data
    python benchmarks/train_normalisation.py ~/.cache/audiolsh-corpus/train \
        ~/.cache/audiolsh-corpus/train2 --out src/audiolsh/features/data/wccn-v1.npz
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audiolsh.audio import find_audio, load
from audiolsh.errors import AudiolshError
from audiolsh.features.excerpts import BLOCKS, excerpt_features, fit_standardizer, standardize
from audiolsh.features.normalisation import SHRINKAGE, fit_within_track, joint_rows, save

SR = 22050
MODES = ("rhythm", "timbre")


def extract(job: tuple[str, float, float]) -> tuple[str, dict[str, np.ndarray] | None, str]:
    path, window_s, hop_s = job
    try:
        y, sr = load(path, sr=SR)
    except AudiolshError as exc:
        return path, None, str(exc)
    if y.size < 2 * window_s * sr:
        return path, None, "shorter than two windows"
    feats = excerpt_features(y, sr, window_s=window_s, hop_s=hop_s, modes=MODES)
    return path, {m: np.asarray(feats[m].X) for m in MODES}, ""


def packages(folder: Path) -> list[str]:
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        return []
    with manifest.open() as f:
        return sorted({row["package"] for row in csv.DictReader(f) if row.get("package")})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpora", nargs="+", type=Path, help="corpus folders (each standardised on its own)")
    ap.add_argument("--out", required=True, type=Path, help="npz to write")
    ap.add_argument("--name", default=None, help="normalisation name (default: the file's stem)")
    ap.add_argument("--shrinkage", type=float, default=SHRINKAGE)
    ap.add_argument("--window-s", type=float, default=10.0)
    ap.add_argument("--hop-s", type=float, default=5.0)
    ap.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)

    blocks: dict[str, list[np.ndarray]] = {m: [] for m in (*MODES, "combined")}
    labels: list[np.ndarray] = []
    n_tracks = 0
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    for folder in a.corpora:
        paths = [str(p) for p in find_audio([folder])]
        if not paths:
            print(f"{folder}: no audio files", file=sys.stderr)
            return 2
        per: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
        with Progress(*cols) as bar, ProcessPoolExecutor(max_workers=a.workers) as pool:
            task = bar.add_task(folder.name, total=len(paths))
            for path, feats, problem in pool.map(extract, [(p, a.window_s, a.hop_s) for p in paths]):
                bar.advance(task)
                if feats is None:
                    print(f"{path}: skipped, {problem}", file=sys.stderr)
                    continue
                for m in MODES:
                    per[m].append(feats[m])
                labels.append(np.full(len(feats[MODES[0]]), n_tracks))
                n_tracks += 1
        for m in MODES:
            X = np.concatenate(per[m])
            mean, std = fit_standardizer(X)
            blocks[m].append(standardize(X, mean, std, BLOCKS.get(m, ())))
        # The combined mode's rows: rhythm and timbre side by side, every block at unit length.
        blocks["combined"].append(
            joint_rows([blocks[m][-1] for m in MODES], [BLOCKS.get(m, ()) for m in MODES]))
    lab = np.concatenate(labels)
    matrices = {m: fit_within_track(np.concatenate(blocks[m]), lab, shrinkage=a.shrinkage) for m in blocks}
    meta = {
        "corpora": [{"folder": f.name, "packages": packages(f)} for f in a.corpora],
        "n_tracks": n_tracks, "n_windows": len(lab), "shrinkage": a.shrinkage,
        "window_s": a.window_s, "hop_s": a.hop_s,
        "dims": {m: int(A.shape[0]) for m, A in matrices.items()},
        "created": datetime.date.today().isoformat(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save(str(a.out), a.name or a.out.stem, matrices, meta)
    print(f"{a.out}: {n_tracks} tracks, {len(lab)} windows, matrices {list(matrices)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
