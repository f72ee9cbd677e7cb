"""`audiolsh serve`: settings from options, the URL printed, loopback by default."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import audiolsh.cli.web_cmds  # noqa: F401  (registers `serve`)
from audiolsh.cli import cli
from audiolsh.errors import ParameterError
from audiolsh.web.settings import Settings


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port this test listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_serve_accepts_at_once_and_builds_the_app_behind(web_corpus: Any, monkeypatch: pytest.MonkeyPatch,
                                                         free_port: int) -> None:
    import uvicorn
    from fastapi.testclient import TestClient

    from audiolsh.web.startup import Startup

    runs: list[Any] = []

    def run(server: Any) -> None:  # uvicorn's lifespan, then one request, without a socket
        runs.append(server.config)
        with TestClient(server.config.app) as client:
            assert server.config.app.settled.wait(60)
            assert client.get("/health").json()["status"] == "ok"

    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = CliRunner().invoke(cli, ["serve", "--index", str(web_corpus.library), "--port", str(free_port),
                                      "--max-upload-mb", "5", "--workers", "1", "--max-queue", "3",
                                      "--no-warm-up", "--no-page-in"])
    assert result.exit_code == 0, result.output
    assert f"http://127.0.0.1:{free_port}/" in result.output and "serving 4 tracks" in result.output
    (config,) = runs
    assert config.host == "127.0.0.1" and config.port == free_port and isinstance(config.app, Startup)
    settings = config.app.settings
    assert settings.max_upload_bytes == 5 * 1024 * 1024 and settings.workers == 1
    assert settings.max_queue == 3 and not settings.warm_up and not settings.page_in
    assert config.app.app.debug is False


def test_serve_warns_off_loopback(web_corpus: Any, monkeypatch: pytest.MonkeyPatch, free_port: int) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda server: None)
    result = CliRunner().invoke(cli, ["serve", "--index", str(web_corpus.library), "--host", "0.0.0.0",
                                      "--port", str(free_port), "--no-warm-up"])
    assert result.exit_code == 0 and "warning" in result.output


def test_serve_on_a_busy_port_says_so_in_one_line(web_corpus: Any, busy_port: int) -> None:
    # A real process (the exit status and stderr a user sees), on a port this test holds.
    proc = subprocess.run([sys.executable, "-m", "audiolsh", "serve", "--index", str(web_corpus.library),
                           "--port", str(busy_port), "--no-warm-up"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: port {busy_port} on 127.0.0.1 is in use;"
                                   " choose another with --port")
    assert proc.stdout == ""


def test_serve_on_an_address_not_of_this_machine(web_corpus: Any, free_port: int) -> None:
    result = CliRunner().invoke(cli, ["serve", "--index", str(web_corpus.library), "--host", "192.0.2.1",
                                      "--port", str(free_port)])
    assert result.exit_code == 2 and "192.0.2.1 is not an address of this machine" in result.output


def test_serve_without_a_library_is_a_clear_error(tmp_path: Any, free_port: int) -> None:
    """The server starts, finds no library behind it, stops and says so: exit 2, one line."""
    result = CliRunner().invoke(cli, ["serve", "--index", str(tmp_path / "nothing"),
                                      "--port", str(free_port)])
    assert result.exit_code == 2 and "no music library" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_settings_defaults_are_documented() -> None:
    described = {d["name"]: d for d in Settings.describe()}
    assert described["host"]["default"] == "127.0.0.1"
    assert described["max_upload_bytes"]["default"] == 50 * 1024 * 1024
    assert all(d["help"] for d in described.values())
    assert described["max_queue"]["default"] >= 2  # twice the cores
    with pytest.raises(ParameterError, match="workers"):
        Settings(index_path="x", workers=0)
    assert Settings(index_path="x", host="::1").url == "http://[::1]:8000/"
    assert not Settings(index_path="x", host="0.0.0.0").is_loopback


@pytest.mark.parametrize(("command", "url"), [
    (["identify"], "/api/identify"),
    (["similar", "--by", "timbre", "-k", "3"], "/api/similar?by=timbre&k=3"),
    (["identify", "--segments"], "/api/segments"),
    (["similar", "-k", "1", "--worst"], "/api/similar?k=1&worst=true"),  # combined, least similar
    (["similar", "-k", "1", "--include-self"], "/api/similar?k=1&include_self=true"),
])
def test_cli_jsonl_and_api_answer_the_same_object(client: Any, web_corpus: Any, tmp_path: Any,
                                                  command: list[str], url: str) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(web_corpus.clip("delta.wav", offset_s=15.0))
    result = CliRunner().invoke(cli, [*command, str(clip), "--index", str(web_corpus.library),
                                      "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.output.strip().splitlines()[-1])
    from_api = client.post(url, files={"file": ("clip.wav", clip.read_bytes())}).json()
    assert set(from_cli) == set(from_api)
    for record in (from_cli, from_api):
        del record["elapsed_ms"], record["query"]
    assert from_cli == from_api


def test_cli_clusters_and_the_library_page_number_groups_alike(client: Any, web_corpus: Any) -> None:
    page = client.app.state.service.overview()
    assert page["cluster_by"] == "timbre" and page["groups"]
    on_page = {row["track_id"]: row["group"] for row in page["tracks"]}
    result = CliRunner().invoke(cli, ["clusters", "--by", "timbre", "-n", str(len(page["groups"])),
                                      "--index", str(web_corpus.library), "--format", "json"])
    assert result.exit_code == 0, result.output
    from_cli = {m["track_id"]: g["cluster"] for g in json.loads(result.stdout) for m in g["members"]}
    assert from_cli == on_page and min(from_cli.values()) == 1
