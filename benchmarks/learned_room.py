"""A pilot for issue #17's loud room: would a fingerprint learned with room and babble augmentation
name the 3-s clips that the engine and the dense spectral oracles cannot?

    .venv/bin/pip install -e '.[pilot]'   # PyTorch, the pilot's own (make test installs it)
    for p in hyperrogue-music drascula-music fretsonfire-songs-muldjord fretsonfire-songs-sectoid \\
             colobot-common-sounds boswars-data fillets-ng-data; do   # 117 tracks, 3.5 h
        ../shared/data/fetch-corpus --set train-$p --packages $p; done
    .venv/bin/python benchmarks/learned_room.py speech --out speech.npy
    .venv/bin/python benchmarks/learned_room.py train ~/.cache/audiolsh-corpus/train-* \\
        --speech speech.npy --steps 3000 --batch 512 --out model.pt      # about 80 min on 2 cores
    .venv/bin/python benchmarks/learned_room.py evaluate ~/.cache/audiolsh-corpus/dev --model model.pt \\
        --seed 1 --clips 40 --work rp --out learned1.json   # rp: room_parts.py's --work (its index)

``speech`` has espeak-ng (Debian's package) read licence texts in many voices: the training
babble, a different source from the protocol's synthetic talkers. ``train`` learns a 64-d embedding
of 1-s log-mel windows (8 kHz, 64 bands) contrastively, as neural audio fingerprinting does (Chang
et al., ICASSP 2021): a clean window and the same passage, up to 0.2 s off, through a random room
(85 % of pairs; RT60 0.2-1.2 s in the bass and half that in the treble, -4 to +8 dB direct to
reverberant) with 1-8 espeak talkers (80 %, most in a room of their own) or coloured noise, at
0-12 dB, each pair against the batch's other windows. The music is other Debian game soundtracks, none of
the evaluation corpus's packages. ``evaluate`` draws room_parts.py's clips (same seed, same
conditions) and scans every indexed track exhaustively: the clip's 1-s windows every 0.1 s
against the track's windows every ``--db-hop`` s, scored by the mean similarity along each
alignment. It reports room_parts.py's table.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import librosa
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import room_parts as rp
from audiolsh.audio import find_audio
from audiolsh.audio.decode import load
from audiolsh.evaluation import distortions as d
from audiolsh.features.landmarks import _resample

SR = 8000
WIN = SR  # a 1-s window
N_FFT, HOP, MELS = 1024, 256, 64
DIM = 64


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise SystemExit("this pilot needs PyTorch: pip install -e '.[pilot]'") from None
    torch.set_num_threads(2)
    return torch


# ---------------------------------------------------------------- training babble
_TEXTS = ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/LGPL-3",
          "/usr/share/common-licenses/Apache-2.0", "/usr/share/common-licenses/MPL-2.0"]
_VOICES = ["en", "en-us", "de", "fr", "es", "it", "nl", "pl", "pt", "sv", "cs", "ru", "fi", "hu", "tr", "el"]


def speech(a: argparse.Namespace) -> None:
    if a.source == "protocol":  # a diagnostic: the evaluation's own kind of voice, other seeds
        rng = np.random.default_rng(12345)
        voices = [d._voice(30 * SR, SR, rng) for _ in range(a.pieces)]
        bank = np.concatenate([v / (np.sqrt(np.mean(v**2)) + 1e-9) for v in voices]).astype(np.float32)
        np.save(a.out, bank)
        print(f"{a.pieces} synthetic voices, {bank.size / SR / 60:.1f} min -> {a.out}")
        return
    import shutil

    if shutil.which("espeak-ng") is None:
        raise SystemExit("the training babble needs espeak-ng: apt-get install espeak-ng")
    rng = np.random.default_rng(0)
    words = " ".join(Path(t).read_text(errors="ignore") for t in _TEXTS if Path(t).exists()).split()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.pieces):
            start = int(rng.integers(0, len(words) - 80))
            text = " ".join(words[start:start + 70])
            voice = f"{_VOICES[k % len(_VOICES)]}+{rng.choice(['m1', 'm3', 'm5', 'f1', 'f2', 'f4'])}"
            wav = Path(tmp) / "s.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(rng.integers(130, 200))),
                            "-p", str(int(rng.integers(25, 75))), "-w", str(wav), text], check=True)
            y, _ = load(str(wav), sr=SR)
            out.append(y / (np.sqrt(np.mean(y**2)) + 1e-9))
    bank = np.concatenate(out).astype(np.float32)
    np.save(a.out, bank)
    print(f"{len(out)} pieces, {bank.size / SR / 60:.1f} min of speech -> {a.out}")


# ---------------------------------------------------------------- the model
def build_model(torch: Any) -> Any:
    nn = torch.nn

    def block(i: int, o: int, stride: tuple[int, int]) -> Any:
        return nn.Sequential(nn.Conv2d(i, o, 3, stride=stride, padding=1), nn.GroupNorm(8, o), nn.ELU())

    class Net(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.fb = torch.tensor(librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=MELS, fmin=60, fmax=3900),
                                   dtype=torch.float32)
            self.window = torch.hann_window(N_FFT)
            self.body = nn.Sequential(block(1, 32, (2, 2)), block(32, 64, (2, 2)), block(64, 128, (2, 2)),
                                      block(128, 256, (2, 2)), block(256, 256, (2, 2)))
            self.head = nn.Sequential(nn.Linear(512, 256), nn.ELU(), nn.Linear(256, DIM))

        def features(self, y: Any) -> Any:
            spec = torch.stft(y, N_FFT, HOP, window=self.window, return_complex=True).abs() ** 2
            logmel = torch.log(torch.matmul(self.fb, spec) + 1e-6)
            return (logmel - logmel.mean(dim=(1, 2), keepdim=True))[:, None]

        def forward(self, y: Any) -> Any:
            h = self.body(self.features(y)).flatten(1)
            return nn.functional.normalize(self.head(h), dim=1)

    return Net()


# ---------------------------------------------------------------- augmentation (batched, torch)
def room_bank(torch: Any, n: int, rng: np.random.Generator) -> Any:
    """``n`` impulse responses of 1 s: a direct path, then noise whose decay is faster in the high
    bands (RT60 0.2-1.2 s at the bottom, 0.5x at the top), at -4..+8 dB direct to reverberant."""
    t = np.arange(SR) / SR
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    irs = np.zeros((n, SR), np.float32)
    for k in range(n):
        rt = rng.uniform(0.2, 1.2)
        bands = []
        for lo, hi, f in ((0, 500, 1.0), (500, 1500, 0.8), (1500, 4001, 0.5)):
            noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(SR)) * ((freqs >= lo) & (freqs < hi)), SR)
            bands.append(noise * 10.0 ** (-3.0 * t / (rt * f)))
        tail = np.sum(bands, axis=0)
        tail[: int(rng.uniform(0.003, 0.02) * SR)] = 0.0
        tail *= math.sqrt(10 ** (-rng.uniform(-4, 8) / 10) / np.sum(tail**2))
        tail[0] = 1.0
        irs[k] = tail
    return torch.tensor(irs)


def convolve(torch: Any, x: Any, irs: Any) -> Any:
    n = x.shape[1] + irs.shape[1]
    return torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(irs, n), n)[:, : x.shape[1]]


def mix(torch: Any, x: Any, noise: Any, snr_db: Any) -> Any:
    px = x.pow(2).mean(1, keepdim=True) + 1e-9
    pn = noise.pow(2).mean(1, keepdim=True) + 1e-9
    return x + noise * torch.sqrt(px / pn / 10 ** (snr_db[:, None] / 10))


def crops(bank: Any, starts: Any, length: int) -> Any:
    return bank[starts[..., None] + np.arange(length)]


class Data:
    def __init__(self, torch: Any, folders: list[str], speech_path: str, seed: int) -> None:
        self.torch = torch
        self.rng = np.random.default_rng(seed)
        tracks = []
        for p in sorted({p for f in folders for p in find_audio([f])}):
            y, _ = load(p, sr=SR)
            if y.size > 4 * SR:
                tracks.append(y.astype(np.float32))
        self.music = np.concatenate(tracks)
        ends = np.cumsum([t.size for t in tracks])
        lo, hi = ends - np.array([t.size for t in tracks]), ends
        # window starts 2 s into a track (the room's history) and 1.3 s before its end
        ok = np.concatenate([np.arange(a + 2 * SR, b - SR - SR // 4) for a, b in zip(lo, hi)])
        frame = np.sqrt(np.add.reduceat(self.music**2, np.arange(0, self.music.size, SR // 4)) / (SR // 4))
        loud = frame[ok // (SR // 4)] > 1e-3 * np.median(frame)
        self.ok = ok[loud]
        self.hours = self.music.size / SR / 3600
        self.speech = np.load(speech_path).astype(np.float32)
        self.irs = room_bank(torch, 400, self.rng)

    def batch(self, b: int) -> tuple[Any, Any]:
        torch, rng = self.torch, self.rng
        start = self.rng.choice(self.ok, b)
        shift = (rng.uniform(-0.2, 0.2, b) * SR).astype(np.int64)
        anchor = torch.tensor(crops(self.music, start, WIN))
        hist = crops(self.music, start + shift - SR, 2 * SR)  # 1 s of history for the room's tail
        x = torch.tensor(hist) * torch.tensor(rng.uniform(0.3, 1.0, (b, 1)), dtype=torch.float32)
        room = rng.random(b) < 0.85
        wet = convolve(torch, x, self.irs[rng.integers(0, len(self.irs), b)])
        x = torch.where(torch.tensor(room)[:, None], wet, x)
        voices = rng.integers(1, 9, b)
        gains = rng.uniform(0.5, 1.0, (b, 8)) * (np.arange(8) < voices[:, None])
        talk = crops(self.speech, rng.integers(0, self.speech.size - 2 * SR, (b, 8)), 2 * SR)
        talk = torch.tensor(np.einsum("bv,bvn->bn", gains, talk), dtype=torch.float32)
        talk = torch.where(torch.tensor(rng.random(b) < 0.7)[:, None],
                           convolve(torch, talk, self.irs[rng.integers(0, len(self.irs), b)]), talk)
        white = torch.randn(b, 2 * SR)
        tilt = torch.tensor(rng.uniform(-2.0, 0.0, (b, 1)), dtype=torch.float32)  # white .. brown
        f = torch.fft.rfftfreq(2 * SR, 1 / SR).clamp(min=20.0)
        colour = torch.fft.irfft(torch.fft.rfft(white) * (f / 1000.0) ** (tilt / 2), 2 * SR)
        use_talk = torch.tensor(rng.random(b) < 0.8)[:, None]
        noise = torch.where(use_talk, talk, colour)
        noise = noise + 0.3 * colour * torch.tensor(rng.random((b, 1)) < 0.3)
        x = mix(torch, x, noise, torch.tensor(rng.uniform(0.0, 12.0, b), dtype=torch.float32))
        return anchor, x[:, SR:].contiguous()


def train(a: argparse.Namespace) -> None:
    torch = _torch()
    torch.manual_seed(a.seed)
    data = Data(torch, a.folders, a.speech, a.seed)
    print(f"{data.hours:.2f} h of music, {len(data.ok)} window starts", flush=True)
    model = build_model(torch)
    if a.init:
        model.load_state_dict(torch.load(a.init))
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.05)
    t0 = time.time()
    for step in range(1, a.steps + 1):
        anchor, positive = data.batch(a.batch)
        e = model(torch.cat([anchor, positive]))
        ea, ep = e[: a.batch], e[a.batch:]
        logits = ea @ ep.T / a.tau
        target = torch.arange(a.batch)
        loss = (torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0:
            acc = float((logits.argmax(1) == target).float().mean())
            print(f"step {step} loss {loss.item():.3f} in-batch top-1 {acc:.3f} {time.time() - t0:.0f} s",
                  flush=True)
        if step % 250 == 0 or step == a.steps:  # written whole, then renamed: a stop keeps the last
            torch.save(model.state_dict(), f"{a.out}.part")
            Path(f"{a.out}.part").replace(a.out)


# ---------------------------------------------------------------- evaluation
def embed(torch: Any, model: Any, y: np.ndarray, hop: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(y, WIN)[::hop]  # a view: no copy
    out = []
    with torch.no_grad():
        for k in range(0, len(windows), 512):
            out.append(model(torch.tensor(windows[k:k + 512], dtype=torch.float32)).numpy())
    return np.concatenate(out)


class Scan:
    """Every indexed track's windows every ``db_hop`` s; a clip's windows every 0.1 s aligned with
    them at every shift, scored by their mean similarity."""

    def __init__(self, torch: Any, model: Any, tracks: list[np.ndarray], db_hop_s: float) -> None:
        self.torch, self.model = torch, model
        self.hop = round(db_hop_s * SR)
        embs = [embed(torch, model, y, self.hop) for y in tracks]
        self.starts = np.cumsum([0] + [len(e) for e in embs])
        self.owner = np.repeat(np.arange(len(embs)), np.diff(self.starts))
        self.E = np.concatenate(embs)

    def answer(self, y: np.ndarray) -> tuple[int, float, float, float]:
        qhop = SR // 10
        Q = embed(self.torch, self.model, _resample(y, rp.SR), qhop)
        S = Q @ self.E.T  # (clip windows, indexed windows)
        step = self.hop // qhop
        best: tuple[int, float, float, float] | None = None
        for s in range(step):  # the clip's windows that fall on the index's grid, first at s
            rows = np.arange(s, len(Q), step)
            n = len(rows)
            if n == 0:
                continue
            m = len(self.E) - n + 1
            score = sum(S[r, k: k + m] for k, r in enumerate(rows)) / n
            j = np.arange(m)
            valid = self.owner[j] == self.owner[j + n - 1]
            score = np.where(valid, score, -np.inf)
            b = int(np.argmax(score))
            if best is None or score[b] > best[2]:
                k = int(self.owner[b])
                offset = (b - int(self.starts[k])) * self.hop / SR - s * qhop / SR
                z = (float(score[b]) - float(score[valid].mean())) / float(score[valid].std())
                best = (k, offset, float(score[b]), z)
        assert best is not None
        return best


def learned(a: argparse.Namespace, indexed: list[str]) -> dict[str, rp.Answer]:
    torch = _torch()
    tracks = [load(p, sr=SR)[0] for p in indexed]
    out: dict[str, rp.Answer] = {}
    for path in a.model:
        model = build_model(torch)
        model.load_state_dict(torch.load(path))
        model.eval()
        name = "learned" if len(a.model) == 1 else f"learned {Path(path).stem}"
        if any(k.startswith(f"{name}, ") for k in out):
            raise SystemExit(f"--model: two models named {Path(path).stem!r}; give their files other names")
        out.update({f"{name}, indexed every {h:g} s": Scan(torch, model, tracks, h).answer for h in a.db_hop})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speech", help="the training babble's speech, read by espeak-ng")
    s.add_argument("--pieces", type=int, default=160)
    s.add_argument("--source", choices=["espeak", "protocol"], default="espeak",
                   help="protocol: the evaluation's synthetic voices at other seeds (a diagnostic)")
    s.add_argument("--out", required=True)
    t = sub.add_parser("train", help="learn the embedding")
    t.add_argument("folders", nargs="+", help="music folders (none of the evaluation corpus)")
    t.add_argument("--speech", required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--tau", type=float, default=0.05)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", help="start from this model (train --out) instead of at random")
    t.add_argument("--out", required=True)
    e = sub.add_parser("evaluate", help="room_parts.py's clips and table, the engine beside the embedding")
    rp.arguments(e)
    e.add_argument("--model", nargs="+", help="the trained embedding (train --out); several: a system each")
    e.add_argument("--db-hop", type=float, nargs="+", default=[0.1, 0.5],
                   help="seconds between the indexed windows (several: a system each)")
    e.set_defaults(oracles="")
    a = ap.parse_args()
    if a.cmd == "evaluate":
        if not a.table and not a.model:
            ap.error("evaluate needs --model (or --table REPORT)")
        rp.run(a, learned)
        return
    {"speech": speech, "train": train}[a.cmd](a)


if __name__ == "__main__":
    main()
