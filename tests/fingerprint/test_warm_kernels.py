"""Opening a fingerprint index loads every kernel a query runs, for the types the query passes,
even when the open's tiny warm-up lookups find nothing in the index: no kernel is left to load
(or compile) in the first query that finds entries, timed or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from audiolsh.audio.synth import tone
from audiolsh.index.fingerprint import FingerprintIndex

SR = 16000

_CHILD = r"""
import importlib, json, sys
import numpy as np
from numba.core.registry import CPUDispatcher
from audiolsh.index.fingerprint import FingerprintIndex

modules = [importlib.import_module(m) for m in ("audiolsh.search.fingerprint", "audiolsh.features.landmarks",
                                                 "audiolsh.features.envelope")]

def loaded():
    return {f"{m.__name__}.{n}": sorted(map(str, d.signatures)) for m in modules
            for n, d in vars(m).items() if isinstance(d, CPUDispatcher)}

idx = FingerprintIndex.open(sys.argv[1], readonly=True)
before = loaded()
clip = np.load(sys.argv[2])
answers = [idx.identify(clip, 16000, min_confidence=0) is not None]
idx.params.max_matches = 1  # the narrowed search, as a large index takes it
answers.append(idx.identify(clip, 16000, min_confidence=0) is not None)
after = loaded()
print(json.dumps({"answers": answers, "new": {k: v for k, v in after.items() if v != before.get(k, [])}}))
"""


def test_no_kernel_is_left_to_the_first_query_that_finds_entries(tmp_path: Path) -> None:
    where = tmp_path / "fp"
    y = tone(440.0, duration_s=30.0, sr=SR) + tone(660.0, duration_s=30.0, sr=SR, amplitude=0.3)
    with FingerprintIndex.create(where) as idx:  # a steady chord: hashes that noise rarely has
        idx.add("chord.wav", y.astype(np.float32), SR, content_hash="chord")
    np.save(tmp_path / "clip.npy", y[5 * SR:13 * SR].astype(np.float32))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(where), str(tmp_path / "clip.npy")],
                         capture_output=True, text=True, env=env, timeout=600, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["answers"] == [True, True]  # both searches found the chord's entries
    assert got["new"] == {}
