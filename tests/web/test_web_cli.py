"""`audiolsh serve`: settings from options, the URL printed, loopback by default."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import audiolsh.cli.web_cmds  # noqa: F401  (registers `serve`)
from audiolsh.cli import cli
from audiolsh.errors import ParameterError
from audiolsh.web.settings import Settings


def test_serve_accepts_at_once_and_builds_the_app_behind(web_corpus: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
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
    result = CliRunner().invoke(cli, ["serve", "--index", str(web_corpus.library), "--port", "8765",
                                      "--max-upload-mb", "5", "--workers", "1", "--max-queue", "3",
                                      "--no-warm-up"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8765/" in result.output and "serving 4 tracks" in result.output
    (config,) = runs
    assert config.host == "127.0.0.1" and config.port == 8765 and isinstance(config.app, Startup)
    settings = config.app.settings
    assert settings.max_upload_bytes == 5 * 1024 * 1024 and settings.workers == 1
    assert settings.max_queue == 3 and not settings.warm_up
    assert config.app.app.debug is False


def test_serve_warns_off_loopback(web_corpus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda server: None)
    result = CliRunner().invoke(cli, ["serve", "--index", str(web_corpus.library), "--host", "0.0.0.0",
                                      "--no-warm-up"])
    assert result.exit_code == 0 and "warning" in result.output


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
])
def test_cli_jsonl_and_api_answer_the_same_object(client: Any, web_corpus: Any, tmp_path: Any,
                                                  command: list[str], url: str) -> None:
    import json

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
