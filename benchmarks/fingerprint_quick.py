"""Quick self-check of the landmark fingerprinter on the dev corpus: accuracy, false matches, speed.

    .venv/bin/python benchmarks/fingerprint_quick.py accuracy --n-clips 20
    .venv/bin/python benchmarks/fingerprint_quick.py ingest /tmp/fpwav/*.wav

``accuracy`` indexes all dev tracks but every ``--holdout``-th one (decoded at the fingerprint
rate and cached as .npy under ``--cache``), then identifies clips of 3/5/10 s cut at random
offsets from the original files (decoded at 22.05 kHz), clean and distorted, and clips of the
held-out tracks (false matches).  ``ingest`` times decoding + landmarks + commit of WAV files.
This is a smoke check for the engine's author, not the evaluation protocol.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soxr

from audiolsh.audio import decode
from audiolsh.features.landmarks import FP_SR, landmarks
from audiolsh.index.fingerprint import FingerprintIndex

CORPUS = Path(os.path.expanduser("~/.cache/audiolsh-corpus/dev"))
SR = 22050


def load_tracks(cache: Path) -> list[tuple[str, np.ndarray]]:
    rows = list(csv.DictReader(open(CORPUS / "manifest.csv")))
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i, r in enumerate(rows):
        f = cache / f"{i:03d}.npy"
        if not f.exists():
            y, _ = decode.load(CORPUS / r["path"], sr=FP_SR)
            np.save(f, y)
        out.append((r["path"], np.load(f)))
    return out


def add_noise(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    p_sig = float(np.mean(y.astype(np.float64) ** 2)) + 1e-12
    p_noise = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
    return (y + noise * np.sqrt(p_sig / p_noise / 10 ** (snr_db / 10))).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n=n).astype(np.float32)


def mp3(y: np.ndarray, sr: int, kbps: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        import soundfile as sf

        src, enc = Path(d) / "a.wav", Path(d) / "a.mp3"
        sf.write(src, y, sr)
        cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-b:a", f"{kbps}k", str(enc)]
        subprocess.run(cmd, check=True)
        z, _ = decode.load(enc, sr=sr)
    return z


def distort(name: str, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Returns the distorted clip and its sample rate."""
    if name == "clean":
        return y, SR
    if name == "white10":
        return add_noise(y, rng.standard_normal(len(y)).astype(np.float32), 10), SR
    if name == "pink0":
        return add_noise(y, pink(len(y), rng), 0), SR
    if name == "mp3_32k":
        return mp3(y, SR, 32), SR
    if name == "phone":
        from scipy import signal

        z = np.asarray(soxr.resample(y, SR, 8000), np.float32)
        sos = signal.butter(6, [300, 3400], btype="bandpass", fs=8000, output="sos")
        z = signal.sosfilt(sos, z).astype(np.float32)
        return add_noise(z, rng.standard_normal(len(z)).astype(np.float32), 15), 8000
    kind, _, amount = name.partition("+") if "+" in name else name.partition("-")
    sign = 1.0 if "+" in name else -1.0
    if kind in ("speed", "tempo", "pitch") and amount:
        # speedP: played P % faster (pitch and tempo together); tempoP: stretched, pitch kept;
        # pitchN: N semitones up, tempo kept.
        x = sign * float(amount)
        if kind == "speed":
            return np.asarray(soxr.resample(y, SR * (1 + x / 100), SR), np.float32), SR
        import librosa

        if kind == "tempo":
            return librosa.effects.time_stretch(y, rate=1 + x / 100).astype(np.float32), SR
        return librosa.effects.pitch_shift(y, sr=SR, n_steps=x).astype(np.float32), SR
    if name == "reverb":
        t = np.arange(int(0.6 * SR)) / SR
        ir = rng.standard_normal(len(t)) * np.exp(-t / (0.5 / 6.9))
        ir[0] = 4.0
        z = np.convolve(y, ir)[: len(y)]
        return (z / np.max(np.abs(z)) * 0.8).astype(np.float32), SR
    raise SystemExit(f"unknown condition {name}")


def accuracy(args: argparse.Namespace) -> None:
    rows = list(csv.DictReader(open(CORPUS / "manifest.csv")))
    tracks = load_tracks(Path(args.cache))
    indexed = [i for i in range(len(tracks)) if i % args.holdout != args.holdout - 1]
    # Held-out tracks that share audio with indexed ones are true matches, not false ones.
    held = [i for i in range(len(tracks)) if i % args.holdout == args.holdout - 1
            and not any(x in rows[i]["path"] for x in args.exclude.split(","))]
    params = dict(kv.split("=") for kv in args.param)
    params = {k: (float(v) if "." in v else int(v)) for k, v in params.items()}
    index = FingerprintIndex.create(None, **params)
    t0 = time.perf_counter()
    with index.session() as s:
        for i in indexed:
            path, y = tracks[i]
            lm = landmarks(y, FP_SR, density=index.params.density, fanout=index.params.fanout)
            s.add_track(path, content_hash=f"dev{i}", duration_s=len(y) / FP_SR, landmarks=lm)
    info = index.info()
    elapsed = time.perf_counter() - t0
    print(f"indexed {len(indexed)} tracks ({info['duration_s'] / 3600:.2f} h) in {elapsed:.1f} s;"
          f" {info['hashes_per_s']:.1f} hashes/s, {info['bytes_per_hour'] / 1e6:.2f} MB/h")
    tid_of = {t.content_hash: t.id for t in index.tracks()}
    rng = np.random.default_rng(args.seed)
    lengths = [float(x) for x in args.lengths.split(",")]
    conditions = [c for c in args.conditions.split(",") if c]
    print(f"{'condition':>10} {'len':>4} {'top1':>6} {'offset':>6} {'ms p50':>7}")
    for length in lengths:
        picks = rng.choice(indexed, size=args.n_clips if conditions else 0)
        starts = [rng.uniform(0, max(0.0, len(tracks[i][1]) / FP_SR - length - 1)) for i in picks]
        clips = [decode.load(CORPUS / rows[i]["path"], sr=SR, offset_s=o, duration_s=length + 0.5)[0]
                 for i, o in zip(picks, starts)]
        for cond in conditions:
            ok = off_ok = 0
            times = []
            for i, o, c in zip(picks, starts, clips):
                y, sr = distort(cond, c, rng)
                y = y[: int(length * sr)]
                t = time.perf_counter()
                m = index.identify(y, sr)
                times.append(time.perf_counter() - t)
                if m is not None and m.track_id == tid_of[f"dev{i}"]:
                    ok += 1
                    off_ok += abs(m.offset_s - o) <= 0.5
                elif args.verbose:
                    print("  miss", cond, length, i, None if m is None else (m.track_id, m.confidence))
            print(f"{cond:>10} {length:4.0f} {ok / len(picks):6.2f} {off_ok / len(picks):6.2f}"
                  f" {1000 * np.median(times):7.1f}")
        # Clips of held-out tracks: any match is false.
        false = 0
        confs = []
        n_false_clips = args.n_false
        for _ in range(n_false_clips):
            i = int(rng.choice(held))
            o = rng.uniform(0, max(0.0, len(tracks[i][1]) / FP_SR - length - 1))
            y = tracks[i][1][int(o * FP_SR): int((o + length) * FP_SR)]
            m = index.identify(y, FP_SR, threshold=0.0)
            confs.append(-m.log10_p if m is not None else 0.0)
            false += m is not None and m.confidence >= index.params.threshold
        confs = np.sort(confs)
        print(f"{'unindexed':>10} {length:4.0f} false={false}/{n_false_clips}"
              f"  -log10 p_adj quantiles 50/90/99: {np.quantile(confs, [0.5, 0.9, 0.99]).round(2)}"
              f" max {confs[-1]:.2f}")


def ingest(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fpbench-"))
    try:
        index = FingerprintIndex.create(tmp / "idx")
        total = 0.0
        t0 = time.perf_counter()
        t_dec = t_lm = 0.0
        with index.session() as s:
            for p in args.files:
                t = time.perf_counter()
                y, sr = decode.load(p, sr=None)
                t_dec += time.perf_counter() - t
                t = time.perf_counter()
                lm = landmarks(y, sr, density=index.params.density, fanout=index.params.fanout)
                t_lm += time.perf_counter() - t
                total += len(y) / sr
                s.add_track(p, content_hash=p, duration_s=len(y) / sr, landmarks=lm)
        elapsed = time.perf_counter() - t0
        info = index.info()
        disk = sum(f.stat().st_size for f in (tmp / "idx").rglob("*") if f.is_file())
        print(f"{len(args.files)} files, {total / 3600:.2f} h audio: {elapsed:.2f} s total ="
              f" {total / elapsed:.0f}x real time (decode {t_dec:.2f} s, landmarks {t_lm:.2f} s,"
              f" commit {elapsed - t_dec - t_lm:.2f} s)")
        print(f"index arrays {info['index_bytes'] / 1e6:.2f} MB = {info['bytes_per_hour'] / 1e6:.2f} MB/h;"
              f" on disk {disk / 1e6:.2f} MB = {disk / 1e6 / (total / 3600):.2f} MB/h;"
              f" {info['hashes_per_s']:.1f} hashes/s")
        index.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--cache", default="/tmp/fpcache")
    a.add_argument("--holdout", type=int, default=6, help="every n-th track is left out of the index")
    a.add_argument("--n-clips", type=int, default=20)
    a.add_argument("--n-false", type=int, default=100)
    a.add_argument("--lengths", default="3,5,10")
    a.add_argument("--conditions", default="clean,white10,pink0,mp3_32k,phone,speed+3,tempo+4,reverb")
    a.add_argument("--exclude", default="menu_enhanced,track3_enhanced,track15.,track22.,track8.",
                   help="held-out tracks (substrings) that reuse audio of indexed tracks")
    a.add_argument("--param", action="append", default=[], help="index parameter NAME=VALUE")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--verbose", action="store_true")
    g = sub.add_parser("ingest")
    g.add_argument("files", nargs="+")
    args = ap.parse_args()
    accuracy(args) if args.cmd == "accuracy" else ingest(args)


if __name__ == "__main__":
    main()
