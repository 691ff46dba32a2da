"""What telemetry costs the proxy: the same turnout with tracing and the access log on, and off,
in one run against the same fake upstream (bench/proxy/run.py's harness).

    python bench/proxy/telemetry_cost.py [--duration 5]

"on": one access-log line per request, and traces sampled at `random_sampling` 10% (a usual
production setting) or 100%, exported over OTLP/HTTP to a local receiver that accepts and
discards. "off": neither. Prometheus metrics are counted in all three (they cannot be turned off).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    CONCURRENCIES,
    MODEL,
    Service,
    free_port,
    measure,
    spawn,
    wait_ready,
    wrk_script,
)

HERE = Path(__file__).resolve().parent


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that reads and drops every export."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start_turnout(name: str, fake_url: str, workdir: Path, extra: str, env: dict) -> Service:
    config = workdir / f"{name}.yaml"
    config.write_text(
        "version: v0.4.0\nlisteners:\n  - type: model\n    port: 12000\n"
        f"model_providers:\n  - model: {MODEL}\n    access_key: sk-upstream\n"
        f"    base_url: {fake_url}\n    default: true\n{extra}"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    argv = [sys.executable, "-m", "turnout", "up", str(config), "--port", str(port)]
    service = spawn(name, argv, url, workdir, env)
    wait_ready(service, 120)
    return service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    sink = ThreadingHTTPServer(("127.0.0.1", free_port()), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    collector = f"http://127.0.0.1:{sink.server_address[1]}"
    services: list[Service] = []
    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as tmp:
        workdir = Path(tmp)
        try:
            port = free_port()
            fake_url = f"http://127.0.0.1:{port}"
            argv = [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port)]
            fake = spawn("fake", argv, f"{fake_url}/v1/chat/completions", workdir, dict(os.environ))
            services.append(fake)
            wait_ready(fake, 30)
            env = {**os.environ, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
            off = start_turnout(
                "telemetry-off", fake_url, workdir, "observability:\n  access_log: false\n", env
            )
            services.append(off)
            on_env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector}
            targets = [off]
            for percent in (10, 100):
                extra = (
                    f"tracing:\n  random_sampling: {percent}\nobservability:\n  access_log: true\n"
                )
                on = start_turnout(f"telemetry-on-{percent}", fake_url, workdir, extra, on_env)
                services.append(on)
                targets.append(on)
            lua = wrk_script(workdir) if shutil.which("wrk") else None
            cells = []
            for stream in (False, True):
                for concurrency in CONCURRENCIES:
                    for target in targets:
                        print(
                            f"  {target.name} stream={stream} c={concurrency}...", file=sys.stderr
                        )
                        cells.append(measure(target, fake, stream, concurrency, args.duration, lua))
        finally:
            for service in reversed(services):
                service.stop()
            sink.shutdown()
    by = {(c.target, c.stream, c.concurrency): c.numbers for c in cells}
    print("| mode | conc. | off req/s | on, 10% traced | on / off | on, 100% traced | on / off |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for stream in (False, True):
        for concurrency in CONCURRENCIES:
            off_rps = by[("telemetry-off", stream, concurrency)]["rps"]
            cells = [by[(f"telemetry-on-{p}", stream, concurrency)]["rps"] for p in (10, 100)]
            row = " | ".join(f"{rps:.0f} | {rps / off_rps:.3f}" for rps in cells)
            print(f"| {'stream' if stream else 'plain'} | {concurrency} | {off_rps:.0f} | {row} |")


if __name__ == "__main__":
    main()
