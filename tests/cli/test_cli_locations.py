"""Every --index takes a storage location: a directory, memory://name, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from audiolsh.cli import cli


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_unknown_and_empty_locations_are_refused_in_one_line(tmp_path: Path) -> None:
    code, _, err = _run("info", "--index", "http://127.0.0.1/music")
    assert code == 2 and "unknown storage scheme 'http'" in err and "redis://" in err
    code, _, err = _run("similar", "--track", "1", "--index", "memory://nothing")
    assert code == 2 and "memory://nothing" in err and "no" in err
    code, _, err = _run("info", "--index", str(tmp_path / "absent"))
    assert code == 2 and "absent" in err


def test_an_index_location_that_is_a_file_or_empty_is_refused_in_words(tmp_path: Path) -> None:
    """A file where the index folder should be (a clip given as --index by mistake), or a path
    inside one, or nothing: one line saying so (it was a raw errno: 'File exists', 'Not a
    directory'), and the file is left as it was."""
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    np.save(tmp_path / "v.npy", np.ones((4, 3), np.float32))
    for args in (["index", str(tmp_path)], ["vectors", "add", str(tmp_path / "v.npy")], ["info"]):
        code, _, err = _run(*args, "--index", str(clip))
        assert code == 2 and f"{clip}: this is not a folder; give --index a folder" in err, err
        code, _, err = _run(*args, "--index", str(clip / "idx"))
        assert code == 2 and f"this is not a folder ({clip} is a file)" in err and "Errno" not in err
        code, _, err = _run(*args, "--index", "")
        assert code == 2 and "the index location is empty" in err
    assert clip.read_bytes() == b"RIFF"


def test_vectors_at_a_file_url_and_a_directory_are_one_index(tmp_path: Path) -> None:
    X = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    code, _, err = _run("vectors", "add", str(tmp_path / "x.npy"), "--index", f"file://{tmp_path}/vec")
    assert code == 0, err
    code, out, err = _run("vectors", "query", str(tmp_path / "x.npy"), "--index", str(tmp_path / "vec"),
                          "-k", "1", "--format", "jsonl")
    assert code == 0, err
    assert out.count("\n") == 300


def test_an_unreachable_redis_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for where in ("redis://127.0.0.1:1/x?prefix=a", "redis://127.0.0.1:1/0?prefix=a"):
        code, out, err = _run("info", "--index", where)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and where in err and "Traceback" not in err
    assert "cannot reach Redis at redis://127.0.0.1:1/0?prefix=a" in err and "connection refused" in err
    code, _, err = _run("similar", "--track", "1", "--index", "redis://:s3cret@127.0.0.1:1/0?prefix=a")
    assert code == 2 and "s3cret" not in err and "cannot reach Redis" in err
    # named as given, not as the catalogue looked for inside it (prefix=a/tracks)
    np.save(tmp_path / "v.npy", np.ones((2, 2), np.float32))
    for args in (["info"], ["remove", "1"], ["vectors", "add", str(tmp_path / "v.npy")]):
        code, _, err = _run(*args, "--index", "redis://127.0.0.1:1/0?prefix=a")
        assert code == 2 and err.strip() == "error: cannot reach Redis at redis://127.0.0.1:1/0?prefix=a:" \
            " connection refused", err


def test_a_library_in_redis_from_the_command_line(tmp_path: Path, redis_url: str) -> None:
    X = np.random.default_rng(1).standard_normal((200, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    code, _, err = _run("vectors", "add", str(tmp_path / "x.npy"), "--index", redis_url)
    assert code == 0, err
    code, out, err = _run("vectors", "query", str(tmp_path / "x.npy"), "--index", redis_url, "-k", "1",
                          "--format", "jsonl")
    assert code == 0, err
    assert out.count("\n") == 200
    code, out, err = _run("info", "--index", redis_url)
    assert code == 0, err


def test_a_remote_probe_index_from_the_command_line(tmp_path: Path, redis_url: str) -> None:
    import json

    X = np.random.default_rng(2).standard_normal((3000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "q.npy", X[:5])
    remote = redis_url + "&mode=remote"
    code, _, err = _run("vectors", "add", str(tmp_path / "x.npy"), "--index", remote)
    assert code == 0, err
    answers = []
    for extra in ([], ["--rerank", "50"]):  # the mode is kept with the index
        code, out, err = _run("vectors", "query", str(tmp_path / "q.npy"), "--index", redis_url,
                              "-k", "1", "--format", "jsonl", *extra)
        assert code == 0, err
        answers.append([json.loads(line)["results"][0]["distance"] for line in out.splitlines()])
    assert answers[0] == answers[1] == [0.0] * 5
    code, _, err = _run("info", "--index", redis_url + "&mode=shared")
    assert code == 2 and "made in remote mode" in err and err.count("\n") == 1
