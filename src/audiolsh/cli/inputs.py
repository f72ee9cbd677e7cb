"""Where the commands' inputs come from: files, folders (walked as ``index`` walks them),
``@list.txt`` files of paths, standard input (``-``) and the microphone (``--mic SECONDS``).

A bad input (a missing list file or entry, a folder without audio, too much on stdin) is one
line on stderr naming it; the rest of the batch goes on and the command exits 2 at the end.
Standard input and the microphone are buffered to temporary files: the decoders read files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from audiolsh.cli.output import err_console
from audiolsh.errors import AudioError, AudiolshError, ParameterError
from audiolsh.files import regular_problem, shown

STDIN = "-"
LIST_PREFIX = "@"
#: The most bytes taken from standard input: a 600-s clip as 16-bit stereo WAV at 96 kHz is 230 MB.
MAX_STDIN_BYTES = 256 * 2**20
MIC_NAME = "mic"
MIC_INSTALL = "--mic needs the sounddevice package: pip install 'audiolsh[mic]'"
PORTAUDIO_INSTALL = ("--mic needs the PortAudio library: apt-get install libportaudio2"
                     " (brew install portaudio on macOS)")
NO_INPUT_DEVICE = "--mic: no audio input device (microphone) found on this machine"


def say_problem(message: str) -> None:
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)


def read_list(list_file: Path) -> list[str]:
    """The entries of a list file: one path a line, blank lines and ``#`` comments skipped,
    relative paths taken relative to the list file's folder."""
    problem = regular_problem(list_file, what="a list file")
    if problem is not None:
        raise ParameterError(f"{shown(list_file)}: {problem} (a list of paths given as @)")
    try:
        text = list_file.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ParameterError(f"{shown(list_file)}: cannot read the list: {exc.strerror or exc}") from None
    entries = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            entry = os.path.expanduser(entry)
            entries.append(entry if list_file.parent == Path(".") else os.path.join(list_file.parent, entry))
    return entries


@dataclass
class Expanded:
    """Arguments with every ``@list`` replaced by its entries (in order); ``problems`` counts
    the lines said about missing list files and entries."""

    items: list[str] = field(default_factory=list)
    problems: int = 0

    def problem(self, message: str) -> None:
        say_problem(message)
        self.problems += 1


def expand_lists(args: Sequence[str], *, check_entries: bool = True, check_args: bool = False) -> Expanded:
    """``args`` with each ``@list.txt`` replaced by its entries; a missing list file, with
    ``check_entries`` a missing entry and with ``check_args`` a missing argument, is said
    (naming it) and left out.  Entries are paths: a query command's ``-`` in a list is a file."""
    out = Expanded()
    for arg in args:
        if not arg.startswith(LIST_PREFIX) or arg == LIST_PREFIX:
            if check_args and not os.path.lexists(arg):
                out.problem(f"{shown(arg)}: no such file or folder")
            else:
                out.items.append(arg)
            continue
        list_file = Path(arg[len(LIST_PREFIX):])
        try:
            entries = read_list(list_file)
        except ParameterError as exc:
            out.problem(str(exc))
            continue
        for entry in entries:
            if check_entries and not os.path.lexists(entry):
                out.problem(f"{shown(entry)}: no such file or folder (listed in {shown(list_file)})")
            else:
                out.items.append(entry)
    return out


@dataclass
class ClipInputs:
    """The clips of a query command as files, in the order given (a folder's audio files
    sorted); ``names`` holds what a temporary file stands for (``-``, ``mic``)."""

    paths: list[Path] = field(default_factory=list)
    problems: int = 0
    names: dict[Path, str] = field(default_factory=dict)

    def name(self, clip: Path) -> str:
        """The clip as the user gave it, for records."""
        return self.names.get(clip) or shown(clip)

    def short(self, clip: Path) -> str:
        """The clip's file name, for tables."""
        return self.names.get(clip) or shown(clip.name)

    def unreadable(self, folder: Path, problem: str) -> None:
        """A folder that cannot be read: said, and counted as a problem."""
        say_problem(f"{shown(folder)}: {problem}")
        self.problems += 1

    def message(self, exc: AudiolshError) -> str:
        """An error's line, naming ``-`` or ``mic`` rather than the temporary file."""
        if isinstance(exc, AudioError) and Path(exc.path) in self.names:
            return f"{self.names[Path(exc.path)]}: {exc.problem}"
        return str(exc)


def _read_stdin(folder: Path, limit: int) -> Path:
    stream = sys.stdin.buffer
    if stream.isatty():
        raise ParameterError("-: standard input is a terminal; pipe a clip in"
                             " (audiolsh identify - < clip.mp3)")
    path = folder / "stdin"
    size = 0
    with open(path, "wb") as out:  # in chunks: no buffer of the limit's size
        while chunk := stream.read(2**20):
            size += len(chunk)
            if size > limit:
                raise ParameterError(f"-: more than {limit / 2**20:g} MB on standard input;"
                                     " give a shorter clip, or the file itself")
            out.write(chunk)
    if not size:
        raise ParameterError("-: nothing on standard input")
    return path


def record_mic(seconds: float) -> tuple[Any, int]:
    """``seconds`` of mono float32 from the default input device, and its sample rate."""
    try:
        import sounddevice as sd
    except ImportError:
        raise ParameterError(MIC_INSTALL) from None
    except OSError:  # the package is there, the PortAudio library it loads is not
        raise ParameterError(PORTAUDIO_INSTALL) from None
    try:
        device = sd.query_devices(kind="input")
    except (sd.PortAudioError, ValueError):
        raise ParameterError(NO_INPUT_DEVICE) from None
    sr = int(device["default_samplerate"])
    err_console.print(f"recording {seconds:g} s from {device['name']}...", highlight=False)
    try:
        y = sd.rec(round(seconds * sr), samplerate=sr, channels=1, dtype="float32", blocking=True)
    except sd.PortAudioError as exc:
        raise ParameterError(f"--mic: recording failed: {exc}") from None
    return y[:, 0], sr


@contextlib.contextmanager
def clip_inputs(args: Sequence[str], *, mic_s: float | None = None) -> Iterator[ClipInputs]:
    """The clips named by ``args`` (files, folders, ``@lists``, ``-``) and the microphone;
    temporary files live as long as the context."""
    from audiolsh.audio import find_audio

    with tempfile.TemporaryDirectory(prefix="audiolsh-clip-") as tmp:
        expanded = expand_lists(args)
        out = ClipInputs(problems=expanded.problems)
        if mic_s is not None:
            import soundfile as sf

            y, sr = record_mic(mic_s)
            path = Path(tmp) / "mic.wav"
            sf.write(path, y, sr)
            out.paths.append(path)
            out.names[path] = MIC_NAME
        for arg in expanded.items:
            if arg == STDIN:
                try:
                    path = next((p for p, n in out.names.items() if n == STDIN), None) or \
                        _read_stdin(Path(tmp), MAX_STDIN_BYTES)
                except ParameterError as exc:
                    say_problem(str(exc))
                    out.problems += 1
                    continue
                out.paths.append(path)
                out.names[path] = STDIN
            elif os.path.isdir(arg):
                unread = out.problems
                found = find_audio([arg], on_skip=lambda p, why: err_console.print(
                    f"[yellow]{escape(shown(p))}: skipped, {escape(why)}[/]", highlight=False),
                    on_error=out.unreadable)
                if not found and out.problems == unread:
                    say_problem(f"{shown(arg)}: no audio files in this folder")
                    out.problems += 1
                out.paths += found
            else:  # a missing file is said when it is read, in the batch's order
                out.paths.append(Path(arg))
        yield out


__all__ = ["LIST_PREFIX", "MAX_STDIN_BYTES", "STDIN", "ClipInputs", "Expanded", "clip_inputs",
           "expand_lists", "read_list", "record_mic"]
