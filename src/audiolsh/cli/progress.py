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
        self._t0 = self._last = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> FileProgress:
        self._t0 = self._last = self.clock()
        if self.console.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[now]}"), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.verb, total=self.total, rate="", now="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def restart(self, verb: str, total: int | None = None) -> None:
        """A new stage of the work (``verb``: what it does to each file): counts and rates start
        again from now."""
        self.verb, self.total = verb, total
        self.done = self.failed = 0
        self.audio_s = 0.0
        self.current = ""
        self._t0 = self._last = self.clock()
        if self._bar is not None and self._task is not None:
            self._bar.reset(self._task, total=total, description=verb, rate="", now="")

    def hashed(self, path: str, n_files: int, failed: bool = False) -> None:
        """``index_audio``'s ``on_hashed``: the content hashes, read before anything is analysed
        (on a resumed run, all it does), as the first stage (timed from the start)."""
        if self.verb != "hashed" or self.total is None:
            self.verb = "hashed"
            self.set_total(n_files)
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, description=self.verb)
        self.advance(path, failed=failed)

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

    def rate(self, now: float | None = None) -> str:
        """``4.1 files/s, 230x real time`` (the second part only when audio was counted)."""
        elapsed = max((self.clock() if now is None else now) - self._t0, 1e-9)
        text = f"{self.done / elapsed:.1f} files/s"
        if self.audio_s > 0:
            text += f", {self.audio_s / elapsed:.0f}x real time"
        return text

    def line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        failed = f" ({self.failed} failed)" if self.failed else ""
        now = f", now: {self.current}" if self.current else ""
        return f"{self.verb} {self.done}{of} files{failed}, {self.rate()}{now}"

    def _say(self) -> None:
        self.console.print(self.line(), markup=False, highlight=False)
