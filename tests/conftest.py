"""Shared fixtures."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator: every test sees the same random stream."""
    return np.random.default_rng(20240601)


@pytest.fixture(scope="session")
def redis_socket(tmp_path_factory: pytest.TempPathFactory):
    """A private redis-server on a unix socket in a temporary folder, persistence off; stopped
    by its process id afterwards.  A missing redis-server fails (``make test`` installs it)."""
    import shutil
    import subprocess
    import time

    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: `make system-deps` (or apt-get install redis-server)")
    import redis

    folder = tmp_path_factory.mktemp("redis")
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        client.close()
        yield str(sock)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_socket: str) -> str:
    """A fresh key prefix on the tests' redis-server."""
    import uuid

    return f"unix://{redis_socket}?prefix=test-{uuid.uuid4().hex[:12]}"
