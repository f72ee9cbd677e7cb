"""The loud room, part by part: what the talkers and the reverberation each cost a 3-s clip, and
what an exhaustive dense comparison would name.

    .venv/bin/python benchmarks/room_parts.py ~/.cache/audiolsh-corpus/dev --seed 1 --clips 40 \\
        --work /tmp/room-parts --out room-parts.json

Half the corpus's tracks (seeded) are indexed (fingerprints only); ``--clips`` excerpts of
indexed tracks are the positives and as many of the other tracks the negatives. Each excerpt is
heard under ``evaluate identify``'s loud room (reverberation RT60 0.6 s, six talkers at 5 dB) and
under its parts: the room without the talkers, the talkers without the room (neither
reverberated), the room with the talkers 5 dB quieter, and clean; with ``--talkers DIR``
(recorded speech, a subfolder a speaker) also the room with those talkers in place of the
synthetic ones, and those talkers alone. Every clip is answered by:

- the engine (``identify_clip`` with ``min_confidence=0``: its best candidate and confidence);
- an exhaustive oracle per ``--oracles`` code: the clip's mel-band code (47 Hz-3.6 kHz, the
  fingerprint's 32-ms frames pooled into blocks; log energy, or the sign of its change as the
  stored envelope keeps it; each band's mean over the clip removed) correlated with every window
  of every indexed track; its answer is the best window. The 48-band code keeps 1.5 kB a second
  of audio and every oracle scans all of it for each clip, so they bound what dense spectral
  evidence could name, not what an index could afford.

A positive is named when the answer is its track within 0.5 s of its offset and its score
exceeds every negative's of the same condition (no false match there); "best" counts the
positives whose best answer is right, whatever the score.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import scipy.signal

from audiolsh.audio import find_audio
from audiolsh.audio.decode import info, load
from audiolsh.errors import AudioError
from audiolsh.evaluation import distortions as d
from audiolsh.features.landmarks import FP_SR, FRAME_S, HOP_LENGTH, N_FFT, _resample, magnitude_frames
from audiolsh.library import Library
from audiolsh.query.identify import identify_clip

SR = 22050
LENGTH_S = 3.0


Speakers = list[list[np.ndarray]]
"""Recorded speech at ``SR``: each speaker's recordings."""


def parts(y: np.ndarray, seed: int, speakers: Speakers | None = None) -> dict[str, np.ndarray]:
    """The clip under the loud room and under each of its parts, built as ``loud_room`` builds
    the room (its seeds and steps; the tests hold the two equal). With ``speakers``, also the
    same room with recorded talkers in place of the synthetic ones, and those talkers alone."""
    seeds = np.random.SeedSequence(seed).generate_state(3)
    wet = d.reverb(y, SR, seed=int(seeds[0]), rt60_s=0.6)

    def in_room(talk: np.ndarray) -> np.ndarray:  # the talkers further away than the music
        return d.reverb(talk, SR, seed=int(seeds[2]), rt60_s=0.6, drr_db=-3.0)

    talk = d.babble(y.size, SR, seed=int(seeds[1]), n_voices=6).astype(np.float32)
    talk_wet = in_room(talk)
    out = {"clean": y, "room": d._mix_at_snr(wet, talk_wet, 5.0), "room, no talkers": wet,
           "talkers, no room": d._mix_at_snr(y, talk, 5.0),
           "room, talkers 5 dB quieter": d._mix_at_snr(wet, talk_wet, 10.0)}
    if speakers:
        said = recorded_babble(y.size, int(seeds[1]), speakers)
        out["room, recorded talkers"] = d._mix_at_snr(wet, in_room(said), 5.0)
        out["recorded talkers, no room"] = d._mix_at_snr(y, said, 5.0)
    return out


def recorded_babble(n: int, seed: int, speakers: Speakers, n_voices: int = 6) -> np.ndarray:
    """``n`` samples of ``n_voices`` talkers, as ``babble`` mixes its voices (each at unit RMS
    times a uniform 0.5-1, the mix at unit RMS): each talker a different speaker drawn at random
    (the same one again only when there are fewer speakers than talkers) saying its recordings
    one after another in a random order, from a random point of the first (each recording with
    the pause ``load_speakers`` put after it)."""
    rng = np.random.default_rng(seed)
    mix = np.zeros(n)
    # six talkers are six people where there are as many speakers
    who = rng.choice(len(speakers), size=n_voices, replace=len(speakers) < n_voices)
    for k_speaker in who:
        said = speakers[int(k_speaker)]
        chunks, total = [], 0
        skip = int(rng.integers(SR))  # start anywhere in the first recording's second
        for k in rng.permutation(len(said)):
            chunks.append(said[k])
            total += said[k].size
            if total >= n + skip:
                break
        v = np.concatenate(chunks)
        v = np.resize(v, n + skip)[skip:].astype(np.float64)  # too few recordings: they repeat
        mix += v / (math.sqrt(float(np.mean(v**2))) or 1.0) * rng.uniform(0.5, 1.0)
    return (mix / (math.sqrt(float(np.mean(mix**2))) or 1.0)).astype(np.float32)


def load_speakers(root: str, per_speaker: int = 300, seed: int = 0) -> Speakers:
    """Each folder under ``root`` holding audio is a speaker; up to ``per_speaker`` of its
    recordings (seeded), at ``SR``, each trimmed of its silent ends (40 dB under its peak) and
    followed by a pause of 0.1-0.4 s."""
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    speakers: Speakers = []
    skipped: list[str] = []
    for folder in folders:
        paths = sorted(find_audio([str(folder)]))
        if not paths:
            continue
        keep = sorted(rng.permutation(len(paths))[:per_speaker])
        said = []
        for i in keep:
            try:
                z = load(paths[i], sr=SR)[0]
            except AudioError as e:  # Asterisk ships a few silent placeholders
                skipped.append(str(e))
                continue
            z = librosa.effects.trim(z, top_db=40)[0]
            if z.size >= SR // 4:
                said.append(np.concatenate([z, np.zeros(int(rng.uniform(0.1, 0.4) * SR), np.float32)]))
        if said:
            speakers.append(said)
    if not speakers:
        raise SystemExit(f"--talkers {root}: no folder of recordings under it (one folder a speaker)")
    if skipped:
        print(f"--talkers: {len(skipped)} recordings skipped, the first: {skipped[0]}", file=sys.stderr)
    print(f"--talkers: {len(speakers)} speakers, {sum(map(len, speakers))} recordings", file=sys.stderr)
    return speakers


@dataclass(frozen=True)
class Code:
    """A dense representation: mel bands, frames pooled a block, and what each cell keeps."""

    bands: int
    pool: int  # 32-ms frames a block
    kind: str  # "log": log band energy; "sign": whether it rose since the block before (as the envelope)

    @classmethod
    def parse(cls, text: str) -> Code:
        bands, pool, kind = text.split(":")
        if kind not in ("log", "sign"):
            raise SystemExit(f"--oracles: a code is BANDS:POOL:log|sign, got {text!r}")
        return cls(int(bands), int(pool), kind)

    @property
    def label(self) -> str:
        return f"{self.bands} bands x {self.pool * FRAME_S * 1000:.0f} ms {self.kind}"

    def cells(self, power: np.ndarray) -> np.ndarray:
        """(blocks, bands) of power frames (n, N_FFT // 2 + 1); a partial last block is dropped."""
        E = power @ _mel(self.bands)
        n = len(E) // self.pool * self.pool
        L = np.log(E[:n].reshape(-1, self.pool, self.bands).mean(1) + 1e-6).astype(np.float64)
        if self.kind == "log":
            return L
        return np.where(np.diff(L, axis=0, prepend=L[:1]) > 0, 1.0, -1.0)


@functools.cache
def _mel(bands: int) -> np.ndarray:
    """(N_FFT // 2 + 1, bands) float32 mel filters over the fingerprint's band."""
    return librosa.filters.mel(sr=FP_SR, n_fft=N_FFT, n_mels=bands, fmin=47, fmax=3600).T.astype(np.float32)


class Oracle:
    """Every window of every indexed track's ``code``, correlated with a clip's (each band's mean
    over the window removed): an exhaustive scan, no index."""

    def __init__(self, code: Code, powers: list[np.ndarray]) -> None:
        self.code = code
        cells = [code.cells(p) for p in powers]
        self.starts = np.cumsum([0] + [len(c) for c in cells])
        X = np.concatenate(cells)
        self.X = X - X.mean(0)  # centred: the windows' sums below stay exact in float64
        self.owner = np.repeat(np.arange(len(cells)), np.diff(self.starts))
        zero = np.zeros((1, code.bands))
        self.s1 = np.cumsum(np.vstack([zero, self.X]), axis=0)
        self.s2 = np.cumsum(np.vstack([zero, self.X**2]), axis=0)

    def answer(self, y: np.ndarray) -> tuple[int, float, float, float]:
        """(track, offset s, correlation, z) of the best window, the clip analysed from every half
        frame of a block (a clip starts anywhere on the track's grid); z is the best correlation
        against the clip's correlations with every window (in noise every correlation is lower)."""
        y8 = _resample(y, SR)
        best_of: tuple[int, float, float, float] | None = None
        for shift in range(2 * self.code.pool):
            start = shift * HOP_LENGTH // 2
            Q = self.code.cells(magnitude_frames(y8[start:]) ** 2)
            n = len(Q)
            Q = Q - Q.mean(0)
            num = sum(scipy.signal.fftconvolve(self.X[:, b], Q[::-1, b], mode="valid")
                      for b in range(Q.shape[1]))
            var = (self.s2[n:] - self.s2[:-n]).sum(1) - ((self.s1[n:] - self.s1[:-n]) ** 2).sum(1) / n
            r = num / (math.sqrt(float((Q**2).sum())) * np.sqrt(np.maximum(var, 1e-9)))
            o = np.arange(len(r))
            # a window inside one track; a constant one (digital silence) is no evidence
            valid = (self.owner[o] == self.owner[o + n - 1]) & (var >= 1e-3 * n * Q.shape[1])
            r = np.where(valid, r, -np.inf)
            best = int(np.argmax(r))
            if best_of is None or r[best] > best_of[2]:
                k = int(self.owner[best])
                offset_s = (best - int(self.starts[k])) * self.code.pool * FRAME_S - start / FP_SR
                z = (float(r[best]) - float(r[valid].mean())) / float(r[valid].std())
                best_of = (k, offset_s, float(r[best]), z)
        assert best_of is not None
        return best_of


def draw(root: str, seed: int, n: int) -> tuple[list[str], list[dict[str, Any]]]:
    paths = sorted(str(Path(p).resolve()) for p in find_audio([root]))
    rng = np.random.default_rng(seed)
    rng.shuffle(paths)
    half = (len(paths) + 1) // 2
    indexed, other = paths[:half], paths[half:]
    clips = []
    for positive, pool in ((True, indexed), (False, other)):
        for i in range(n):
            p = pool[i % len(pool)]
            dur = info(p).duration_s
            clips.append({"track": p, "positive": positive, "seed": int(rng.integers(1 << 30)),
                          "offset": float(rng.uniform(0.5, max(0.5, dur - LENGTH_S - 1)))})
    return indexed, clips


DEFAULT_CODES = "48:1:log,16:3:log,8:3:log,8:3:sign"


Answer = Callable[[np.ndarray], tuple[int, float, float, float]]
"""A system's best window for a clip at ``SR``: (indexed track's position, offset s, score, z)."""
Extra = Callable[[argparse.Namespace, list[str]], dict[str, Answer]]
"""More systems to answer the clips, made of the run's options and the indexed tracks' paths."""


def answer_all(a: argparse.Namespace, extra: Extra | None = None) -> dict[str, Any]:
    """Every clip under every condition answered by the engine, the ``--oracles`` and the systems
    ``extra`` makes of the indexed tracks' paths."""
    codes = [Code.parse(t) for t in a.oracles.split(",") if t]
    indexed, clips = draw(a.corpus, a.seed, a.clips)
    work = Path(a.work or tempfile.mkdtemp(prefix="room-parts-"))
    work.mkdir(parents=True, exist_ok=True)
    index = work / f"index-{a.seed}"
    if not index.exists():
        listed = work / f"indexed-{a.seed}.txt"
        listed.write_text("\n".join(indexed) + "\n")
        subprocess.run([sys.executable, "-m", "audiolsh", "index", f"@{listed}", "--index", str(index),
                        "--modes", "fingerprint"], check=True)
    library = Library.open(str(index), readonly=True)
    by_path = {str(Path(t.path).resolve()): t.id for t in library.tracks()}
    powers = [magnitude_frames(load(p, sr=FP_SR)[0]) ** 2 for p in indexed]
    systems: dict[str, Answer] = {code.label: Oracle(code, powers).answer for code in codes}
    del powers
    systems.update(extra(a, indexed) if extra else {})
    speakers = load_speakers(a.talkers) if a.talkers else None
    rows = []
    for i, c in enumerate(clips):
        y, _ = load(c["track"], sr=SR, offset_s=c["offset"], duration_s=LENGTH_S)
        for cond, z in parts(y, c["seed"], speakers).items():
            try:
                m, _ = identify_clip(library, z, SR, min_confidence=0.0)
            except AudioError:  # no landmark at all: no answer
                m = None
            right = (m is not None and m.track_id == by_path.get(c["track"])
                     and abs(m.offset_s - c["offset"]) < 0.5)
            row = {**c, "cond": cond, "engine": {
                "right": right,
                "score": m.confidence if m else 0.0, "named": bool(m and m.matched)}}
            for name, answer in systems.items():
                k, off, r, zr = answer(z)
                row[name] = {"right": indexed[k] == c["track"] and abs(off - c["offset"]) < 0.5,
                             "score": r, "z": zr}
            rows.append(row)
        print(f"{i + 1}/{len(clips)}", flush=True)
    return {"seed": a.seed, "clips": a.clips, "systems": ["engine", *systems], "rows": rows}


def table(report: dict[str, Any]) -> str:
    """Per condition: each system's right best answers, and those scored above every negative of
    the condition (the oracles by their score, a correlation or a similarity, and by its z); the
    engine's named at its default too."""
    systems = report["systems"]
    head = ["condition", "engine: best", "above every negative", "at the default (false matches)"]
    for s in systems[1:]:
        head += [f"{s}: best", "above (score / z)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = report["rows"]
    for cond in dict.fromkeys(r["cond"] for r in rows):
        pos = [r for r in rows if r["cond"] == cond and r["positive"]]
        neg = [r for r in rows if r["cond"] == cond and not r["positive"]]
        cells = [cond]
        for s in systems:
            keys = ("score",) if s == "engine" else ("score", "z")
            above = [sum(r[s]["right"] and r[s][k] > max(n[s][k] for n in neg) for r in pos) for k in keys]
            cells += [f"{sum(r[s]['right'] for r in pos)} of {len(pos)}", " / ".join(map(str, above))]
            if s == "engine":
                cells.append(f"{sum(r[s]['right'] and r[s]['named'] for r in pos)} "
                             f"({sum(r[s]['named'] for r in neg)} of {len(neg)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def arguments(ap: argparse.ArgumentParser) -> None:
    """The options of a run (its clips, its index's folder, where its report goes)."""
    ap.add_argument("corpus", nargs="?", help="the corpus folder (not needed with --table)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clips", type=int, default=40, help="positives, and as many negatives")
    ap.add_argument("--oracles", default=DEFAULT_CODES, help="BANDS:POOL:log|sign, comma-separated")
    ap.add_argument("--work", default=None, help="where the index goes (default: a temporary folder)")
    ap.add_argument("--talkers", help="a folder of recorded speech, a subfolder a speaker: adds the room "
                    "with those talkers in place of the synthetic ones, and those talkers alone")
    ap.add_argument("--out", help="write every answer here (JSON)")
    ap.add_argument("--table", help="print the table of a report written by --out, and stop")


def run(a: argparse.Namespace, extra: Extra | None = None) -> None:
    if a.table:
        print(table(json.loads(Path(a.table).read_text())))
        return
    if not a.corpus:
        raise SystemExit("the corpus folder is needed (or --table REPORT)")
    report = answer_all(a, extra)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1))
    print(table(report))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments(ap)
    run(ap.parse_args())


if __name__ == "__main__":
    main()
