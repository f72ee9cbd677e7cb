"""serve: the web app and REST API on a library."""

from __future__ import annotations

import errno
import socket
from typing import Any

import click

from audiolsh.cli import cli
from audiolsh.cli.options import Finite, index_option, seconds
from audiolsh.cli.output import err_console
from audiolsh.errors import ParameterError
from audiolsh.web.settings import Settings

SERVED_MIN_CLIP_S = Settings.min_clip_s  # the settings' own floor of --max-analysis


@cli.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback: only this machine can connect).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=Finite(min=0.001), default=50.0, show_default=True,
              help="Largest upload accepted.")
@click.option("--max-analysis", "max_analysis_s", type=seconds(SERVED_MIN_CLIP_S), default=30.0,
              show_default=True, help="Seconds of each upload analysed, from its start (at least the"
                                      " shortest upload the similarity lists take).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Queries analysed at once (one read-only library handle each).")
@click.option("--max-queue", type=click.IntRange(0, 1024), default=None,
              help="Uploads that may wait for a worker; one more is refused at once with 503 and a"
                   " Retry-After header, so latency stays bounded under load.  [default: twice the"
                   " cores]")
@click.option("--no-warm-up", is_flag=True, help="Skip the synthetic query per worker at startup.")
@click.option("--no-page-in", is_flag=True,
              help="Do not read the library's index files into memory in the background at startup.")
def serve(index_path: str, host: str, port: int, max_upload_mb: float, max_analysis_s: float,
          workers: int, max_queue: int | None, no_warm_up: bool, no_page_in: bool) -> None:
    """Serve the web page and the REST API (OpenAPI docs at /docs) on a music library.

    Connections are accepted at once; the library is opened and warmed up behind them (/health
    answers 503 "starting" meanwhile, other requests wait for it).  Then its index files are
    read into memory in the background when they fit in 3/4 of the free memory, so the first
    queries after a reboot do not wait on the disk.  Back-pressure: at most
    --workers uploads are analysed at once and --max-queue more wait; beyond that a request gets
    503 with a Retry-After header (seconds) and a JSON error at once.  Health, the track list
    and the audio files are never queued.
    """
    check_port(host, port)  # first: a taken port is said at once, not after the app is built
    from audiolsh.web.admission import default_max_queue
    from audiolsh.web.settings import Settings
    from audiolsh.web.startup import run

    settings = Settings(index_path=index_path, host=host, port=port,
                        max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_analysis_s=max_analysis_s,
                        workers=workers, warm_up=not no_warm_up, page_in=not no_page_in,
                        max_queue=default_max_queue() if max_queue is None else max_queue)
    if not settings.is_loopback:
        err_console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this address"
                          " can upload files and play the library", highlight=False)

    def ready(app: Any, seconds: float) -> None:
        url = settings.url
        err_console.print(f"serving {app.state.service.n_tracks()} tracks of {index_path} at [bold]{url}[/]"
                          f" (API docs: {url}docs), ready in {seconds:.1f} s; Ctrl-C stops", highlight=False)

    try:
        run(settings, on_ready=ready)
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise click.ClickException(f"the web app needs FastAPI and uvicorn ({exc.name} is missing)") from None


def check_port(host: str, port: int) -> None:
    """Refuse at once, in one line, an address serve cannot listen on (uvicorn would log it and
    stop with status 1): bind it as uvicorn does and let it go again."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise ParameterError(f"{host} is not a known host name or address; choose another with --host"
                             ) from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ParameterError(f"port {port} on {host} is in use; choose another with --port") from None
            if exc.errno == errno.EACCES:
                raise ParameterError(f"port {port} on {host} needs privileges this user lacks;"
                                     " choose another with --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ParameterError(f"{host} is not an address of this machine; choose another with --host"
                                     ) from None
            raise ParameterError(f"cannot listen on port {port} on {host}: {exc.strerror}") from None
