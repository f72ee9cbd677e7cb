"""What the library tests' child processes share."""

from __future__ import annotations

import os
from pathlib import Path


def child_env() -> dict[str, str]:
    """The environment of a child process that imports this tree's audiolsh, as the test does."""
    import audiolsh

    src = str(Path(audiolsh.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
