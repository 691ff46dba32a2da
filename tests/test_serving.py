"""`turnout up` as a deployment runs it: several workers on one port, and a SIGTERM that lets
in-flight requests and streams finish before the process exits."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, wait_until_serving
from fakes import FakeProvider, Reply
from prometheus_client.parser import text_string_to_metric_families

CONFIG = """
version: v0.4.0
listeners:
  - type: model
    port: 12000
model_providers:
  - model: openai/gpt-4o-mini
    base_url: {upstream}
    access_key: test-key
    default: true
"""


CUT = "(connection closed mid-stream)"


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self._log = log

    def log(self) -> str:
        return self._log.read_text("utf-8")

    def stop(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running {timeout} s after SIGTERM:\n{self.log()}")

    def kill_leftovers(self) -> None:
        """Whatever a failed test left running: the server and its workers (one session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start(tmp_path: Path, upstream: str, *options: str) -> Served:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(upstream=upstream))
    port = free_port()
    log = tmp_path / "stderr"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout", "up", str(config), "--port", str(port), *options],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            cwd=ROOT,
            start_new_session=True,  # its own process group, so teardown reaches the workers
        )
    served = Served(process, f"http://127.0.0.1:{port}", log)
    wait_until_serving(process, served.url, served.log, path="/readyz")
    return served


@pytest.fixture()
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """`start`, with the servers killed at teardown even when the test failed midway."""
    started: list[Served] = []

    def run(upstream: str, *options: str) -> Served:
        started.append(start(tmp_path, upstream, *options))
        return started[-1]

    yield run
    for served in started:
        served.kill_leftovers()


@pytest.fixture()
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as fake:
        yield fake


def stream_in_thread(url: str, lines: list[str]) -> threading.Thread:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }

    def read() -> None:
        try:
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=body, timeout=30
            ) as response:
                lines.extend(line for line in response.iter_lines() if line)
        except httpx.RemoteProtocolError:
            lines.append(CUT)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def wait_for(condition, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except httpx.TransportError:
        return True
    return False


def test_sigterm_stops_new_connections_but_lets_a_stream_in_flight_finish(
    serve: Callable[..., Served], upstream: FakeProvider
) -> None:
    served = serve(upstream.url)
    gate = threading.Event()
    upstream.queue(Reply("one two three four", chunks=4, gate=gate))
    lines: list[str] = []
    reader = stream_in_thread(served.url, lines)
    wait_for(lambda: upstream.open_streams == 1, "the stream to start")

    served.process.send_signal(signal.SIGTERM)
    wait_for(lambda: refuses_connections(served.url), "the listener to close")
    assert served.process.poll() is None  # still finishing the stream
    gate.set()
    reader.join(timeout=15)

    assert served.process.wait(timeout=15) == 0, served.log()
    assert lines[-1] == "data: [DONE]"
    text = "".join(re.findall(r'"content":"([^"]*)"', "".join(lines)))
    assert text == "one two three four"


def test_a_stream_longer_than_the_grace_period_is_cut_and_the_process_exits(
    serve: Callable[..., Served], upstream: FakeProvider
) -> None:
    served = serve(upstream.url, "--shutdown-grace", "1")
    upstream.queue(Reply("never finished", chunks=2, gate=threading.Event()))
    lines: list[str] = []
    reader = stream_in_thread(served.url, lines)
    wait_for(lambda: upstream.open_streams == 1, "the stream to start")

    assert served.stop() == 0, served.log()
    reader.join(timeout=10)
    assert lines[-1] == CUT


def test_workers_share_the_port_and_stop_together(
    serve: Callable[..., Served], upstream: FakeProvider
) -> None:
    served = serve(upstream.url, "--workers", "2")
    wait_for(lambda: len(set(re.findall(r"worker (\d+):", served.log()))) == 2, "two workers", 60)
    workers = {int(pid) for pid in re.findall(r"worker (\d+):", served.log())}

    replies = [
        httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"n{i}"}]},
            timeout=10,
        )
        for i in range(6)
    ]
    assert [r.status_code for r in replies] == [200] * 6
    # /metrics from whichever worker answers counts every worker's requests.
    scraped = httpx.get(f"{served.url}/metrics", timeout=10).text
    total = sum(
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "turnout_requests_total"
    )
    assert total == 6

    assert served.stop(timeout=30) == 0, served.log()
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


@pytest.mark.parametrize(
    ("option", "value"),
    [("--workers", "0"), ("--workers", "-1"), ("--workers", "two"), ("--shutdown-grace", "-1")],
)
def test_a_bad_worker_count_or_grace_period_is_refused(option: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "turnout", "up", "missing.yaml", option, value],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert option in result.stderr and "Traceback" not in result.stderr


def test_sigterm_while_the_model_loads_is_a_clean_stop(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(upstream="http://127.0.0.1:9"))
    log = tmp_path / "stderr"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout", "up", str(config), "--port", str(free_port())],
            stderr=err,
            cwd=ROOT,
        )
    # The config line comes just before the model starts loading (about a second).
    wait_for(lambda: "config " in log.read_text(), "the config to load", 30)
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0, log.read_text()
    assert "stopped before serving" in log.read_text()
