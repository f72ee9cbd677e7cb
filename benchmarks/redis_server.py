"""A private redis-server for the benchmarks and drills: TCP on a free loopback port and a unix
socket in a temporary folder, persistence off, stopped by its process id."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable


class RedisServer:
    """A private redis-server: TCP on a free loopback port and a unix socket, persistence off."""

    def __init__(self, log: Callable[[str], None] = lambda _: None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        import redis

        self.folder = tempfile.mkdtemp(prefix="audiolsh-rbench-")
        self.sock = os.path.join(self.folder, "redis.sock")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--unixsocket", self.sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", self.folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(unix_socket_path=self.sock)
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.client.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"redis-server did not start (exit code {self.proc.poll()})")
            time.sleep(0.05)
        self.version = self.client.info("server")["redis_version"]
        log(f"redis-server {self.version} pid {self.proc.pid} port {self.port} socket {self.sock}")

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def drop(self, prefix: str) -> None:
        """Delete a prefix's keys (SCAN, not KEYS)."""
        batch = []
        for key in self.client.scan_iter(match=f"{prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)

    def stop(self) -> None:
        try:
            self.client.close()
        except Exception:  # best effort
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
