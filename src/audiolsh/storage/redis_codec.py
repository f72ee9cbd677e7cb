"""Locations, connections, errors and value encodings of the Redis backend (``storage.redis``).

    redis://[:password@]host:port/db?prefix=NAME     rediss:// for TLS
    unix:///path/redis.sock?db=N&prefix=NAME

Besides redis-py's own parameters (``socket_timeout=``, ...) a location may say ``lease=SECONDS``:
how long the write lock of a writer opened on it outlives the writer if it dies (default 30 s).
"""

from __future__ import annotations

import functools
import io
import json
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError, StorageUnavailable
from audiolsh.files import ast_race_retry
from audiolsh.storage.base import Item, Track, dumps

try:
    import redis as _redis
except ImportError:  # pragma: no cover - exercised without the extra
    _redis = None  # type: ignore[assignment]

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PREFIX = "audiolsh"
MODES = ("shared", "remote")
#: Seconds the write lock outlives a writer that died, unless the location says ``lease=``.
DEFAULT_LEASE_S = 30.0
_LOC = struct.Struct("<qd")

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------------------ locations


def parse(location: str) -> tuple[str, str, str]:
    """(url for redis-py without our parameters, key prefix, location for messages)."""
    parts = urlsplit(location)
    if parts.scheme not in SCHEMES:
        raise ParameterError(f"{location!r}: not a Redis location (redis://, rediss://, unix://)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest = []
    for name, value in query:
        if name == "prefix":
            prefix = value
        elif name == "lease":
            _lease(location, value)  # ours, not redis-py's
        elif name != "mode":  # ours too
            rest.append((name, value))
    if not prefix:
        raise ParameterError(f"{describe(location)}: an empty prefix (?prefix=NAME)")
    if parts.scheme == "unix":
        if not parts.path:
            raise ParameterError(f"{describe(location)}: a unix location needs a socket path"
                                 " (unix:///path/redis.sock)")
        db = dict(rest).get("db", "0")
    else:
        db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ParameterError(f"{describe(location)}: the Redis database must be a number"
                             f" (redis://host:port/DB?prefix=NAME), not {db!r}")
    return _unsplit(parts.scheme, parts.netloc, parts.path, urlencode(rest)), prefix, describe(location)


def location_mode(location: str) -> str | None:
    """The ``?mode=`` a location asks for: "shared" (segments copied into every reader),
    "remote" (buckets and rows stay in Redis, queries probe them there), or None (as stored)."""
    values = _param(location, "mode")
    if not values:
        return None
    if len(values) > 1 or values[0] not in MODES:
        raise ParameterError(f"{describe(location)}: mode must be one of {list(MODES)},"
                             f" not {values[-1]!r}")
    return values[0]


def lease_of(location: str) -> float:
    """The write lock's lease of a location: its ``lease=SECONDS``, or :data:`DEFAULT_LEASE_S`."""
    given = _param(location, "lease")
    return _lease(location, given[-1]) if given else DEFAULT_LEASE_S


def _param(location: str, name: str) -> list[str]:
    return [v for k, v in parse_qsl(urlsplit(location).query, keep_blank_values=True) if k == name]


def _lease(location: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ParameterError(f"{describe(location)}: lease must be a number of seconds > 0"
                             f" (?lease=30), not {value!r}")
    return seconds


def _unsplit(scheme: str, netloc: str, path: str, query: str) -> str:
    """A URL again; unlike urlunsplit, ``unix:///path`` keeps its empty host."""
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def describe(location: str) -> str:
    """The location without its password."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return _unsplit(parts.scheme, netloc, parts.path, parts.query)


def join(location: str, name: str) -> str:
    """``name`` inside ``location``: appended to its prefix (other parameters kept)."""
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    query = [(k, v) for k, v in query if k != "prefix"]
    query.append(("prefix", f"{prefix.rstrip('/')}/{name}"))
    return _unsplit(parts.scheme, parts.netloc, parts.path, urlencode(query, safe="/"))


def parent(location: str) -> tuple[str, str] | None:
    """The inverse of :func:`join`: (the location whose prefix holds this one, the last name),
    or None for a prefix of one name."""
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX).rstrip("/")
    head, sep, name = prefix.rpartition("/")
    if not sep or not head or not name:
        return None
    query = [(k, v) for k, v in query if k != "prefix"] + [("prefix", head)]
    return _unsplit(parts.scheme, parts.netloc, parts.path, urlencode(query, safe="/")), name


def _client(url: str) -> Any:
    if _redis is None:
        raise ParameterError("a redis:// or unix:// location needs redis-py:"
                             " pip install 'audiolsh[redis]'")
    params = dict(parse_qsl(urlsplit(url).query))
    kwargs: dict[str, Any] = {}
    if "socket_timeout" not in params:
        kwargs["socket_timeout"] = 120.0  # big segments take a while on a slow link
    if "socket_connect_timeout" not in params:
        kwargs["socket_connect_timeout"] = 5.0
    return _redis.Redis.from_url(url, **kwargs)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "no such file" in low:
        return "no socket there"
    if "timeout" in low or "timed out" in low:
        return "timed out"
    return text or type(exc).__name__


def _unreachable(where: str, exc: BaseException) -> IndexFormatError:
    if _redis is not None and isinstance(exc, _redis.exceptions.AuthenticationError):
        return IndexFormatError(f"cannot use Redis at {where}: authentication failed")
    if _redis is not None and isinstance(exc, (_redis.exceptions.ConnectionError,
                                               _redis.exceptions.TimeoutError)):
        # BusyLoadingError (a restarted server still loading its data) is one of these too.
        return StorageUnavailable(f"cannot reach Redis at {where}: {_reason(exc)}")
    return IndexFormatError(f"Redis at {where}: {' '.join(str(exc).split())}")


def _redis_errors() -> tuple[type[BaseException], ...]:
    return () if _redis is None else (_redis.exceptions.RedisError,)


def _guard(fn: F) -> F:
    """Redis errors of a method as one IndexFormatError naming the location."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except _redis_errors() as exc:
            raise _unreachable(self.location, exc) from None

    return wrapper  # type: ignore[return-value]


def storage_exists(location: str) -> bool:
    url, prefix, where = parse(location)
    client = _client(url)
    try:
        return bool(client.exists(f"{prefix}:version"))
    except _redis_errors() as exc:
        raise _unreachable(where, exc) from None
    finally:
        client.close()


# ------------------------------------------------------------------------------ arrays


def _npy_bytes(array: np.ndarray) -> memoryview:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getbuffer()


def _from_npy(data: bytes, where: str) -> np.ndarray:
    """A read-only array over ``data`` (no copy for the common header versions)."""
    return ast_race_retry(lambda: _parse_npy(data, where))


def _parse_npy(data: bytes, where: str) -> np.ndarray:
    bio = io.BytesIO(data)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(bio)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(bio)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(bio)
        else:
            array = np.load(io.BytesIO(data), allow_pickle=False)
            array.flags.writeable = False
            return array  # type: ignore[no-any-return]
    except ValueError as exc:
        raise IndexFormatError(f"{where}: unreadable segment array ({exc})") from exc
    if dtype.hasobject:
        raise IndexFormatError(f"{where}: a segment array of Python objects")
    count = math.prod(shape)
    if count == 0:
        array = np.empty(shape, dtype)
        array.flags.writeable = False
        return array
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=bio.tell())
    return flat.reshape(shape, order="F" if fortran else "C")


def _pack_ids(ids: set[int] | Sequence[int]) -> bytes:
    return np.array(sorted(ids), dtype="<i8").tobytes()


def _unpack_ids(value: bytes | None) -> np.ndarray:
    if not value:
        return np.zeros(0, np.int64)
    return np.frombuffer(value, dtype="<i8").astype(np.int64)


def _item_value(key: str, track_id: int, offset: float, meta: dict[str, Any] | None) -> bytes:
    return _LOC.pack(track_id, offset) + dumps([key, meta]).encode()


def _item(item_id: int, value: bytes) -> Item:
    tid, off = _LOC.unpack_from(value)
    key, meta = json.loads(value[_LOC.size:])
    return Item(item_id, key, None if tid < 0 else tid, None if off != off else off, meta)


def _track(data: bytes) -> Track:
    d = json.loads(data)
    return Track(d["id"], d["path"], d["content_hash"], d["duration_s"], d["added_at"],
                 d["n_items"], d.get("kind", "audio"), d.get("meta") or {})


# ------------------------------------------------------------------------------ writer
