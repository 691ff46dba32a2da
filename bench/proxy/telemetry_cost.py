"""What telemetry costs the proxy: the same fake upstream behind turnout with each level of
telemetry, and behind turnout as it was before it had any, in one run (bench/proxy/run.py's
harness).

    python bench/proxy/telemetry_cost.py [--duration 4] [--rounds 1] [--before ef48799]

Targets, interleaved cell by cell (mode and concurrency), `--rounds` times over:

- before: turnout at `--before` (the commit before observability existed), extracted with
  `git archive` into the run's temporary directory and started with PYTHONPATH pointing at it.
  No telemetry at all: the "telemetry off" of the issue, since metrics cannot be turned off.
  It also lacks whatever else was added since, which the comparison then counts too.
- no-log: this turnout (the one `python -m turnout` imports: PYTHONPATH chooses another) with
  the access log off and tracing off (Prometheus metrics only).
- default: this turnout as configured out of the box: metrics and the access log, no tracing.
- traced-10 / traced-100: the default plus traces sampled at `random_sampling` 10% (a usual
  production setting) or 100%, exported over OTLP/HTTP to a local receiver that accepts and
  discards.

Prints two markdown tables: throughput (and its ratio to `before`), and the gateway's CPU time
per request (and how much more than `before`'s). With several rounds, each number is a median
over the rounds, and each comparison the median of the rounds' own comparisons. On a shared machine each cell waits until processes outside the benchmark use under 15%
of a core, and is taken again (up to 3 times) when they used more while it ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    CONCURRENCIES,
    MODEL,
    Cell,
    Service,
    free_port,
    machine_cpu_seconds,
    measure,
    own_cpu_seconds,
    spawn,
    wait_ready,
    wrk_script,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BEFORE = "ef48799"  # "Observability: ..." is the commit after it
# On a shared machine another job's CPU skews a cell: wait for it to go, and take again a cell
# during which it came back.
QUIET_PERCENT = 15.0  # of one core, used by processes outside the benchmark
TAKES = 3
TRACED = "tracing:\n  random_sampling: {percent}\n"
# name, extra config, traced
TARGETS = (
    ("no-log", "observability:\n  access_log: false\n", False),
    ("default", "", False),
    ("traced-10", TRACED.format(percent=10), True),
    ("traced-100", TRACED.format(percent=100), True),
)


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


def extract(revision: str, workdir: Path) -> Path:
    """turnout's package at `revision`, as a directory to put on PYTHONPATH."""
    into = workdir / "before"
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src/turnout"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def others_percent(seconds: float) -> float:
    """CPU used by processes outside this benchmark over `seconds`, in % of one core."""
    before = machine_cpu_seconds() - own_cpu_seconds()
    time.sleep(seconds)
    return max(machine_cpu_seconds() - own_cpu_seconds() - before, 0.0) / seconds * 100


def wait_quiet(limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while (busy := others_percent(1.0)) > QUIET_PERCENT and time.monotonic() < deadline:
        print(f"  waiting: other processes use {busy:.0f}% CPU", file=sys.stderr)


def quiet_cell(take: Callable[[], Cell], max_wait: float) -> Cell:
    """One cell measured while nothing else ran, if that came within `max_wait` seconds (else
    the least disturbed of `TAKES`)."""
    takes = []
    for _ in range(TAKES):
        wait_quiet(max_wait)
        takes.append(take())
        if takes[-1].cpu["other"] <= QUIET_PERCENT:
            break
        print(f"  taken again: others used {takes[-1].cpu['other']:.0f}% CPU", file=sys.stderr)
    return min(takes, key=lambda cell: cell.cpu["other"])


Rounds = dict[tuple[str, bool, int], list[Cell]]  # (target, stream, concurrency): each round's


def cpu_ms(cell: Cell) -> float:
    return cell.cpu["gw"] * 10 / cell.numbers["rps"]  # % of a core over req/s


def table(
    cells: Rounds,
    names: list[str],
    value: Callable[[Cell], float],
    compare: Callable[[float, float], float],
    digits: str,
    compared: str,
) -> list[str]:
    """A markdown table, a row per mode and concurrency, a column per target: the median over
    the rounds of `value`, and (after the first column) the median of `compare(value, the first
    target's value in the same round)`, which cancels the machine's drift between rounds."""
    lines = [f"| mode | conc. | {' | '.join(names)} |", "|---|--:|" + "--:|" * len(names)]
    for stream, concurrency in sorted({(stream, c) for _, stream, c in cells}):
        base = [value(c) for c in cells[(names[0], stream, concurrency)]]
        row = [format(statistics.median(base), digits)]
        for name in names[1:]:
            mine = [value(c) for c in cells[(name, stream, concurrency)]]
            paired = statistics.median(compare(m, b) for m, b in zip(mine, base, strict=True))
            row.append(f"{statistics.median(mine):{digits}} ({paired:{compared}})")
        mode = "stream" if stream else "plain"
        lines.append(f"| {mode} | {concurrency} | {' | '.join(row)} |")
    return lines


def report(cells: Rounds, names: list[str]) -> str:
    throughput = table(cells, names, lambda c: c.numbers["rps"], lambda m, b: m / b, ".0f", ".2f")
    cpu = table(cells, names, cpu_ms, lambda m, b: (m - b) * 1000, ".3f", "+.0f")
    return "\n".join(
        ["Throughput, req/s (× before, in the same round):", "", *throughput, ""]
        + ["Gateway CPU per request, ms (µs more than before, in the same round):", "", *cpu]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per cell (whole)")
    parser.add_argument("--rounds", type=int, default=1, help="cells repeated; medians reported")
    parser.add_argument("--before", default=BEFORE, help="the revision to compare against")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCIES))
    parser.add_argument(
        "--max-wait", type=float, default=300, help="seconds to wait for a quiet machine per cell"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    sink = ThreadingHTTPServer(("127.0.0.1", free_port()), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    collector = f"http://127.0.0.1:{sink.server_address[1]}"
    services: list[Service] = []
    cells: Rounds = {}
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
            before_env = {**env, "PYTHONPATH": str(extract(args.before, workdir))}
            targets = [start_turnout("before", fake_url, workdir, "", before_env)]
            services.append(targets[0])
            for name, extra, traced in TARGETS:
                target_env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector} if traced else env
                targets.append(start_turnout(name, fake_url, workdir, extra, target_env))
                services.append(targets[-1])
            lua = wrk_script(workdir) if shutil.which("wrk") else None
            for round_ in range(args.rounds):
                for stream in (False, True):
                    for concurrency in args.concurrency:
                        for target in targets:
                            print(
                                f"  round {round_ + 1}: {target.name} stream={stream} "
                                f"c={concurrency}...",
                                file=sys.stderr,
                            )
                            cell = quiet_cell(
                                lambda t=target, s=stream, c=concurrency: measure(
                                    t, fake, s, c, args.duration, lua
                                ),
                                args.max_wait,
                            )
                            cells.setdefault((target.name, stream, concurrency), []).append(cell)
        finally:
            for service in reversed(services):
                service.stop()
            sink.shutdown()
    names = ["before"] + [name for name, _, _ in TARGETS]
    others = max(cell.cpu["other"] for rounds in cells.values() for cell in rounds)
    print(
        f"\n{args.rounds} round(s) of {args.duration} s per cell; before = {args.before}; other "
        f"processes used at most {others:.0f}% of a core during a cell kept.\n"
    )
    print(report(cells, names))


if __name__ == "__main__":
    main()
