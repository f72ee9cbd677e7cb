"""The optional config file: defaults for the options people repeat.

``$AUDIOLSH_CONFIG``, else ``$XDG_CONFIG_HOME/audiolsh/config.toml`` (``~/.config`` when
unset), in TOML::

    index = "~/music/audiolsh-index"   # --index of every command
    workers = 4                        # -j/--workers of index, update, evaluate
    min_confidence = 0.9               # --min-confidence of identify
    format = "jsonl"                   # --format of every command that has it

    [server]                           # audiolsh serve
    host = "127.0.0.1"
    port = 8000
    workers = 2

A setting is taken from the command line, else its environment variable, else the file, else
the built-in default: click's own order for an option's value (command line, ``envvar``,
``default_map``, ``default``), so the file fills each command's ``default_map``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from audiolsh.cli.output import FORMATS
from audiolsh.errors import ParameterError
from audiolsh.files import shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_ENV = "AUDIOLSH_CONFIG"


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class Setting:
    """One key of the file: the option (parameter name) it gives a default to, in which
    commands (``None``: every command with that parameter), and its environment variable."""

    key: str
    param: str
    env: str
    what: str
    valid: Callable[[Any], bool]
    expected: str
    commands: tuple[str, ...] | None = None
    excluded: tuple[str, ...] = ()
    #: the type of the value (an environment variable's text is converted to it)
    kind: type = str
    #: what the built-in default None means
    none_means: str | None = None

    def applies(self, command: str) -> bool:
        if command in self.excluded:
            return False
        return self.commands is None or command in self.commands


SETTINGS = (
    Setting("index", "index_path", "AUDIOLSH_INDEX", "the library (--index)",
            lambda v: isinstance(v, str) and bool(v), "a location (text)"),
    Setting("workers", "workers", "AUDIOLSH_WORKERS", "decoding processes (-j)", _positive,
            "a positive integer", excluded=("serve",), none_means="all cores", kind=int),
    Setting("format", "fmt", "AUDIOLSH_FORMAT", "output format (--format)",
            lambda v: v in FORMATS, f"one of {', '.join(FORMATS)}"),
    Setting("min_confidence", "min_confidence", "AUDIOLSH_MIN_CONFIDENCE",
            "no-match threshold of identify, a calibrated probability (--min-confidence)",
            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
            "a probability, 0 to 1", commands=("identify",), kind=float,
            none_means="the calibration's operating point"),
    Setting("server.host", "host", "AUDIOLSH_HOST", "address serve listens on",
            lambda v: isinstance(v, str) and bool(v), "an address (text)", commands=("serve",)),
    Setting("server.port", "port", "AUDIOLSH_PORT", "port serve listens on",
            lambda v: _positive(v) and v <= 65535, "a port number, 1 to 65535", commands=("serve",),
            kind=int),
    Setting("server.workers", "workers", "AUDIOLSH_SERVER_WORKERS", "queries serve analyses at once",
            lambda v: _positive(v) and v <= 64, "an integer, 1 to 64", commands=("serve",), kind=int),
)
BY_KEY = {s.key: s for s in SETTINGS}


def config_path() -> tuple[Path, bool]:
    """Where the config file is, and whether it was named (``$AUDIOLSH_CONFIG``): a named file
    must exist, the default one may not."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser(), True
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "audiolsh" / "config.toml", False


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def load_config(path: Path | None = None, *, named: bool = True) -> dict[str, Any]:
    """The file's settings by key (``server.port``); {} when there is no file at the default
    place.  A named file that is missing, bad TOML, an unknown key or a bad value raises
    ``ParameterError`` naming the file (and the key)."""
    if path is None:
        path, named = config_path()
    where = shown(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        if named:
            raise ParameterError(f"{where}: config file not found (named by ${CONFIG_ENV})") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{where}: cannot read the config file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"{where}: not valid TOML: {exc}") from None
    out = {}
    for key, value in _flatten(data):
        setting = BY_KEY.get(key)
        if setting is None:
            raise ParameterError(f"{where}: unknown setting {key!r} (known: {', '.join(BY_KEY)})")
        if not setting.valid(value):
            raise ParameterError(f"{where}: {key} must be {setting.expected}, not {value!r}")
        out[key] = os.path.expanduser(value) if key == "index" else value
    return out


def _env_value(setting: Setting) -> Any:
    """The setting's environment variable, checked as the file's values are; None if unset."""
    text = os.environ.get(setting.env, "")
    if not text:
        return None
    value: Any = text
    if setting.kind in (int, float):
        try:
            value = setting.kind(text)
        except ValueError:
            pass  # refused below, as the text it is
    if not setting.valid(value):
        raise ParameterError(f"${setting.env}: must be {setting.expected}, not {text!r}")
    return value


@dataclass
class Resolved:
    """Each setting's value from the environment or the file, and where it came from."""

    path: Path
    values: dict[str, tuple[Any, str]]

    @classmethod
    def load(cls) -> Resolved:
        path, named = config_path()
        from_file = load_config(path, named=named)
        values = {}
        for s in SETTINGS:
            env = _env_value(s)
            if env is not None:
                values[s.key] = (env, f"environment ${s.env}")
            elif s.key in from_file:
                values[s.key] = (from_file[s.key], f"config file {shown(path)}")
        return cls(path, values)


class Defaults(dict):  # type: ignore[type-arg]
    """click's ``default_map`` for the command at ``path``, answered as click asks: ``get`` of a
    parameter's name (its value from the environment or the file) or of a subcommand's name (the
    subcommand's own map).  Nothing walks the commands, so none is imported for it."""

    PARAMS = frozenset(s.param for s in SETTINGS)

    def __init__(self, resolved: Resolved, path: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.resolved = resolved
        self.path = path

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self.PARAMS:
            return Defaults(self.resolved, (*self.path, name))
        command = " ".join(self.path)
        for s in SETTINGS:
            if s.param == name and s.applies(command) and s.key in self.resolved.values:
                return self.resolved.values[s.key][0]
        return default

    def __contains__(self, name: object) -> bool:  # click asks this of parameters only
        return name in self.PARAMS and self.get(str(name), _MISSING) is not _MISSING

    def __getitem__(self, name: str) -> Any:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            raise KeyError(name)
        return value


_MISSING = object()


def effective(resolved: Resolved, ctx: click.Context) -> list[dict[str, Any]]:
    """Each setting's value and where it comes from (environment, file or built-in default),
    as ``audiolsh config`` shows them."""
    root = ctx.find_root()
    group = root.command
    assert isinstance(group, click.Group)
    rows = []
    for s in SETTINGS:
        if s.key in resolved.values:
            value, source = resolved.values[s.key]
        else:
            options = [p for name in (s.commands or ("index", "identify"))
                       for p in getattr(group.get_command(root, name), "params", []) if p.name == s.param]
            value = options[0].default if options and not callable(options[0].default) else None
            value = s.none_means if value is None else value
            source = "built-in default"
        rows.append({"setting": s.key, "value": value, "source": source, "env": f"${s.env}", "what": s.what})
    return rows
