"""index, identify, similar, nearest, clusters: music files in, answers out."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape

from audiolsh.audio.decode import has_audio
from audiolsh.cli import EXIT_ERROR, cli
from audiolsh.cli.inputs import ClipInputs, clip_inputs, expand_lists, say_problem
from audiolsh.cli.options import Finite, index_option, seconds
from audiolsh.cli.output import emit_object, emit_records, err_console, format_option, track_columns
from audiolsh.cli.progress import FileProgress
from audiolsh.errors import AudioError, AudiolshError, ParameterError
from audiolsh.features import normalisation as wccn
from audiolsh.files import shown
from audiolsh.library import (
    DEFAULT_MODES,
    FIRST_BATCH,
    HOP_S,
    MAX_DURATION_S,
    MIN_DURATION_S,
    MODES,
    SAMPLE_RATE,
    WINDOW_S,
    IngestReport,
    Library,
    analyse,
    index_audio,
)
from audiolsh.library.locations import check_library_location
from audiolsh.library.tags import find_track
from audiolsh.query.identify import MIN_CLIP_S
from audiolsh.query.nearest import nearest_passages
from audiolsh.query.records import identify_record, named, segment_record, similar_record

MAX_CLIP_S = 600.0
WARM_UP_S = 6.0
WARM_UP_SR = 44100
Q = TypeVar("Q")
log = logging.getLogger(__name__)


def _modes(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _warn_kept_settings(library: Library, **given: object) -> None:
    """An existing library keeps the settings it was built with: say so when the command line
    asked for others."""
    ctx = click.get_current_context()
    for name, value in given.items():
        key = {"window": "window_s", "hop": "hop_s"}.get(name, name)
        kept = getattr(library.config, key)
        if ctx.get_parameter_source(key) == click.core.ParameterSource.COMMANDLINE and kept != value:
            err_console.print(f"[yellow]{library.path}: the library keeps --{name} {kept}"
                              f" (it was built with it); {value} applies to new libraries only[/]",
                              highlight=False)


@cli.command("index")
@index_option
@click.argument("paths", nargs=-1, required=True)
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Parallel decoding processes, and threads reading the content hashes"
                   " (default: all cores).")
@click.option("--commit-every", type=click.IntRange(min=1), default=8, show_default=True,
              help="Files per commit; an interrupted run keeps every committed file. The first"
                   f" commit into an empty library waits for {FIRST_BATCH} files: its statistics"
                   " come from them.")
@click.option("--modes", default=",".join(DEFAULT_MODES), show_default=True,
              help=f"What to extract, comma-separated, from {', '.join(MODES)} (new library only).")
@click.option("--window", "window_s", type=float, default=WINDOW_S, show_default=True,
              help="Excerpt window for rhythm, timbre, chroma and peaks (s; new library only).")
@click.option("--hop", "hop_s", type=float, default=HOP_S, show_default=True,
              help="Hop between excerpt windows (s; new library only).")
@click.option("--normalisation", type=click.Choice(wccn.NAMES), default=wccn.DEFAULT, show_default=True,
              help="Learned within-track normalisation of the rhythm and timbre vectors, or none"
                   " for plain standardised cosine (new library only).")
@click.option("--max-duration", "max_duration_s", type=seconds(0, low_open=True),
              default=MAX_DURATION_S, show_default=True,
              help="Refuse a file longer than this (s); files are analysed in blocks, so memory"
                   " does not grow with the length.")
@format_option
def index_cmd(index_path: str, paths: tuple[str, ...], workers: int | None, commit_every: int,
              modes: str, window_s: float, hop_s: float, normalisation: str, max_duration_s: float,
              fmt: str) -> None:
    """Index audio files, folders (recursively) and @lists of them (one path a line), every mode
    from one decode per file.

    Files already in the library (same content) are skipped, so re-running resumes. The
    summary goes to stderr; --format json|jsonl|csv also prints every file's outcome on stdout.
    """
    t0 = time.perf_counter()
    given = expand_lists(paths, check_args=True)
    for folder in [p for p in given.items if os.path.isdir(p) and not has_audio(p)]:
        given.problem(f"{shown(folder)}: no audio files in this folder")
        given.items.remove(folder)
    if not given.items:  # each missing path or folder without audio is said; no library is created
        sys.exit(EXIT_ERROR)
    check_library_location(index_path)
    with Library.open_or_create(index_path, modes=_modes(modes), window_s=window_s,
                                hop_s=hop_s, normalisation=normalisation) as library:
        _warn_kept_settings(library, window=window_s, hop=hop_s, normalisation=normalisation)
        with indexing_progress() as progress:
            report = index_audio(library, given.items, workers=workers, commit_every=commit_every,
                                 max_duration_s=max_duration_s, **progress)
        n_tracks = len(library)
    emit_ingest(report, fmt, index_path=index_path, n_tracks=n_tracks, elapsed_s=time.perf_counter() - t0,
                problems=given.problems)


def emit_ingest(report: IngestReport, fmt: str, *, index_path: str, n_tracks: int, elapsed_s: float,
                problems: int = 0) -> None:
    """What an ingest did: one summary line on stderr; with json, jsonl or csv every file's
    outcome on stdout; exit status 2 when a file failed."""
    tagged = f", tags read for {len(report.tagged)} indexed before" if report.tagged else ""
    err_console.print(
        f"{len(report.added)} added, {len(report.skipped)} already indexed{tagged},"
        f" {len(report.failed)} failed in {elapsed_s:.1f} s; library {index_path}: {n_tracks} tracks",
        highlight=False, markup=False,
    )
    if fmt != "table":
        files = ([{"path": p, "status": "added", "error": None} for p in report.added]
                 + [{"path": p, "status": "skipped", "error": None} for p in report.skipped]
                 + [{"path": p, "status": "failed", "error": e} for p, e in report.failed])
        summary = {"index": index_path, "n_tracks": n_tracks, "added": len(report.added),
                   "skipped": len(report.skipped), "failed": len(report.failed),
                   "elapsed_s": round(elapsed_s, 2), "files": files}
        emit_object(summary, fmt, flat_rows=files, table=lambda: None)
    if report.failed or problems:
        sys.exit(EXIT_ERROR)


@contextlib.contextmanager
def indexing_progress(verb: str = "indexed") -> Iterator[dict[str, Any]]:
    """Progress on stderr (a bar in a terminal, plain lines otherwise), as the ``on_file``,
    ``on_hashed``, ``on_plan`` and ``on_extracted`` of ``index_audio``: the files analysed
    (``verb``), and the content hashes read ahead of them while they come."""
    with FileProgress(verb) as progress:
        yield {"on_file": report_file, "on_hashed": progress.hashed, "on_plan": progress.set_total,
               "on_extracted": progress.extracted}


def report_file(path: str, status: str) -> None:
    """One line on stderr for a file ``index`` could not take (``failed: <message>``) or left out
    of a walked folder (``ignored: <problem>``: a FIFO, a device, a link loop)."""
    if status.startswith("failed"):
        err_console.print(f"[red]{escape(status)}[/]", highlight=False)
    elif status.startswith("ignored"):
        problem = status.partition(": ")[2]
        err_console.print(f"[yellow]{escape(shown(path))}: skipped, {escape(problem)}[/]", highlight=False)


def _load_clip(clip: Path, offset_s: float, duration_s: float | None,
               min_duration_s: float = MIN_DURATION_S, *, hint: str = "") -> Any:
    """A query clip (``hint``: what to do with one over ``MAX_CLIP_S``, said with the refusal)."""
    from audiolsh.audio import load

    try:
        return load(clip, sr=SAMPLE_RATE, offset_s=offset_s, duration_s=duration_s,
                    min_duration_s=min_duration_s, max_duration_s=MAX_CLIP_S)
    except AudioError as exc:
        if hint and "too long" in exc.problem:
            raise AudioError(exc.path, f"{exc.problem}; {hint}") from None
        raise


@contextlib.contextmanager
def _warm_up_clip() -> Iterator[Path]:
    """Clicks, a sweep and noise as a 44.1 kHz WAV, decoded, resampled and analysed as a real clip
    is (cheaper to make than ``synth.music``, and as good for loading everything a query uses)."""
    import soundfile as sf

    from audiolsh.audio import synth

    d, sr = WARM_UP_S, WARM_UP_SR
    y = (synth.clicks(bpm=120.0, duration_s=d, sr=sr) + synth.chirp(220.0, 1760.0, duration_s=d, sr=sr)
         + synth.white_noise(duration_s=d, sr=sr, seed=0, amplitude=0.1))
    with tempfile.TemporaryDirectory(prefix="audiolsh-warm-up-") as tmp:
        path = Path(tmp) / "warm-up.wav"
        sf.write(path, y / max(1.0, float(abs(y).max())), sr)
        yield path


def _warm_up(first: Q, work: Callable[[Q], object]) -> None:
    """Run ``work`` once, unreported, on a job like ``first`` (a synthetic clip for a file, the
    track itself for a track id): the imports, the kernels' loading and the indexes' opening
    that a process pays once land here, so each clip's ``elapsed_ms`` is what its query costs."""
    t0 = time.perf_counter()
    try:
        if isinstance(first, Path):
            with _warm_up_clip() as clip:
                work(clip)  # type: ignore[arg-type]
        else:
            work(first)
    except (AudiolshError, OSError) as exc:  # the real clips report theirs; no temporary folder
        log.info("warm-up: %s", exc)
    log.info("warmed up in %.2f s", time.perf_counter() - t0)


def _each_clip(clips: Sequence[Q], work: Callable[[Q], dict[str, Any]],
               inputs: ClipInputs | None = None) -> Iterator[tuple[Q, dict[str, Any] | None]]:
    """Run ``work`` on every clip (timed, after a warm-up); a bad clip is reported and the batch
    goes on."""
    if clips:
        _warm_up(clips[0], work)
    for clip in clips:
        t0 = time.perf_counter()
        try:
            record = work(clip)
        except AudiolshError as exc:
            message = inputs.message(exc) if inputs else str(exc)
            err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
            yield clip, None
            continue
        record["elapsed_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        yield clip, record


def emit_answers(records: list[dict[str, Any]], fmt: str, flat: list[dict[str, Any]], *, title: str,
                 failed: int, notes: Sequence[str] = ()) -> None:
    """The clips' answers (``notes``: lines above a table), then exit status 2 if a clip failed;
    when every clip failed only the errors are said (no empty table beside them)."""
    if records or not failed:
        emit_records(records, fmt, flat_rows=flat, title=title, notes=notes)
    if failed:
        sys.exit(EXIT_ERROR)


clip_options = [
    click.option("--offset", "offset_s", type=seconds(), default=0.0,
                 show_default=True, help="Where in each clip the analysed part starts (s)."),
    click.option("--duration", "duration_s", type=seconds(1.0), default=None,
                 help="Seconds of each clip analysed (default: all, up to 600; identify --segments: 3 h)."),
]


def with_clip_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(clip_options):
        f = opt(f)
    return f


@cli.command()
@index_option
@click.argument("clips", nargs=-1)
@click.option("--mic", "mic_s", type=Finite(MIN_CLIP_S, MAX_CLIP_S), default=None,
              metavar="SECONDS", help="Record a clip from the default input device (audiolsh[mic]).")
@click.option("--method", type=click.Choice(["landmarks", "chroma-vote", "minhash-peaks"]),
              default="landmarks", show_default=True, help="Landmark fingerprints, or a seed method.")
@click.option("--min-confidence", type=Finite(0.0, 1.0), default=None,
              help="Probability that the track is right below which a clip is 'no match' (landmarks;"
                   " default: the calibrated operating point; 0: always show the best candidate; a"
                   " seed method reads it as its --threshold).")
@click.option("--threshold", type=Finite(0.0, 1.0), default=None,
              help="Score below which a seed method's answer is 'no match': the share of the clip's"
                   " frames that agree (chroma-vote), the similarity (minhash-peaks); landmarks:"
                   " --min-confidence.")
@click.option("--segments", is_flag=True,
              help="Long recordings: report which track plays when (landmarks only).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check a weak candidate against its track's audio file, when this machine can read"
                   " it (landmarks; a clip of that passage correlates with it even in loud noise).")
@with_clip_options
@format_option
def identify(index_path: str, clips: tuple[str, ...], mic_s: float | None, method: str,
             min_confidence: float | None, threshold: float | None, segments: bool, verify: bool,
             offset_s: float, duration_s: float | None, fmt: str) -> None:
    """Which track each clip comes from, where in it the clip starts, and how sure we are.

    Any clip of 1 s or more is searched; confidence is the probability that the track is right.
    A clip without a confident match reads 'no match' with the reason; with --min-confidence 0
    the best candidate is always shown, flagged 'below threshold' when it is weak.

    CLIPS: audio files, folders, @lists of paths (one a line), or - for standard input."""
    from audiolsh.query.identify import check_method, identify_clip, identify_segments_file

    records: list[dict[str, Any]] = []
    flat: list[dict[str, Any]] = []
    failed = 0
    if not clips and mic_s is None:
        raise click.UsageError("give CLIPS (files, folders, @lists, - for stdin) or --mic SECONDS")
    # The library first: nobody records a clip for a library that is not there.
    with Library.open(index_path, readonly=True) as library, clip_inputs(clips, mic_s=mic_s) as inputs:
        check_method(library, method)
        if segments and method != "landmarks":
            raise ParameterError("--segments works with --method landmarks only")

        def work(clip: Path) -> dict[str, Any]:
            if segments:  # streamed: a recording of hours is never held whole
                found = identify_segments_file(library, clip, offset_s=offset_s, duration_s=duration_s,
                                               min_duration_s=MIN_CLIP_S, max_duration_s=MAX_DURATION_S,
                                               min_confidence=min_confidence)
                rows = [segment_record(start_s, end_s, m, offset_s=offset_s, library=library)
                        for start_s, end_s, m in found]
                return {"query": inputs.name(clip), "segments": rows}
            y, sr = _load_clip(clip, offset_s, duration_s, MIN_CLIP_S,
                               hint="--segments says which tracks a long recording plays,"
                                    " --offset and --duration take a part of it")
            m, reason = identify_clip(library, y, sr, method=method, threshold=threshold,
                                      min_confidence=min_confidence, name=clip, verify=verify)
            return identify_record(inputs.name(clip), m, library=library, reason=reason)

        names = library.names()
        for clip, record in _each_clip(inputs.paths, work, inputs):
            if record is None:
                failed += 1
                continue
            records.append(record)
            if segments:
                flat += [{"query": inputs.short(clip), "start_s": row["start_s"], "end_s": row["end_s"],
                          **track_columns(row, names, fmt), "track_id": row["track_id"],
                          "offset_s": row["offset_s"], "confidence": row["confidence"],
                          "matched": _matched(row["matched"], fmt)}
                         for row in record["segments"]]
            else:
                m = record["match"]
                found = track_columns(m, names, fmt, name_key="match", path_key="match") if m else {
                    "match": "no match"}
                m = m or {}
                flat.append({"query": inputs.short(clip), **found,
                             "offset_s": m.get("offset_s"), "confidence": m.get("confidence"),
                             "matched": _matched(m.get("matched"), fmt), "speed": m.get("speed"),
                             "pitch": m.get("pitch"), "also": _also(m.get("also")),
                             "reason": record.get("reason"), "elapsed_ms": record["elapsed_ms"]})
    if fmt == "table":  # these columns only when some clip has one: a plain answer stays narrow
        for key, plain in (("matched", {"yes", None}), ("pitch", {1.0, None}), ("also", {""}),
                           ("reason", {None})):
            if all(row.get(key) in plain for row in flat):
                for row in flat:
                    row.pop(key, None)
    emit_answers(records, fmt, flat, title="identification", failed=failed + inputs.problems)


def _also(others: list[dict[str, Any]] | None) -> str:
    """The other tracks holding the clip's audio, as one cell: "title at 12.34 s; ..."."""
    return "; ".join(f"{o['title']} at {o['offset_s']:.2f} s" for o in others or [])


def _matched(flag: bool | None, fmt: str) -> Any:
    """The matched flag: as is in csv, words in the table (a weak candidate stands out)."""
    if fmt != "table" or flag is None:
        return flag
    return "yes" if flag else "below threshold"


@cli.command()
@index_option
@click.argument("clips", nargs=-1)
@click.option("--track", "tracks", multiple=True, metavar="TRACK",
              help="Query with a track already in the library: its id, its path, or part of its"
                   " artist, title or file name (repeatable).")
@click.option("--by", type=click.Choice(["rhythm", "timbre", "chroma", "combined", "peaks"]),
              default="combined", show_default=True)
@click.option("--method", type=click.Choice(["vector", "vote", "minhash"]), default=None,
              help="chroma: vector (default) or vote (S1); peaks: minhash.")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--worst", is_flag=True, help="The least similar tracks of the whole collection (leaving"
                                             " out the k most similar).")
@click.option("--include-self", is_flag=True,
              help="List the clip's own track too (the track identification finds it in, or --track).")
@with_clip_options
@format_option
def similar(index_path: str, clips: tuple[str, ...], tracks: tuple[str, ...], by: str,
            method: str | None, k: int, worst: bool, include_self: bool, offset_s: float,
            duration_s: float | None, fmt: str) -> None:
    """Tracks that sound like each clip (or --track), by rhythm, timbre, chroma, peaks or combined
    (rhythm + timbre + peaks).

    A track's score is its best passage pair with the clip (least similar: its worst), as a
    percentile in [0, 1] among passage pairs of different tracks of the library; raw_score is
    the mode's own value.  The clip's own track is reported as its match and left out.

    CLIPS: audio files, folders, @lists of paths (one a line), or - for standard input."""
    from audiolsh.query.records import match_record
    from audiolsh.query.similar import check_query, own_track, stored_clip
    from audiolsh.query.similar import similar as run_similar

    if not clips and not tracks:
        raise click.UsageError("give CLIP files or --track TRACK")
    records: list[dict[str, Any]] = []
    flat: list[dict[str, Any]] = []
    notes: list[str] = []
    failed = 0
    with Library.open(index_path, readonly=True) as library, clip_inputs(clips) as inputs:
        mode = check_query(library, by, method)
        names = library.names()
        track_ids: list[int] = []
        for t in tracks:  # one that names no track (or several) is said; the others go on
            try:
                track_ids.append(find_track(library.tracks(), names, t).id)
            except ParameterError as exc:
                say_problem(str(exc))
                failed += 1
        how = method
        cfg = library.config
        modes = mode.needs

        def why_none_worst(record: dict[str, Any]) -> dict[str, Any]:
            if worst and not record["results"]:
                record["reason"] = (f"every other track is among its {k} most similar, which --worst"
                                    " leaves out: give a smaller -k")
            return record

        def work(clip: Path) -> dict[str, Any]:
            y, sr = _load_clip(clip, offset_s, duration_s, hint="--offset and --duration take a part of it")
            q = analyse(y, sr, modes=modes, window_s=cfg.window_s, hop_s=cfg.hop_s, path=inputs.name(clip))
            match = own_track(library, y, sr)
            own = () if match is None or include_self else (match.track_id,)
            found = run_similar(library, q, by=by, k=k, worst=worst, method=how, exclude=own)
            record = similar_record(inputs.name(clip), found, match=match_record(match, library),
                                    library=library)
            return why_none_worst(record)

        def work_track(tid: int) -> dict[str, Any]:
            q = stored_clip(library, tid, by=by, method=how)
            own = () if include_self else (tid,)
            found = run_similar(library, q, by=by, k=k, worst=worst, method=how, exclude=own)
            match = named({"path": q.path, "track_id": tid}, library)
            return why_none_worst({**similar_record(q.path, found, match=match, library=library),
                                   "track_id": tid})


        jobs: list[Path | int] = [*inputs.paths, *track_ids]
        for job, record in _each_clip(jobs, lambda j: work(j) if isinstance(j, Path) else work_track(j),
                                      inputs):
            if record is None:
                failed += 1
                continue
            records.append(record)
            name = inputs.short(job) if isinstance(job, Path) else names.label(library.track(job))
            if record["match"] is not None:
                own = library.track(int(record["match"]["track_id"]))
                shown_as = names.label(own) if own else names.relative(record["match"]["path"])
                notes.append(_own_track_note(name, record["match"], include_self, shown_as))
            if "reason" in record:
                notes.append(f"{name}: no track left: {record['reason']}")
            flat += [{"query": name, "rank": r["rank"], **track_columns(r, names, fmt), "score": r["score"],
                      "raw_score": r["raw_score"], "offset_s": r["offset_s"],
                      "query_offset_s": r["query_offset_s"]} for r in record["results"]]
    emit_answers(records, fmt, flat, title=f"{'least' if worst else 'most'} similar by {by}",
                 failed=failed + inputs.problems, notes=notes)


def _own_track_note(query: str, match: dict[str, Any], included: bool, name: str) -> str:
    """The line above the table naming the clip's own track (``name``: as the tables name it)."""
    at = f" at {match['offset_s']:.2f} s" if match.get("offset_s") is not None else ""
    kept = "listed too (--include-self)" if included else "left out (--include-self lists it)"
    return f"{query}: the match is {name}{at}; {kept}"


@cli.command()
@index_option
@click.argument("clips", nargs=-1, required=True)
@click.option("-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--offset", "offset_s", type=seconds(), default=0.0,
              show_default=True, help="Where in each clip the analysed part starts (s).")
@click.option("--duration", "duration_s", type=seconds(1.0), default=30.0,
              show_default=True, help="Seconds of each clip analysed.")
@format_option
def nearest(index_path: str, clips: tuple[str, ...], k: int, offset_s: float,
            duration_s: float, fmt: str) -> None:
    """The passages of the collection nearest to each clip (per-second embeddings, voting).

    CLIPS: audio files, folders, @lists of paths (one a line), or - for standard input."""
    records: list[dict[str, Any]] = []
    flat: list[dict[str, Any]] = []
    failed = 0
    with Library.open(index_path, readonly=True) as library, clip_inputs(clips) as inputs:
        library.mode("embedding")

        def work(clip: Path) -> dict[str, Any]:
            passages = nearest_passages(library, clip, k=k, offset_s=offset_s, duration_s=duration_s)
            return {"query": inputs.name(clip), "results": [
                named({"track_id": p.track_id, "path": p.path, "offset_s": p.offset_s,
                       "score": round(p.score, 4), "rank": r + 1}, library)
                for r, p in enumerate(passages)
            ]}

        names = library.names()
        for clip, record in _each_clip(inputs.paths, work, inputs):
            if record is None:
                failed += 1
                continue
            records.append(record)
            flat += [{"query": inputs.short(clip), **track_columns(res, names, fmt),
                      "offset_s": res["offset_s"], "score": res["score"], "rank": res["rank"]}
                     for res in record["results"]]
    emit_answers(records, fmt, flat, title="nearest passages", failed=failed + inputs.problems)
