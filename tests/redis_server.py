"""A throwaway redis-server on a free loopback port, for the tests that need a real Redis.

Tests skip (with the reason) when the `redis-server` binary is not installed; CI installs it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BINARY = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process with no persistence; stop() and start() again keep the port."""

    def __init__(self, port: int | None = None) -> None:
        if BINARY is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self._dir: str | None = None  # made by start(), removed by stop()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        assert BINARY is not None
        self._dir = self._dir or tempfile.mkdtemp(prefix="turnout-redis-")
        log = Path(self._dir) / "redis.log"
        # fmt: off
        command = [
            BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self._dir, "--logfile", str(log),
        ]
        # fmt: on
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._process.poll() is not None:
                text = log.read_text(errors="replace") if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {text}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """Send one command (inline form) and return the raw reply, e.g. FLUSHALL."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(" ".join(args).encode() + b"\r\n")
            return sock.recv(65536)

    def stop(self) -> None:
        """Stop the server and remove its directory; start() again serves on the same port."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    close = stop


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) and never answers:
    Redis hung or behind a black-holing network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])
