"""What a track is called: its tags (artist, title, album, year, read with mutagen at index
time) and the names shown for it.

A track's tags live in its catalogue row's ``meta["tags"]`` (library format 7): ``{}`` when the
file has none, absent when the track was indexed before tags were read (the next ``index`` run
over the file reads them).  A track's name is "Artist - Title", the title alone, or (no title
tag) its file name; tables show paths relative to the folder the track was indexed from.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from audiolsh.errors import ParameterError

log = logging.getLogger(__name__)

TAG_FIELDS = ("artist", "title", "album", "year")
#: Longer values are cut: a tag is a name, not a document (a hostile file may hold megabytes).
MAX_TAG_CHARS = 200
#: Tag keys by field: mutagen's easy keys (ID3 via EasyID3, MP4, Vorbis comments of Ogg/FLAC),
#: then ID3 frames (WAV and AIFF carry plain ID3).
_EASY_KEYS = {"artist": ("artist", "albumartist"), "title": ("title",), "album": ("album",),
              "year": ("date", "originaldate")}
_ID3_FRAMES = {"artist": ("TPE1", "TPE2"), "title": ("TIT2",), "album": ("TALB",),
               "year": ("TDRC", "TDOR")}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")
#: How many candidates an ambiguous --track lists.
SHOWN_CANDIDATES = 5


def _clean(value: object) -> str | None:
    """A tag value as text: control characters out, UTF-8 read as Latin-1 repaired (a common
    ID3v2.3 mistake: "BjÃ¶rk"), cut to :data:`MAX_TAG_CHARS`; None when nothing is left."""
    text = str(value)
    try:
        repaired = text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        repaired = text
    text = " ".join(_CONTROL.sub(" ", repaired).split())[:MAX_TAG_CHARS].strip()
    return text or None


def _year(values: Sequence[str]) -> int | None:
    for v in values:
        found = _YEAR.search(v)
        if found and 1000 <= int(found.group(1)) <= 2999:
            return int(found.group(1))
    return None


def _values(tags: Any, field: str) -> list[str]:
    from mutagen.id3 import ID3

    out: list[str] = []
    if isinstance(tags, ID3):
        for frame_id in _ID3_FRAMES[field]:
            out += [str(t) for frame in tags.getall(frame_id) for t in frame.text]
            if out:
                break
        return out
    for key in _EASY_KEYS[field]:
        value = tags.get(key)
        if value:
            return [str(v) for v in (value if isinstance(value, list) else [value])]
    return out


def read_tags(path: str | os.PathLike[str]) -> dict[str, str | int]:
    """The artist, title, album and year a file's tags give (only those found).  Never raises:
    a file mutagen cannot read, odd encodings or no tags give what could be read, or ``{}``."""
    try:
        import mutagen

        audio = mutagen.File(path, easy=True)
        tags = None if audio is None else audio.tags
        if tags is None:
            return {}
        out: dict[str, str | int] = {}
        for field in TAG_FIELDS:
            values = [c for c in (_clean(v) for v in _values(tags, field)) if c]
            if field == "year":
                year = _year(values)
                if year is not None:
                    out[field] = year
            elif values:
                out[field] = values[0]
        return out
    except Exception as exc:  # a broken tag must never stop indexing: the file name stands in
        log.debug("%s: tags unreadable (%s: %s)", path, type(exc).__name__, exc)
        return {}


def track_tags(track: Any) -> dict[str, Any]:
    """The tags stored with a catalogue track (``{}``: none, or read before tags were kept)."""
    meta = getattr(track, "meta", None)
    tags = meta.get("tags") if isinstance(meta, dict) else None
    return {k: tags[k] for k in TAG_FIELDS if k in tags} if isinstance(tags, dict) else {}


def has_tags_read(track: Any) -> bool:
    """True when the track's tags were read at index time (even if the file had none)."""
    meta = getattr(track, "meta", None)
    return isinstance(meta, dict) and isinstance(meta.get("tags"), dict)


def display_name(title: str, artist: str | None) -> str:
    """A record's name: "Artist - Title", or its title (the file name when untagged)."""
    return f"{artist} - {title}" if artist else title


def record_fields(track: Any, path: str, *, described: bool = False) -> dict[str, Any]:
    """``title`` (the tag, else the file name) and ``artist`` (None when untagged) of a record;
    ``described`` adds ``album`` and ``year`` (None when untagged)."""
    tags = track_tags(track) if track is not None else {}
    out: dict[str, Any] = {"title": tags.get("title") or os.path.basename(path),
                           "artist": tags.get("artist")}
    if described:
        out["album"] = tags.get("album")
        out["year"] = tags.get("year")
    return out


def track_name(track: Any) -> str:
    """"Artist - Title" from a catalogue track's tags, else its file name."""
    return display_name(**record_fields(track, track.path))


@dataclass(frozen=True)
class Names:
    """Tracks' names and short paths: paths relative to the folder each was indexed from
    (the library's roots, the longest that holds it)."""

    roots: tuple[str, ...]

    @classmethod
    def of(cls, roots: Iterable[str], paths: Sequence[str] = ()) -> Names:
        """From the recorded roots; tracks under none of them (a format-6 library recorded
        none) are shown relative to the folder they share."""
        names = cls(tuple(sorted({r.rstrip(os.sep) or os.sep for r in roots}, key=len, reverse=True)))
        outside = [p for p in paths if names.relative(p) == p]
        shared = shared_folder(outside) if outside else ""
        return cls((*names.roots, shared)) if shared else names

    def relative(self, path: str) -> str:
        """``path`` relative to the deepest root holding it (as it is when none does)."""
        for root in self.roots:
            prefix = root if root.endswith(os.sep) else root + os.sep
            if path.startswith(prefix) and len(path) > len(prefix):
                return path[len(prefix):]
        return path

    def of_track(self, track: Any) -> str:
        """The track's name (``track_name``)."""
        return track_name(track)

    def label(self, track: Any) -> str:
        """The name, or for a track without a title tag its relative path (which tells files of
        one name apart)."""
        return self.of_track(track) if track_tags(track).get("title") else self.relative(track.path)


def shared_folder(paths: Sequence[str]) -> str:
    """The deepest folder holding every path ("" when they share none)."""
    try:
        root = os.path.commonpath(list(paths))
    except ValueError:  # relative and absolute mixed
        return ""
    return os.path.dirname(root) if root in paths else root


def root_of(path: str | os.PathLike[str]) -> str:
    """The folder a path given to ``index`` names: itself, or a file's folder; absolute."""
    p = os.path.abspath(path)
    return p if os.path.isdir(p) else os.path.dirname(p)


def match_tracks(tracks: Sequence[Any], names: Names, query: str) -> list[Any]:
    """The tracks ``query`` names: the track of that id, else those of that path (as indexed,
    absolute, or relative to the folder indexed), else those with the query as a
    case-insensitive part of their artist, title or file name."""
    text = query.strip()
    if text.isdigit():
        by_id = [t for t in tracks if t.id == int(text)]
        if by_id:
            return by_id
    paths = {text, os.path.abspath(text)}
    try:
        paths.add(os.path.realpath(text))
    except (OSError, RuntimeError):  # a link loop: not a path any track has
        pass
    by_path = [t for t in tracks if t.path in paths or names.relative(t.path) == text]
    needle = text.casefold()
    return by_path or [t for t in tracks
                       if needle and any(needle in v.casefold() for v in _searchable(t, names))]


def find_track(tracks: Sequence[Any], names: Names, query: str) -> Any:
    """The one track ``query`` names (``match_tracks``); ParameterError when none or several
    match (the message lists a few, with their ids)."""
    found = match_tracks(tracks, names, query)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ParameterError(f"--track {query!r}: no track has that id, path or name"
                             " (`audiolsh info --tracks` lists them)")
    raise ambiguous("--track", query, found, names)


def ambiguous(option: str, query: str, found: Sequence[Any], names: Names) -> ParameterError:
    """One line: the query matches several tracks, a few of them listed with their ids."""
    listed = "; ".join(f"{t.id}: {names.label(t)}" for t in found[:SHOWN_CANDIDATES])
    more = f"; and {len(found) - SHOWN_CANDIDATES} more" if len(found) > SHOWN_CANDIDATES else ""
    return ParameterError(f"{option} {query!r} matches {len(found)} tracks ({listed}{more});"
                          " give its id or more of the name")


def _searchable(track: Any, names: Names) -> list[str]:
    tags = track_tags(track)
    return [str(tags.get("artist", "")), str(tags.get("title", "")), os.path.basename(track.path),
            names.of_track(track)]
