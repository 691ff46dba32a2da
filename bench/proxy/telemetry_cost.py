"""What telemetry costs turnout's throughput: this build with it off and on, in one run.

    python bench/proxy/telemetry_cost.py [--rounds 8] [--duration 1.5] [--concurrency 1 16 64]
        [--modes plain stream] [--instances 3] [--slice 0.25] [--control] [--before [REV]]
        [--no-pin] [--max-wait 60] [--json FILE]

The question: does telemetry cost at most 5% of throughput? Every target is this build (the
`python -m turnout` this Python imports) on the same fake upstream (fake_upstream.py), with
bench/proxy/run.py's harness:

- off: `observability: {metrics: false, access_log: false}` and no tracing: no Prometheus
  counting, no access log, no spans. Every other target is compared with it.
- default: no `observability` section: metrics counted and an access log line per request
  (to a file in the run's temporary directory), no tracing.
- traced-10 / traced-100: the default plus `tracing.random_sampling` 10 (a usual production
  setting) or 100, exported over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT) to a receiver in this
  script that reads and drops every export.
- off-2 (`--control`): `off` again, an A/A test: its ratio to `off` is what noise alone gives.
- before (`--before [REV]`, default ef48799, the commit before observability existed): turnout
  at REV, extracted with `git archive` and put on PYTHONPATH; an extra reference.

How, so that a 2-5% effect is not lost in the noise of a shared 2-core virtual machine:

- Pinning. This script pins itself to the second usable CPU before starting anything, so the
  fake upstream, the OTLP receiver thread and the load generator share that CPU; every turnout
  process (all its threads) is pinned to the first CPU, where only the one being loaded is
  busy. At concurrency 16 and 64 the gateway's core is then full and its own CPU cost per
  request decides its throughput. At concurrency 1 throughput is a round trip through all
  three processes, mostly latency. `--no-pin` turns pinning off; with fewer than 2 usable CPUs
  it is skipped, and said so. The CPU affinity (Cpus_allowed_list) of every process is printed
  once, to stderr.
- Slices. On such a machine a core's speed changes by up to a quarter from one second to the
  next (other tenants of the host, invisible from inside: the same process under the same load
  took 345 to 605 µs of CPU per request in consecutive 1 s runs). Measuring the targets one
  after the other for seconds each compares them at different speeds: with wrk and loadgen.py
  runs of 2 s in turn (`--slice 0`), `off-2` came out at 0.91 to 1.09 × `off` (medians of 4
  rounds) where slices gave 0.99 to 1.05 (8 rounds of 2 processes). So a load generator (this
  script run with `--drive`: raw HTTP/1.1 over asyncio, N keep-alive connections per gateway
  process, like loadgen.py) loads one gateway process at a time for `--slice` s (0.25), waits
  for its last answers, then loads the next, each cycle in another order (rows of a balanced
  Latin square: each process in each position, and after each other, equally often), until
  each target had `--duration` s. Every target sees the same moments.
  Throughput is answers over the time its slices lasted; the gateway's CPU is read from /proc
  around the whole cell, so it includes work finished after a slice (a span export), which can
  also take a few % from the next slice's throughput: CPU per request is the exact one.
- Fresh processes. Two identical turnout processes also differ in throughput for their whole
  life, by ~5% (standard deviation; memory layout most likely: one PYTHONHASHSEED for all did
  not remove it), as much as the effect sought. So every
  round starts new processes, `--instances` (3) per target, side by side on all CPUs, pinned
  once they answer, warmed up by one slice per mode, and stops them at its end; a target's
  numbers in a round are over all its processes. The rounds sample processes as well as
  moments.
- Pairing. In each round and cell each target's throughput is divided by `off`'s, and its CPU
  per request minus `off`'s. The tables give the median of these paired ratios (differences)
  over the rounds and their 25th and 75th percentiles: the middle half of the rounds.
- Quiet machine. CPU used by processes outside this benchmark (inside the machine) is
  measured during every cell. Each round starts once they use under 15% of a core, and a cell
  during which they used more is taken again after waiting; waiting and retaking together are
  capped at `--max-wait` seconds for the whole run, after which cells are kept as they come.

How to read it. Four markdown tables on stdout, one row per mode and concurrency:

1. Throughput, req/s. `off`: its median over the rounds [25th, 75th percentile]. The others:
   their median req/s, then `×` the median ratio to `off` in the same round [25th, 75th
   percentile]. "× 0.970 [0.955, 0.980]" means telemetry cost ~3%, 2 to 4.5% in half of the
   rounds. A bracket around 1.000 means no cost shows above the noise; run with `--control` to
   see the brackets `off-2` gets, which is the noise.
2. Throughput per second of gateway CPU, req/s (1000 / CPU ms per request), the same way: what
   a core busy only with the gateway would serve. Where the gateway's core is full (table 4)
   this is the same ratio as table 1, without what another slice's leftovers took from it.
3. Gateway CPU per request, ms (median), then µs more than `off` in the same round, median
   [25th, 75th percentile]: what telemetry adds per request, whoever limited throughput.
4. CPU busy, % of one core (medians): the gateway while its slices lasted / everything on the
   other CPU (fake upstream, load generator, this script) over the cell. A gateway near 100%
   is the bottleneck, which makes throughput measure its cost; at concurrency 1 throughput is
   bound by round trips instead, and table 3 is the one to read.

Precision: with the defaults a ratio's median is good to about ±2% (a standard error of that
size: 24 processes per target, each ~5% off); the brackets show it. For a decision closer to
the 5% line, add rounds on the cells that matter (`--concurrency 16 --rounds 24`: 15
minutes, half the standard error). The line above the tables gives the wall time, how busy other
processes were, and how many cells were retaken or kept although disturbed. `--json FILE`
writes every process's numbers in every cell and round. With the defaults (4 targets × 3
processes, 8 rounds, 6 cells of 1.5 s per target) a run takes about 9 minutes on a quiet
machine, plus at most `--max-wait`; the estimate is printed at the start, progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen
from run import (
    CONCURRENCIES,
    MASTER_KEY,
    MODEL,
    Cell,
    Service,
    children_cpu,
    cpu_seconds,
    free_port,
    load,
    machine_cpu_seconds,
    own_cpu_seconds,
    process_tree,
    spawn,
    wait_ready,
    wrk_script,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BEFORE = "ef48799"  # "Observability: ..." is the commit after it
# On a shared machine another job's CPU skews a measurement: wait for it to go, and take again a
# cell during which it came back.
QUIET_PERCENT = 15.0  # of one core, used by processes outside the benchmark
TAKES = 3
MAX_WAIT_S = 60.0
SLICE_S = 0.25
WARM_UP_CONCURRENCY = 16
WARM_UP_S = 1.0  # per process and mode, with --slice 0 (else one slice)
# For the estimate printed at the start, as measured on the 2-core machine this was written on:
START_S = 1.3  # starting (side by side on every CPU) and stopping one turnout process
DRAIN_S = {1: 0.001, 16: 0.007, 64: 0.025}  # after a slice: answers still coming
OVERHEAD_S = {False: 0.1, True: 0.35}  # starting wrk or loadgen.py, or the slices' driver
REFERENCE = "off"
OFF = "observability:\n  metrics: false\n  access_log: false\n"
TRACED = "tracing:\n  random_sampling: {percent}\n"
# name, extra config, traced
TARGETS = (
    (REFERENCE, OFF, False),
    ("default", "", False),
    ("traced-10", TRACED.format(percent=10), True),
    ("traced-100", TRACED.format(percent=100), True),
)
CONTROL = ("off-2", OFF, False)


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


# --- pinning ---------------------------------------------------------------------------------


@dataclass
class Pinning:
    """CPUs for the gateways, for everything else, and all of them; None when not pinning."""

    gateway: set[int] | None = None
    harness: set[int] | None = None
    everything: set[int] | None = None  # while the gateways start
    note: str = "not pinned (--no-pin)"


def pin_harness(enabled: bool) -> Pinning:
    """Pin this process's main thread to every usable CPU but the first, before it starts any
    thread or child (they inherit it); the first CPU is left to the gateways."""
    if not enabled:
        return Pinning()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Pinning(note=f"not pinned: {len(cpus)} usable CPU")
    pinning = Pinning({cpus[0]}, set(cpus[1:]), set(cpus))
    os.sched_setaffinity(0, pinning.harness)
    pinning.note = (
        f"gateways pinned to CPU {cpus[0]}, fake upstream, load generator and OTLP receiver to "
        f"CPU {','.join(map(str, cpus[1:]))}"
    )
    return pinning


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a running process tree; threads started later inherit it."""
    for member in process_tree(pid):
        with contextlib.suppress(OSError):  # the process or thread ended meanwhile
            for task in Path(f"/proc/{member}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)


def affinity(pid: int) -> str:
    """The Cpus_allowed_list of a process tree's threads, e.g. "CPU 0 (8 threads)"."""
    lists: dict[str, int] = {}
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{member}/task").iterdir():
                with contextlib.suppress(OSError):
                    for line in (task / "status").read_text().splitlines():
                        if line.startswith("Cpus_allowed_list:"):
                            cpus = line.split(":", 1)[1].strip()
                            lists[cpus] = lists.get(cpus, 0) + 1
    return ", ".join(f"CPU {cpus} ({n} threads)" for cpus, n in sorted(lists.items()))


# --- targets ---------------------------------------------------------------------------------


@dataclass
class Target:
    """How to start one target: its name, extra config and environment."""

    name: str
    extra: str
    env: dict[str, str]


def base_name(process: str) -> str:
    return process.split("#", 1)[0]  # "traced-10#2": the second process of traced-10


def spawn_turnout(name: str, target: Target, fake_url: str, workdir: Path) -> Service:
    config = workdir / f"{target.name}.yaml"
    config.write_text(
        "version: v0.4.0\nlisteners:\n  - type: model\n    port: 12000\n"
        f"model_providers:\n  - model: {MODEL}\n    access_key: sk-upstream\n"
        f"    base_url: {fake_url}\n    default: true\n{target.extra}"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    argv = [sys.executable, "-m", "turnout", "up", str(config), "--port", str(port)]
    return spawn(name, argv, url, workdir, target.env)


def start_targets(
    targets: list[Target],
    instances: int,
    fake_url: str,
    workdir: Path,
    pinning: Pinning,
    services: list[Service],
) -> list[Service]:
    """Fresh processes, `instances` per target, started side by side on every CPU (nothing is
    measured meanwhile), each pinned to the gateways' CPU once it answers."""
    started: list[tuple[Service, Target]] = []
    for number in range(1, instances + 1):
        for target in targets:
            service = spawn_turnout(f"{target.name}#{number}", target, fake_url, workdir)
            services.append(service)
            started.append((service, target))
            if pinning.everything is not None:
                pin_tree(service.proc.pid, pinning.everything)
    for service, target in started:
        try:
            wait_ready(service, 120)
        except RuntimeError as exc:
            hint = ""
            if "metrics" in target.extra and "metrics" in str(exc):
                hint = "\n(this turnout refuses `observability.metrics`: has the switch landed?)"
            raise RuntimeError(f"{exc}{hint}") from exc
        if pinning.gateway is not None:
            pin_tree(service.proc.pid, pinning.gateway)
    return [service for service, _ in started]


def stop_all(running: list[Service], services: list[Service]) -> None:
    """SIGTERM to all at once (each takes a moment to shut down), then wait for each."""
    for service in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.proc.pid, signal.SIGTERM)
    for service in running:
        service.stop()
        services.remove(service)


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


# --- the sliced load generator (a child process: python telemetry_cost.py --drive PLAN) --------


def balanced_orders(n: int) -> list[list[int]]:
    """Rows of a balanced (Williams) Latin square: each index equally often in every position,
    and right after every other (n rows for an even n, 2n for an odd n)."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(x + shift) % n for x in first] for shift in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


class Gate:
    """One gateway process's side of the sliced load: its connections send while `open`."""

    def __init__(self, url: str, stream: bool) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = loadgen.build_request(self.host, self.port, parts.path, stream, MASTER_KEY)
        self.stream = stream
        self.open = asyncio.Event()
        self.idle = asyncio.Event()
        self.in_flight = 0
        self.done = 0
        self.errors = 0
        self.active = 0.0  # seconds its slices lasted, each until its last answer

    async def worker(self, stop: asyncio.Event) -> None:
        """One keep-alive connection, sending requests back to back while the gate is open."""
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        timeout = loadgen.READ_TIMEOUT_S
        try:
            while True:
                await self.open.wait()
                if stop.is_set():
                    return
                self.in_flight += 1
                try:
                    if conn is None:
                        opening = asyncio.open_connection(self.host, self.port)
                        conn = await asyncio.wait_for(opening, timeout)
                    reader, writer = conn
                    writer.write(self.request)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                    body = loadgen.read_body(reader, head, time.perf_counter())
                    ttft = await asyncio.wait_for(body, timeout)
                    if not head.startswith(b"HTTP/1.1 200") or (self.stream and ttft is None):
                        self.errors += 1
                    else:
                        self.done += 1
                    if b"connection: close" in head.lower():
                        writer.close()
                        conn = None
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    self.errors += 1
                    if conn is not None:
                        conn[1].close()
                    conn = None
                    await asyncio.sleep(0.01)  # a refusing target must not become a busy loop
                finally:
                    self.in_flight -= 1
                    if not self.in_flight:
                        self.idle.set()
        finally:
            if conn is not None:
                conn[1].close()

    async def slice(self, seconds: float) -> None:
        """Open for `seconds`, then wait for the answers still coming (the gateway is busy)."""
        started = time.perf_counter()
        self.open.set()
        await asyncio.sleep(seconds)
        self.open.clear()
        while self.in_flight:
            self.idle.clear()
            await self.idle.wait()
        self.active += time.perf_counter() - started


async def drive(
    urls: list[str], concurrency: int, stream: bool, seconds: float, slice_s: float, shift: int
) -> list[dict]:
    """Closed-loop load on each URL in turn, `slice_s` at a time, `seconds` each in all; the
    order of each cycle a row of a balanced Latin square, from row `shift` on."""
    gates = [Gate(url, stream) for url in urls]
    stop = asyncio.Event()
    workers = [asyncio.create_task(gate.worker(stop)) for gate in gates for _ in range(concurrency)]
    orders = balanced_orders(len(gates))
    for cycle in range(max(1, round(seconds / slice_s))):
        for index in orders[(shift + cycle) % len(orders)]:
            await gates[index].slice(slice_s)
    stop.set()
    for gate in gates:
        gate.open.set()
    await asyncio.gather(*workers)
    return [
        {
            "rps": gate.done / gate.active,
            "requests": gate.done,
            "errors": gate.errors,
            "active_s": gate.active,
        }
        for gate in gates
    ]


# --- measuring -------------------------------------------------------------------------------


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_sample(fake: Service, running: list[Service]) -> tuple[float, list[float], float]:
    """CPU seconds so far: the harness's side, each gateway's, and other processes'."""
    return (
        children_cpu() + cpu_seconds(fake.proc.pid) + self_cpu(),
        [cpu_seconds(service.proc.pid) for service in running],
        machine_cpu_seconds() - own_cpu_seconds(),
    )


def cells_from(
    running: list[Service],
    numbers: list[dict],
    before: tuple[float, list[float], float],
    after: tuple[float, list[float], float],
    wall: float,
    stream: bool,
    concurrency: int,
) -> dict[str, Cell]:
    cells = {}
    for service, mine, gw_before, gw_after in zip(
        running, numbers, before[1], after[1], strict=True
    ):
        cpu = {
            "gw_s": gw_after - gw_before,  # seconds of CPU
            "gw": (gw_after - gw_before) / mine["active_s"] * 100,  # % of one core
            "side": (after[0] - before[0]) / wall * 100,  # fake + load generator + this script
            "other": max(after[2] - before[2], 0.0) / wall * 100,  # outside the benchmark
        }
        cells[service.name] = Cell(service.name, stream, concurrency, mine, math.nan, cpu)
    return cells


def take_sliced(
    running: list[Service],
    fake: Service,
    stream: bool,
    concurrency: int,
    seconds: float,
    slice_s: float,
    shift: int,
) -> dict[str, Cell]:
    """Each process loaded for `seconds` in all, in slices taken in turn (by a child process,
    pinned like this one), with the CPU each used around the whole."""
    plan = {
        "urls": [service.url for service in running],
        "concurrency": concurrency,
        "stream": stream,
        "seconds": seconds,
        "slice_s": slice_s,
        "shift": shift,
    }
    before = cpu_sample(fake, running)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, __file__, "--drive", json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=seconds * len(running) * 3 + 60,
        check=True,
    ).stdout
    wall = time.monotonic() - started
    after = cpu_sample(fake, running)
    return cells_from(running, json.loads(out), before, after, wall, stream, concurrency)


def take_whole(
    running: list[Service],
    fake: Service,
    stream: bool,
    concurrency: int,
    seconds: int,
    lua: Path | None,
) -> dict[str, Cell]:
    """Each process loaded in turn by one wrk (plain) or loadgen.py (stream) run of `seconds`."""
    cells = {}
    for service in running:
        before = cpu_sample(fake, [service])
        started = time.monotonic()
        numbers = load(service.url, concurrency, seconds, stream, lua)
        wall = time.monotonic() - started
        numbers |= {"requests": numbers["rps"] * seconds, "active_s": float(seconds)}
        after = cpu_sample(fake, [service])
        cells |= cells_from([service], [numbers], before, after, wall, stream, concurrency)
    return cells


def combine(cells: dict[str, Cell]) -> dict[str, Cell]:
    """Each target's processes in one cell: answers and CPU over the time their slices took."""
    parts: dict[str, list[Cell]] = {}
    for name, cell in cells.items():
        parts.setdefault(base_name(name), []).append(cell)
    combined = {}
    for name, mine in parts.items():
        requests = sum(c.numbers["requests"] for c in mine)
        active = sum(c.numbers["active_s"] for c in mine)
        gw_s = sum(c.cpu["gw_s"] for c in mine)
        numbers = {
            "rps": requests / active,
            "requests": requests,
            "active_s": active,
            "errors": sum(c.numbers["errors"] for c in mine),
        }
        cpu = {
            "gw_s": gw_s,
            "gw": gw_s / active * 100,
            "side": statistics.fmean(c.cpu["side"] for c in mine),
            "other": max(c.cpu["other"] for c in mine),
        }
        combined[name] = Cell(name, mine[0].stream, mine[0].concurrency, numbers, math.nan, cpu)
    return combined


def others_percent(seconds: float) -> float:
    """CPU used by processes outside this benchmark over `seconds`, in % of one core."""
    before = machine_cpu_seconds() - own_cpu_seconds()
    time.sleep(seconds)
    return max(machine_cpu_seconds() - own_cpu_seconds() - before, 0.0) / seconds * 100


class Quiet:
    """Waiting for a quiet machine and retaking disturbed cells, out of one budget of seconds
    for the whole run."""

    def __init__(self, budget_s: float) -> None:
        self.left = budget_s
        self.retaken = 0
        self.disturbed = 0  # cells kept although others were busy
        self.kept: list[float] = []  # others' worst % of a core in each cell kept

    def wait(self) -> None:
        while self.left > 0:
            started = time.monotonic()
            busy = others_percent(1.0)
            self.left -= time.monotonic() - started
            if busy <= QUIET_PERCENT:
                return
            print(f"  waiting: other processes use {busy:.0f}% CPU", file=sys.stderr)

    def cell(self, measure: Callable[[], dict[str, Cell]]) -> dict[str, Cell]:
        """One cell of a round, taken again (up to TAKES times in all) if others were busy."""
        takes: list[tuple[float, dict[str, Cell]]] = []
        for attempt in range(TAKES):
            started = time.monotonic()
            cells = measure()
            worst = max(cell.cpu["other"] for cell in cells.values())
            takes.append((worst, cells))
            if attempt:
                self.left -= time.monotonic() - started
            if worst <= QUIET_PERCENT:
                break
            if attempt == TAKES - 1 or self.left < time.monotonic() - started:
                self.disturbed += 1
                break
            print(f"  taken again: others used {worst:.0f}% CPU", file=sys.stderr)
            self.retaken += 1
            self.wait()
        worst, cells = min(takes, key=lambda pair: pair[0])
        self.kept.append(worst)
        return cells


# --- report ----------------------------------------------------------------------------------

Rounds = dict[tuple[str, bool, int], list[Cell]]  # (target, stream, concurrency): each round's


def cpu_ms(cell: Cell) -> float:
    return cell.cpu["gw_s"] * 1000 / cell.numbers["requests"]


def spread(values: list[float], digits: str) -> tuple[str, str]:
    """The median, and "[25th, 75th percentile]" ("" with fewer than 2 values)."""
    middle = format(statistics.median(values), digits)
    if len(values) < 2:
        return middle, ""
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return middle, f"[{low:{digits}}, {high:{digits}}]"


def table(
    cells: Rounds,
    names: list[str],
    value: Callable[[Cell], float],
    compare: Callable[[float, float], float],
    digits: str,
    compared: str,
    template: str,
) -> list[str]:
    """A markdown table, a row per mode and concurrency, a column per target: the median over
    the rounds of `value` (and, for the first target, its quartiles), then for the others
    `template` filled with the median and quartiles of `compare(value, the first target's
    value in the same round)`."""
    lines = [f"| mode | conc. | {' | '.join(names)} |", "|---|--:|" + "--:|" * len(names)]
    for stream, concurrency in sorted({(stream, c) for _, stream, c in cells}):
        base = [value(c) for c in cells[(names[0], stream, concurrency)]]
        row = [" ".join(spread(base, digits)).strip()]
        for name in names[1:]:
            mine = [value(c) for c in cells[(name, stream, concurrency)]]
            paired = [compare(m, b) for m, b in zip(mine, base, strict=True)]
            paired_text = template.format(*spread(paired, compared)).strip()
            row.append(f"{statistics.median(mine):{digits}} {paired_text}")
        mode = "stream" if stream else "plain"
        lines.append(f"| {mode} | {concurrency} | {' | '.join(row)} |")
    return lines


def busy_table(cells: Rounds, names: list[str]) -> list[str]:
    lines = [f"| mode | conc. | {' | '.join(names)} |", "|---|--:|" + "--:|" * len(names)]
    for stream, concurrency in sorted({(stream, c) for _, stream, c in cells}):
        row = []
        for name in names:
            mine = cells[(name, stream, concurrency)]
            gw = statistics.median(c.cpu["gw"] for c in mine)
            side = statistics.median(c.cpu["side"] for c in mine)
            row.append(f"{gw:.0f} / {side:.0f}")
        mode = "stream" if stream else "plain"
        lines.append(f"| {mode} | {concurrency} | {' | '.join(row)} |")
    return lines


def report(cells: Rounds, names: list[str]) -> str:
    ref = names[0]
    throughput = table(
        cells, names, lambda c: c.numbers["rps"], lambda m, b: m / b, ".0f", ".3f", "× {} {}"
    )
    capacity = table(
        cells, names, lambda c: 1000 / cpu_ms(c), lambda m, b: m / b, ".0f", ".3f", "× {} {}"
    )
    cpu = table(cells, names, cpu_ms, lambda m, b: (m - b) * 1000, ".3f", "+.0f", "{} µs {}")
    return "\n".join(
        [
            (
                f"Throughput, req/s: median over rounds [25th, 75th percentile] for {ref}; for "
                f"the others median req/s, then × their ratio to {ref} in the same round: "
                "median [25th, 75th percentile] over rounds."
            ),
            "",
            *throughput,
            "",
            (
                "Throughput per second of gateway CPU, req/s (1000 / CPU ms per request: what a "
                "core busy only with the gateway would serve); the same statistics."
            ),
            "",
            *capacity,
            "",
            (
                f"Gateway CPU per request, ms: median [25th, 75th percentile] for {ref}; for the "
                f"others median, then µs more than {ref} in the same round: median [25th, 75th "
                "percentile] over rounds."
            ),
            "",
            *cpu,
            "",
            (
                "CPU busy, % of one core (medians): gateway while its slices lasted / fake "
                "upstream + load generator + this script."
            ),
            "",
            *busy_table(cells, names),
        ]
    )


def estimate_s(args: argparse.Namespace, targets: int) -> float:
    """Seconds a run takes on a quiet machine, from what each step took where it was written."""
    processes = targets * args.instances
    per_round = START_S * processes + 1.0  # and one quiet check
    for stream in args.streams:
        if args.slice:
            per_round += processes * args.slice + OVERHEAD_S[True]  # warm-up
            for concurrency in args.concurrency:
                slices = max(1, round(args.duration / args.instances / args.slice)) * processes
                drain = DRAIN_S.get(concurrency, concurrency * 0.0004)
                per_round += targets * args.duration + slices * drain + OVERHEAD_S[True]
        else:
            per_round += processes * (WARM_UP_S + OVERHEAD_S[stream])
            each = max(1, round(args.duration / args.instances)) + OVERHEAD_S[stream]
            per_round += len(args.concurrency) * processes * each
    return args.rounds * per_round


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    if sys.argv[1:2] == ["--drive"]:  # the sliced load generator, as take_sliced runs it
        plan = json.loads(sys.argv[2])
        print(json.dumps(asyncio.run(drive(**plan))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="each with fresh processes")
    parser.add_argument(
        "--duration", type=float, default=1.5, help="seconds of load per target, cell and round"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCIES))
    parser.add_argument(
        "--modes", nargs="+", choices=("plain", "stream"), default=["plain", "stream"]
    )
    parser.add_argument("--instances", type=int, default=3, help="processes per target and round")
    parser.add_argument(
        "--slice",
        type=float,
        default=SLICE_S,
        metavar="SECONDS",
        help="load the processes in turn this long each time (0: one wrk or loadgen.py run "
        "of duration / instances whole seconds each)",
    )
    parser.add_argument("--control", action="store_true", help="add off-2, a copy of off (A/A)")
    parser.add_argument(
        "--before",
        nargs="?",
        const=BEFORE,
        default=None,
        metavar="REV",
        help=f"also measure turnout at REV (default {BEFORE}, before observability existed)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=MAX_WAIT_S,
        help="seconds the whole run may spend waiting for a quiet machine and retaking cells",
    )
    parser.add_argument("--json", type=Path, help="also write every process's numbers here")
    args = parser.parse_args()
    args.streams = [mode == "stream" for mode in ("plain", "stream") if mode in args.modes]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # connections: processes × N
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pinning = pin_harness(not args.no_pin)  # before any thread or child exists
    print(pinning.note, file=sys.stderr)

    specs = list(TARGETS) + ([CONTROL] if args.control else [])
    names = [name for name, _, _ in specs] + (["before"] if args.before else [])
    estimate = estimate_s(args, len(names))
    cells_per_round = len(args.streams) * len(args.concurrency)
    print(
        f"{len(names)} targets × {args.instances} processes, {args.rounds} rounds of "
        f"{cells_per_round} cells, {args.duration:g} s per target and cell: about "
        f"{estimate / 60:.1f} min ({estimate:.0f} s) on a quiet machine, plus at most "
        f"{args.max_wait:.0f} s waiting.",
        file=sys.stderr,
    )
    started = time.monotonic()
    sink = ThreadingHTTPServer(("127.0.0.1", free_port()), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    collector = f"http://127.0.0.1:{sink.server_address[1]}"
    services: list[Service] = []
    cells: Rounds = {}
    raw: list[dict] = []
    quiet = Quiet(args.max_wait)
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
            traced_env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector}
            targets = [
                Target(name, extra, traced_env if traced else env) for name, extra, traced in specs
            ]
            if args.before:
                before_env = {**env, "PYTHONPATH": str(extract(args.before, workdir))}
                targets.append(Target("before", "", before_env))
            lua = wrk_script(workdir) if shutil.which("wrk") else None
            for round_ in range(args.rounds):
                print(f"  round {round_ + 1}/{args.rounds}", file=sys.stderr)
                quiet.wait()
                running = start_targets(
                    targets, args.instances, fake_url, workdir, pinning, services
                )
                if round_ == 0:
                    for service in [fake, *running]:
                        print(f"  {service.name}: {affinity(service.proc.pid)}", file=sys.stderr)
                    print(f"  this script: CPU {sorted(os.sched_getaffinity(0))}", file=sys.stderr)
                orders = balanced_orders(len(running))
                order = [running[i] for i in orders[round_ % len(orders)]]
                for stream in args.streams:  # warm-up
                    if args.slice:
                        slice_s = args.slice  # one slice each
                        take_sliced(running, fake, stream, WARM_UP_CONCURRENCY, slice_s, slice_s, 0)
                    else:
                        for service in order:
                            load(service.url, WARM_UP_CONCURRENCY, WARM_UP_S, stream, lua)
                for stream in args.streams:
                    for concurrency in args.concurrency:
                        if args.slice:
                            seconds = args.duration / args.instances
                            measure = functools.partial(
                                take_sliced,
                                running,
                                fake,
                                stream,
                                concurrency,
                                seconds,
                                args.slice,
                                round_,
                            )
                        else:
                            whole = max(1, round(args.duration / args.instances))
                            measure = functools.partial(
                                take_whole, order, fake, stream, concurrency, whole, lua
                            )
                        taken = quiet.cell(measure)
                        raw += [
                            {"round": round_, "process": name, "stream": stream}
                            | {"concurrency": concurrency, **cell.numbers, **cell.cpu}
                            for name, cell in taken.items()
                        ]
                        for name, cell in combine(taken).items():
                            cells.setdefault((name, stream, concurrency), []).append(cell)
                stop_all(running, services)
        finally:
            for service in reversed(services):
                service.stop()
            sink.shutdown()
    errors = sum(c.numbers["errors"] for rounds in cells.values() for c in rounds)
    if args.slice:
        how = f"slices of {args.slice:g} s taken in turn by the --drive load generator"
    else:
        how = "wrk -t1 (plain), loadgen.py (stream) runs taken in turn"
        how = how if lua else "loadgen.py runs taken in turn"
    print(
        f"\n{args.rounds} rounds, each with {args.instances} fresh processes per target and "
        f"{args.duration:g} s of load per target and cell, in {how}; {pinning.note}; "
        f"{os.cpu_count()} CPUs. Wall time {(time.monotonic() - started) / 60:.1f} min. Other "
        f"processes used at most {max(quiet.kept):.0f}% of a core during a cell kept (median "
        f"{statistics.median(quiet.kept):.0f}%); {quiet.retaken} cells taken again, "
        f"{quiet.disturbed} kept above {QUIET_PERCENT:.0f}%. Errors: {errors}."
        + (f" before = {args.before}." if args.before else "")
        + "\n"
    )
    print(report(cells, names))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
