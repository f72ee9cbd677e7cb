"""Progress of long work over files on stderr: in a terminal a rich bar with files/s, x real
time and the current file; otherwise (a log, a pipe, CI) a plain line every so often, e.g.
``indexed 120/830 files, 4.1 files/s, 230x real time, now: album/song.flac``.

The current file is the last one done well: a file that failed has its own error line, and
no other line names it.  No line is added at the end (the command's summary follows)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from audiolsh.cli.output import err_console
from audiolsh.errors import ParameterError
from audiolsh.files import shown

#: Seconds between plain progress lines (0: one line per file).
EVERY_ENV = "AUDIOLSH_PROGRESS_EVERY"
EVERY_S = 10.0


def every_s_from_env() -> float:
    """The plain lines' interval: ``$AUDIOLSH_PROGRESS_EVERY`` seconds, or 10."""
    text = os.environ.get(EVERY_ENV, "").strip()
    if not text:
        return EVERY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ParameterError(f"{EVERY_ENV} must be a number of seconds (0 or more), got {text!r}")
    return value


class FileProgress:
    """``with FileProgress("indexed", total=n) as p: p.advance(path, duration_s)``.

    ``duration_s`` is the audio the file held (``None`` for files that are not audio): with it
    the rate says how many times faster than real time the work goes.  ``every_s`` is the
    interval of the plain lines (default: :func:`every_s_from_env`); ``clock`` is for tests.
    """

    def __init__(self, verb: str, *, total: int | None = None, every_s: float | None = None,
                 console: Console | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.verb = verb
        self.total = total
        self.every_s = every_s_from_env() if every_s is None else every_s
        self.console = console or err_console
        self.clock = clock
        self.done = 0
        self.failed = 0
        self.audio_s = 0.0
        self.current = ""
        self.n_hashed = self.n_to_hash = 0
        self.last_hashed = ""
        self._t0 = self._last = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> FileProgress:
        self._t0 = self._last = self.clock()
        if self.console.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[now]}"), TextColumn("{task.fields[hashed]}"),
                                 console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.verb, total=self.total, rate="", now="", hashed="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def hashed(self, path: str, n_files: int, failed: bool = False) -> None:
        """``on_hashed``: a file's content hash read.  A progress whose verb is ``hashed`` (the
        plan of an update) counts it; any other shows the hashes beside its own count while they
        are still coming (``index`` reads them a few files ahead of the analysis) and, in the
        plain lines, until the first file is analysed, in place of it (on a resumed run that is
        all it does)."""
        if self.verb == "hashed":
            if self.total is None:
                self.set_total(n_files)
            self.advance(path, failed=failed)
            return
        self.n_hashed += 1
        self.n_to_hash = n_files
        if not failed:
            self.last_hashed = shown(path)
        now = self.clock()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, hashed=escape(self._hashing()))
        elif now - self._last >= self.every_s:
            self._last = now
            self._say()

    def _hashing(self) -> str:
        return f"hashed {self.n_hashed}/{self.n_to_hash}" if self.n_hashed < self.n_to_hash else ""

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def advance(self, path: str, duration_s: float | None = None, *, failed: bool = False) -> None:
        """One more file done (``path`` the one just finished; ``failed``: it could not be used)."""
        self.done += 1
        self.failed += failed
        self.audio_s += duration_s or 0.0
        if not failed:
            self.current = shown(path)
        now = self.clock()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, rate=escape(self.rate(now)),
                             now=escape(os.path.basename(self.current)))
        elif now - self._last >= self.every_s:
            self._last = now
            self._say()

    def extracted(self, path: str, duration_s: float | None) -> None:
        """``index_audio``'s ``on_extracted``: a file analysed (``None``: it failed)."""
        self.advance(path, duration_s, failed=duration_s is None)

    def rate(self, now: float | None = None, files: int | None = None) -> str:
        """``4.1 files/s, 230x real time`` (the second part only when audio was counted) of the
        files done (or ``files``)."""
        elapsed = max((self.clock() if now is None else now) - self._t0, 1e-9)
        text = f"{(self.done if files is None else files) / elapsed:.1f} files/s"
        if self.audio_s > 0:
            text += f", {self.audio_s / elapsed:.0f}x real time"
        return text

    def line(self) -> str:
        if self.done == 0 and self.n_hashed:  # nothing analysed yet: the hashes so far
            now = f", now: {self.last_hashed}" if self.last_hashed else ""
            return f"hashed {self.n_hashed}/{self.n_to_hash} files, {self.rate(files=self.n_hashed)}{now}"
        of = f"/{self.total}" if self.total is not None else ""
        failed = f" ({self.failed} failed)" if self.failed else ""
        now = f", now: {self.current}" if self.current else ""
        hashing = f"; {self._hashing()}" if self._hashing() else ""
        return f"{self.verb} {self.done}{of} files{failed}, {self.rate()}{now}{hashing}"

    def _say(self) -> None:
        self.console.print(self.line(), markup=False, highlight=False)
