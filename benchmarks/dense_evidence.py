"""Screen a second kind of evidence for identification: the clip's band-energy envelope at the alignment.

The landmark hashes lose most of a clip in a loud room or in 0 dB noise (a hash needs two peaks
to survive).  This measures what a dense, per-track series would add if the index stored it:
for each clip's best candidate (from ``evaluate identify --min-confidence 0``), the sign of the
change of log energy in a few mel bands from one block of frames to the next (the track's side
stored as one bit per band and block), correlated with the clip's at the reported offset, as a
z-score against the same clip slid along the whole track.  Each score is stacked on the shipped
confidence (a logistic on its logit and ``log1p(z)``) fitted on one report and read on the other,
at <= 0.5 % false matches of the read report's negatives (verified overlaps left out), for the
conditions that keep time and pitch, or for every condition, each clip read at the speed, tempo
and pitch the engine found for it: recorded in the reports (``evaluate identify`` since session
22), or with ``--indexes`` every clip answered again once.

    audiolsh evaluate identify DEV --no-audfprint --no-olaf --seed 1 --min-confidence 0 \\
        --work-dir work1 --out seed1.json        # and the same with --seed 2
    .venv/bin/python benchmarks/dense_evidence.py seed1.json seed2.json --cache /tmp/dense-cache

The analysis is the fingerprint's own (8 kHz, 512-point frames every 32 ms); ``--oracle`` also
scores the right track at the clip's true offset when the best candidate is another track (could
verifying more candidates than the first rescue the clip?).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from audiolsh.audio.decode import load
from audiolsh.evaluation.calibration import load_report
from audiolsh.evaluation.identify import verified_overlaps
from audiolsh.features.envelope import agreement, band_power, block_changes, clip_changes, pack, unpack
from audiolsh.features.landmarks import FP_SR, HOP_LENGTH, magnitude_frames

KEEP_TIME_AND_PITCH = ("clean", "white10", "pink0", "mp3_32k", "phone", "reverb", "room", "codec16k",
                       "silence-head", "silence-tail")
BANDS = (8, 16)
BLOCKS = (3, 4, 6)
"""Frames pooled per block: 3 = 96 ms, 4 = 128 ms, 6 = 192 ms."""
LAG_S = 0.2
"""The alignment is searched this far each way (the reported offset is to a frame; blocks are coarser)."""
FM_SHARE = 0.005


def band_powers(y: np.ndarray) -> dict[int, np.ndarray]:
    """Mel-band power per frame, (n_frames, bands), for each band count."""
    S = magnitude_frames(np.asarray(y, np.float32))
    return {n: band_power(S, n) for n in BANDS}


def track_side(changes: np.ndarray, *, real: bool = False) -> np.ndarray:
    """What an index would keep of a track: the signs (packed a byte a block up to 8 bands), or
    (``real``) unit rows scaled as ``agreement`` reads signs."""
    n = changes.shape[1]
    if real:
        norms = np.linalg.norm(changes, axis=1, keepdims=True)
        return np.divide(changes, norms, out=np.zeros_like(changes), where=norms > 0) * math.sqrt(n)
    return unpack(pack(changes), n) if n <= 8 else np.where(changes > 0, 1.0, -1.0)


class Tracks:
    """Band power of whole tracks, cached as .npz under ``cache``."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)

    def power(self, path: str) -> dict[int, np.ndarray]:
        bands = "-".join(map(str, BANDS))
        f = self.cache / f"{Path(path).parent.name}__{Path(path).stem}__{bands}.npz"
        if f.exists():
            with np.load(f) as z:
                return {int(k): z[k] for k in z.files}
        y, _ = load(path, sr=FP_SR)
        p = band_powers(y)
        np.savez(f, **{str(k): v for k, v in p.items()})  # type: ignore[arg-type]
        return p

    def warm(self, path: str) -> None:
        """Cache a track's band power (in a worker, nothing sent back)."""
        self.power(path)


Job = tuple[str, str, float, float, float, float, str]
"""clip, track, offset in the track (s), speed, tempo, pitch, cache folder"""


def score(job: Job) -> dict[str, float]:
    """z-score of each form for a clip against ``track`` at ``offset_s``, its change undone."""
    clip, track, offset_s, speed, tempo, pitch, cache = job
    y, _ = load(clip, sr=FP_SR)
    S = magnitude_frames(np.asarray(y, np.float32))
    t = Tracks(Path(cache)).power(track)
    out = {}
    for k in BLOCKS:
        lag = max(1, round(LAG_S * FP_SR / HOP_LENGTH / k))
        for n in BANDS:
            changes, at = clip_changes(S, offset_frames=offset_s * FP_SR / HOP_LENGTH, n_bands=n, block=k,
                                       time_scale=speed * tempo, freq_scale=speed * pitch)
            whole = block_changes(t[n], block=k)
            forms = {f"bit{n}x{k}": track_side(whole)}
            if n == 16 and k == 3:
                forms["real16x3"] = track_side(whole, real=True)
            for name, side in forms.items():
                out[name] = agreement(changes, side, at_block=at, lag_blocks=lag)[1]
    return out


def transforms(report_path: Path, index: Path) -> list[list[Any] | None]:
    """Each clip's best candidate answered again by the index (track, offset, speed, tempo, pitch,
    confidence), cached beside the report: for reports written before they kept the transform."""
    cached = report_path.with_suffix(".transforms.json")
    if cached.exists():
        return json.loads(cached.read_text())  # type: ignore[no-any-return]
    import soundfile as sf

    from audiolsh.index.fingerprint import FingerprintIndex

    rep = load_report(report_path)
    out: list[list[Any] | None] = []
    with FingerprintIndex.open(index, readonly=True) as idx:
        for c in rep.clips:
            y, sr = sf.read(c.path, dtype="float32")
            m = idx.assess(y, sr, min_confidence=0.0).best
            out.append(None if m is None else [m.path, m.offset_s, m.speed, m.tempo, m.pitch, m.confidence])
    cached.write_text(json.dumps(out))
    return out


def rows(report_path: Path, cache: Path, workers: int, oracle: bool, index: Path | None
         ) -> list[dict[str, Any]]:
    rep = load_report(report_path)
    answers = rep.answers["audiolsh"]
    moved = transforms(report_path, index) if index else None
    recorded = rep.systems.get("audiolsh", {}).get("transforms")  # reports since session 22 keep them
    every = moved is not None or recorded is not None
    overlaps = verified_overlaps(rep.clips, rep.overlap_ncc.get("audiolsh") or [None] * len(rep.clips))
    out, jobs = [], []
    for i, (c, a) in enumerate(zip(rep.clips, answers)):
        if not every and c.condition not in KEEP_TIME_AND_PITCH:
            continue
        if a.track is None or a.offset_s is None:  # counts in the denominators, never right or false
            out.append({"answered": False, "positive": c.positive, "right": False,
                        "negative": not c.positive, "condition": c.condition, "length_s": c.length_s,
                        "oracle": False})
            continue
        change = (1.0, 1.0, 1.0)
        if moved is not None:
            m = moved[i]
            if m is None or m[0] != a.track or abs(m[1] - a.offset_s) > 1e-6:
                raise SystemExit(f"{report_path}: clip {c.clip_id} is answered otherwise than in the report")
            change = (m[2], m[3], m[4])
        elif recorded is not None:
            change = (recorded[i][0], recorded[i][1], recorded[i][2])
        overlap = bool(overlaps[i])
        p = min(max(a.score, 1e-6), 1 - 1e-6)
        right = c.positive and a.track == c.source
        out.append({"answered": True, "positive": c.positive, "right": right,
                    "negative": not c.positive and not overlap,
                    "condition": c.condition, "length_s": c.length_s, "logit": math.log(p / (1 - p)),
                    "confidence": a.score,
                    "oracle": oracle and c.positive and not right and c.condition in KEEP_TIME_AND_PITCH})
        jobs.append((c.path, a.track, float(a.offset_s), *change, str(cache)))
        if out[-1]["oracle"]:
            jobs.append((c.path, c.source, float(c.offset_s), 1.0, 1.0, 1.0, str(cache)))
    tracks = sorted({j[1] for j in jobs})
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(Tracks(cache).warm, tracks))
        scores = iter(list(ex.map(score, jobs, chunksize=8)))
    for r in out:
        if not r["answered"]:
            continue
        r["z"] = next(scores)
        if r["oracle"]:
            r["z_right"] = next(scores)
    return out


def _stacked(fit: Sequence[dict[str, Any]], read: Sequence[dict[str, Any]], form: str | None) -> np.ndarray:
    """Each read row's probability of being right (0 with no candidate)."""
    answered = np.array([r["answered"] for r in read])
    p = np.zeros(len(read))
    if form is None:
        p[answered] = [r["confidence"] for r in read if r["answered"]]
        return p

    def x(rs: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.array([[r["logit"], math.log1p(max(min(r["z"][form], 40.0), 0.0))]
                         for r in rs if r["answered"]])

    model = LogisticRegression(C=100.0, max_iter=5000).fit(x(fit), [r["right"] for r in fit if r["answered"]])
    p[answered] = model.predict_proba(x(read))[:, 1]
    return p


CELLS = (("room", 3), ("room", 5), ("room", 10), ("pink0", 3), ("pink0", 5), ("reverb", 3), ("pitch+1", 3),
         ("stretch-8", 3))


def at_budget(read: Sequence[dict[str, Any]], p: np.ndarray) -> dict[str, float]:
    """Right answers at the highest threshold that passes at most FM_SHARE of the negatives."""
    neg = np.array([r["negative"] for r in read])
    right = np.array([r["right"] for r in read])
    allowed = math.floor(FM_SHARE * neg.sum())
    top = np.sort(p[neg])[::-1]
    ok = right & (p > (top[allowed] if allowed < len(top) else 0.0))
    n_pos = sum(r["positive"] for r in read)
    out = {"all": float(ok.sum() / n_pos)}
    for cond, length in CELLS:
        sel = np.array([r["positive"] and r["condition"] == cond and r["length_s"] == length for r in read])
        out[f"{cond} {length} s"] = float(ok[sel].mean()) if sel.any() else math.nan
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", type=Path, nargs=2, help="two evaluate identify --min-confidence 0 reports")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "audiolsh-bench" / "dense")
    ap.add_argument("-j", "--workers", type=int, default=2)
    ap.add_argument("--oracle", action="store_true",
                    help="also score the right track where the best is wrong")
    ap.add_argument("--out", type=Path, default=None, help="write the per-clip rows as JSON")
    ap.add_argument("--indexes", type=Path, nargs=2, default=None, metavar="INDEX",
                    help="the reports' indexes (work-dir/audiolsh/index): every condition is scored, each"
                         " clip at the speed, tempo and pitch the engine finds (answered again once)")
    args = ap.parse_args()
    data = [rows(r, args.cache, args.workers, args.oracle, args.indexes[i] if args.indexes else None)
            for i, r in enumerate(args.reports)]
    if args.out:
        args.out.write_text(json.dumps(data))
    names = [None, *next(r["z"] for r in data[0] if r["answered"])]
    cols = ["all", *(f"{c} {n} s" for c, n in CELLS)]
    print(f"fit on one report, read on the other, at <= {FM_SHARE:.1%} false matches of its negatives"
          f" ({sum(r['negative'] for r in data[1])} / {sum(r['negative'] for r in data[0])}),"
          f" {sum(r['positive'] for r in data[1])} / {sum(r['positive'] for r in data[0])} positives")
    print("| evidence | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for form in names:
        a = at_budget(data[1], _stacked(data[0], data[1], form))
        b = at_budget(data[0], _stacked(data[1], data[0], form))
        label = "shipped confidence" if form is None else f"+ {form}"
        print(f"| {label} | " + " | ".join(f"{a[c]:.3f} / {b[c]:.3f}" for c in cols) + " |")
    for d, rep in zip(data, args.reports):
        neg = np.array([r["z"]["bit16x3"] for r in d if r["negative"] and r["answered"]])
        room = np.array([r["z"]["bit16x3"] for r in d if r["right"] and r["condition"] == "room"
                         and r["length_s"] == 3])
        q = np.quantile(neg, [0.5, 0.99, 1.0]).round(2).tolist()
        print(f"{rep}: bit16x3 z, negatives q50/q99/max {q},"
              f" right 3-s room median {np.median(room):.2f}")
        if args.oracle:
            pairs = [(r["z"]["bit16x3"], r["z_right"]["bit16x3"]) for r in d if r["oracle"]
                     and r["condition"] == "room" and r["length_s"] == 3]
            higher = sum(b > max(a, float(np.quantile(neg, 0.99))) for a, b in pairs)
            print(f"  3-s room clips whose best is another track: {len(pairs)}; the right track at the"
                  f" true offset scores above both that track and the negatives' q99: {higher}")


if __name__ == "__main__":
    main()
