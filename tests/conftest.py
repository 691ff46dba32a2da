"""Shared fixtures: one embedded router for the session, and a real gateway on a loopback port."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import httpx
import pytest
import uvicorn

from turnout.config import Config, load_config
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.routing.embedder import Embedder
from turnout.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "examples" / "model_routing_service" / "config.yaml"
SHARED_SUITES = ROOT.parent / "shared" / "data" / "routing"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="session")
def router(embedder: Embedder) -> EmbeddedRouter:
    return EmbeddedRouter(embedder)


@pytest.fixture(scope="session")
def demo_config() -> Config:
    return load_config(DEMO_CONFIG)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(
    process: subprocess.Popen[str],
    url: str,
    log: Callable[[], str],
    path: str = "/healthz",
    timeout: float = 60,
) -> None:
    """Poll a `turnout up` process until `url + path` answers 200; fail with its log if it exits
    or takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"turnout exited {process.returncode}:\n{log()}"
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no 200 from {path} in {timeout:g} s:\n{log()}"
        time.sleep(0.1)


@contextmanager
def serving(
    process: subprocess.Popen[str], url: str, log: Callable[[], str], timeout: float = 60
) -> Iterator[None]:
    """Wait for a `turnout up` process to serve; kill it afterwards if it is still running."""
    try:
        wait_until_serving(process, url, log, timeout=timeout)
        yield
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


class ServerThread:
    """uvicorn in a background thread, so tests speak real HTTP to the real app."""

    def __init__(self, app, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def gateway(demo_config: Config, router: EmbeddedRouter) -> Iterator[httpx.Client]:
    service = RoutingService(demo_config, router)
    service.prepare()
    with (
        ServerThread(create_app(service), free_port()) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client
