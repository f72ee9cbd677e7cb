"""Where numba keeps its compiled kernels, so that a second process loads them instead of
compiling them again.

numba caches next to the sources (``__pycache__``), else under the user's cache folder; when
neither can be written (an installed package and a service user without a home), every
``cache=True`` kernel would fail to load.  ``configure`` runs before numba is imported and then
points ``NUMBA_CACHE_DIR`` at a folder that can be written: the user's cache, else a per-user
folder in the temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ENV = "NUMBA_CACHE_DIR"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def cache_dir(env: MutableMapping[str, str], *, package_dir: Path = PACKAGE_DIR,
              writable: Callable[[Path], bool] = _writable) -> str | None:
    """The folder to give numba, or None when its own choice works (a ``NUMBA_CACHE_DIR``
    already set, or a package whose ``__pycache__`` folders can be written)."""
    if env.get(ENV) or writable(package_dir / "__pycache__"):
        return None
    import tempfile  # only here: every command imports this module

    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for candidate in (Path(base) / "audiolsh" / "numba",
                      Path(tempfile.gettempdir()) / f"audiolsh-numba-{_user()}"):
        if writable(candidate):
            return str(candidate)
    return None  # nothing writable: numba's own rules, and its own error


def _user() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid is not None else os.environ.get("USERNAME", "user")


def configure(env: MutableMapping[str, str] = os.environ) -> None:
    """Set ``NUMBA_CACHE_DIR`` when numba's own places cannot be written (before numba is imported)."""
    chosen = cache_dir(env)
    if chosen is not None:
        env[ENV] = chosen
