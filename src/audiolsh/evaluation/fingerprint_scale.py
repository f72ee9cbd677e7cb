"""A fingerprint index grown to thousands of hours from real tracks' landmarks (issue #17).

Ingesting 10,000 hours of audio is out of reach here, so the index is grown at the hash level:
each real track's landmark set is copied as a pitch-shifted and time-stretched version of it
would fingerprint.  A copy maps every landmark's anchor bin, target bin, time step and anchor
time through a frequency ratio and a time ratio, undoing the rounding first (a uniform
sub-bin / sub-frame position, one per anchor peak, the way peaks are refined before they are
quantised), then drops the pairs that leave the band or the target zone, as pairing would.
The ratios are drawn per copy: frequency 0.75x to 0.89x (2 to 5 semitones down, so a copy
never shares an anchor bin with its source at a consistent offset, and no speed/pitch search
of a query reaches it), time 0.9x to 1x.  As the peak picker keeps its peaks per second whatever the
audio, peaks scaled out of the band come back in at its other end, and a copy faster than its
source keeps the same share of its anchor peaks.  Copies keep what makes a real index hard: the same hashes
are common (music's energy and pitch intervals), the same loops repeat, tracks have the same
lengths.  ``copy_statistics`` measures how close a copy's per-hash posting counts stay to its
source's.  A real track keeps its energy envelope; a copy keeps random bytes of its length (the
bytes an index stores, whose signs agree with a clip only by chance, as another track's do), so
the bytes per hour are a real index's.

The segment is built out of core: landmarks stream, in chunks, into files by hash range
(``N_PARTS``), then each range is sorted alone and written into memory-mapped arrays, so a
build of thousands of hours holds one chunk and one range in memory.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiolsh.features.envelope import BLOCK_FRAMES
from audiolsh.features.landmarks import DF_BITS, DF_MAX, DT_BITS, DT_MAX, F_HI, F_LO, FRAME_S, HASH_BITS
from audiolsh.index.fingerprint import FingerprintIndex
from audiolsh.index.fingerprint_build import segment_info
from audiolsh.index.segments import SegmentBuild
from audiolsh.search.fingerprint import high_bits_for

log = logging.getLogger(__name__)

__all__ = ["CopySpec", "Source", "copy_spec", "copy_statistics", "grow", "plan", "synthetic_copy"]

FREQ_RATIO = (0.75, 0.89)
"""A copy's frequency ratio: down only, as scaling up widens intervals past the target zone's
``DF_MAX`` (15 % of pairs at 1.2x), pairs the picker would have replaced by others."""
TIME_RATIO = (0.9, 1.0)
N_PARTS = 64
"""Hash ranges of the out-of-core build."""
CHUNK = 1 << 25
"""Landmarks buffered before they are spread into the range files."""


@dataclass(frozen=True)
class Source:
    """One track's landmarks: hashes uint32 (n,), anchor frames int32 (n,), in time order, and
    its energy envelope (uint8, a byte a block; None: a copy's, random bytes of its length)."""

    name: str
    hashes: np.ndarray
    times: np.ndarray
    duration_s: float
    envelope: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        last = int(self.times.max()) + 1 if len(self.times) else 0
        return max(math.ceil(self.duration_s / FRAME_S), last)


@dataclass(frozen=True)
class CopySpec:
    """Copy ``k`` of source ``source``: frequencies x ``freq_ratio``, times x ``time_ratio``
    (``k`` = 0: the source itself)."""

    source: int
    k: int
    freq_ratio: float
    time_ratio: float
    seed: int


def copy_spec(source: int, k: int, *, seed: int = 0) -> CopySpec:
    """The deterministic ratios of copy ``k`` of source ``source``."""
    if k == 0:
        return CopySpec(source, 0, 1.0, 1.0, 0)
    state = np.random.SeedSequence([seed, source, k]).generate_state(2)
    rng = np.random.default_rng(state)
    freq = math.exp(rng.uniform(math.log(FREQ_RATIO[0]), math.log(FREQ_RATIO[1])))
    time = math.exp(rng.uniform(math.log(TIME_RATIO[0]), math.log(TIME_RATIO[1])))
    return CopySpec(source, k, freq, time, int(state[1]))


def _fields(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor bin, bin step, time step) of landmark hashes, int64 each."""
    h = hashes.astype(np.int64)
    return h >> (DF_BITS + DT_BITS), ((h >> DT_BITS) & ((1 << DF_BITS) - 1)) - (1 << (DF_BITS - 1)), \
        h & ((1 << DT_BITS) - 1)


def synthetic_copy(src: Source, spec: CopySpec) -> Source:
    """The landmarks ``src`` would give after its frequencies are scaled by ``spec.freq_ratio``
    and its time by ``spec.time_ratio`` (deterministic in ``spec``)."""
    if spec.k == 0:
        return src
    f1, df, dt = _fields(src.hashes)
    t = src.times.astype(np.int64)
    n = len(t)
    rng = np.random.default_rng(spec.seed)
    # The refined position a rounded value stood for: one per bin and per time step (a note
    # that repeats, a loop, comes back at the same frequency and spacing, so the copy repeats
    # it as often), one per anchor peak for its time (a peak's pairs are consecutive).
    sub_bin = rng.uniform(-0.5, 0.5, 1 << 8)
    sub_step = rng.uniform(-0.5, 0.5, 1 << DT_BITS)
    anchor = np.cumsum(np.r_[True, (t[1:] != t[:-1]) | (f1[1:] != f1[:-1])]) - 1 if n else t
    n_anchors = int(anchor[-1]) + 1 if n else 0
    fa = f1 + sub_bin[f1]
    fb = f1 + df + sub_bin[np.clip(f1 + df, 0, 255)]
    step = dt + sub_step[dt]
    ta = t + rng.uniform(-0.5, 0.5, n_anchors)[anchor]
    r, q = spec.freq_ratio, spec.time_ratio
    # Peaks scaled out of the band come back in at its other end: the picker keeps its peaks
    # per second, taking what the shift brings into the band in place of what left it.
    band = F_HI - F_LO
    f1n = F_LO + np.mod(np.rint(fa * r).astype(np.int64) - F_LO, band)
    f2n = F_LO + np.mod(np.rint(fb * r).astype(np.int64) - F_LO, band)
    dtn, tn = np.rint(step * q).astype(np.int64), np.rint(ta * q).astype(np.int64)
    dfn = f2n - f1n
    # Time compressed by q < 1 would put more peaks in a second: keep a share q of anchors.
    kept = rng.random(n_anchors) < min(q, 1.0)
    ok = (np.abs(dfn) <= DF_MAX) & (dtn >= 1) & (dtn <= DT_MAX) & (tn >= 0) & kept[anchor]
    h = (f1n << (DF_BITS + DT_BITS)) | ((dfn + (1 << (DF_BITS - 1))) << DT_BITS) | dtn
    order = np.argsort(tn[ok], kind="stable")
    return Source(f"{src.name}#copy{spec.k}", h[ok][order].astype(np.uint32),
                  tn[ok][order].astype(np.int32), src.duration_s * q)


def copy_statistics(src: Source, copy: Source) -> dict[str, float]:
    """How a copy's hashes compare with its source's (``*_src``, ``*_copy``): landmarks per
    second (``rate``), and how clumped a track's hashes are (repeated notes and loops give the
    same hash many times): the mean count in the track of a landmark's hash (``repeat``) and
    the share of landmarks whose hash occurs once (``single``)."""
    out: dict[str, float] = {}
    for tag, lm in (("src", src), ("copy", copy)):
        counts = np.bincount(lm.hashes, minlength=1 << HASH_BITS)
        n = max(len(lm.hashes), 1)
        out[f"rate_{tag}"] = len(lm.hashes) / lm.duration_s
        out[f"repeat_{tag}"] = float(np.sum(counts.astype(np.float64) ** 2) / n)
        out[f"single_{tag}"] = float(np.sum(counts == 1) / n)
    return out


def plan(durations_s: Sequence[float], *, hours: float, start: int = 0, seed: int = 0) -> list[CopySpec]:
    """Copies in order (every source as itself, then copy 1 of every source, ...), from the
    ``start``-th on, until the plan from 0 holds at least ``hours``."""
    out: list[CopySpec] = []
    total_s, i = 0.0, 0
    n = len(durations_s)
    while total_s < hours * 3600:
        spec = copy_spec(i % n, i // n, seed=seed)
        total_s += durations_s[spec.source] * spec.time_ratio
        if i >= start:
            out.append(spec)
        i += 1
    return out


def grow(
    index: FingerprintIndex, sources: Sequence[Source], *, hours: float, workdir: Path, seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> int:
    """Attach one segment of the copies that take ``index`` (grown by earlier calls, or empty)
    to at least ``hours``; returns the number of tracks added."""
    specs = plan([s.duration_s for s in sources], hours=hours, start=len(index), seed=seed)
    if not specs:
        return 0
    copies = (synthetic_copy(sources[s.source], s) for s in specs)
    build = _out_of_core_segment(copies, len(specs), workdir, on_progress)
    index.auto_compact = False
    index.attach([build])
    shutil.rmtree(workdir / "segment", ignore_errors=True)
    return len(specs)


def _out_of_core_segment(
    copies: Iterator[Source], n_copies: int, workdir: Path,
    on_progress: Callable[[str, int, int], None] | None,
) -> SegmentBuild:
    part_shift = 32 + HASH_BITS - int(math.log2(N_PARTS))
    folder = workdir / "segment"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files = [open(folder / f"part{p:03d}.u64", "wb") for p in range(N_PARTS)]
    envelopes = open(folder / "envelope.u8", "wb")
    counts = np.zeros(1 << HASH_BITS, np.int64)
    tracks, frames, per_track, blocks = [], [], [], []
    buffered: list[np.ndarray] = []
    n_buffered = start = 0

    def spill() -> None:
        keys = np.concatenate(buffered)
        part = (keys >> np.uint64(part_shift)).astype(np.uint8)
        order = np.argsort(part, kind="stable")
        keys = keys[order]
        bounds = np.searchsorted(part[order], np.arange(N_PARTS + 1))
        for p in range(N_PARTS):
            keys[bounds[p]:bounds[p + 1]].tofile(files[p])
        counts[:] += np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=1 << HASH_BITS)
        buffered.clear()

    for i, c in enumerate(copies):
        pos = start + c.times.astype(np.uint64)
        buffered.append((c.hashes.astype(np.uint64) << np.uint64(32)) | pos)
        n_buffered += len(c.hashes)
        tracks.append({"path": c.name, "content_hash": f"synthetic:{c.name}", "duration_s": c.duration_s,
                       "kind": "audio", "meta": None, "n_items": len(c.hashes)})
        frames.append(c.n_frames)
        per_track.append(len(c.hashes))
        envelope = (np.random.default_rng(i).integers(0, 256, c.n_frames // BLOCK_FRAMES, dtype=np.uint8)
                    if c.envelope is None else np.asarray(c.envelope, np.uint8))
        envelope.tofile(envelopes)
        blocks.append(len(envelope))
        start += c.n_frames
        if n_buffered >= CHUNK:
            spill()
            n_buffered = 0
        on_progress and on_progress("copies", i + 1, n_copies)
    if buffered:
        spill()
    for f in files:
        f.close()
    envelopes.close()
    if start >= 1 << 32:
        raise ValueError(f"a fingerprint segment holds at most {1 << 32} frames, got {start}")
    n = int(counts.sum())
    high_bits = high_bits_for(n, HASH_BITS)
    low_bits = HASH_BITS - high_bits
    if n >= 1 << 32:
        raise ValueError(f"a fingerprint segment holds fewer than {1 << 32} hashes, got {n}")
    indptr = np.zeros((1 << high_bits) + 1, np.uint32)
    np.cumsum(counts.reshape(1 << high_bits, -1).sum(axis=1), out=indptr[1:])
    low_dtype = np.uint8 if low_bits <= 8 else np.uint16
    pos_out = np.lib.format.open_memmap(folder / "pos.npy", mode="w+", dtype=np.uint32, shape=(n,))
    low_out = np.lib.format.open_memmap(folder / "low.npy", mode="w+", dtype=low_dtype,
                                        shape=(n if low_bits else 0,))  # no low bits: none kept
    first = np.concatenate([[0], np.cumsum(counts)])
    per_part = (1 << HASH_BITS) // N_PARTS
    for p in range(N_PARTS):
        path = folder / f"part{p:03d}.u64"
        keys = np.fromfile(path, dtype=np.uint64)
        os.unlink(path)
        keys.sort()  # by hash, then position
        a = int(first[p * per_part])
        pos_out[a:a + len(keys)] = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        if low_bits:
            low = (keys >> np.uint64(32)) & np.uint64((1 << low_bits) - 1)
            low_out[a:a + len(keys)] = low.astype(low_dtype)
        on_progress and on_progress("ranges", p + 1, N_PARTS)
    pos_out.flush()
    low_out.flush()
    frames_a = np.asarray(frames, np.int64)
    arrays = {
        "indptr": indptr, "low": low_out, "pos": pos_out,
        "track_ids": np.arange(len(tracks), dtype=np.int64),
        "track_starts": np.concatenate([[0], np.cumsum(frames_a)[:-1]]).astype(np.int64),
        "track_frames": frames_a,
        "track_hashes": np.asarray(per_track, np.int64),
        "envelope": (np.memmap(folder / "envelope.u8", np.uint8, mode="r") if sum(blocks)
                     else np.zeros(0, np.uint8)),
        "track_blocks": np.asarray(blocks, np.int64),
    }
    return SegmentBuild(segment_info(n, high_bits, len(tracks)), arrays, tracks)
