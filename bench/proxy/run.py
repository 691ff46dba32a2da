"""Proxy overhead of turnout (and LiteLLM's proxy) over the same fake upstream, in one run.

    python bench/proxy/run.py [--duration 5] [--skip-litellm]

Every number is read against the direct-to-upstream baseline measured in the same run, with the
same load generator, interleaved cell by cell (direct, turnout, LiteLLM at one concurrency and
mode, then the next), because this machine's absolute numbers drift from run to run. Prints a
markdown table for docs/benchmarks.md; bench/proxy/README.md says what each column means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
CONCURRENCIES = (1, 16, 64)
MODEL = "openai/gpt-4o-mini"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello in five words."}]}
# Clients present it to every target; only LiteLLM checks it (it refuses to start without one).
MASTER_KEY = "sk-bench-" + secrets.token_hex(16)
TICKS = os.sysconf("SC_CLK_TCK")
VERSION_SNIPPET = "import importlib.metadata as m; print(m.version('litellm'))"
HEADER = (
    "| target | mode | conc. | req/s | × direct | p50 / p99 ms | added p50 / p99 ms "
    "| TTFT p50 / p99 ms | added TTFT p50 / p99 ms | RSS MB | CPU % gw / fake / load "
    "| gw CPU ms/req | errors |"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """The pid and its descendants: a gateway may fork workers, all of which count."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process tree, from /proc/PID/stat (utime, stime)."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def own_cpu_seconds() -> float:
    """CPU of this process and its descendants, reaped ones (the load generators) included."""
    total = 0
    for member in process_tree(os.getpid()):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(field) for field in fields[11:15])  # utime stime cutime cstime
    return total / TICKS


def machine_cpu_seconds() -> float:
    """User and system CPU of every process since boot (/proc/stat; no interrupts)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(field) for field in fields[1:4]) / TICKS


def rss_mb(pid: int) -> float:
    """VmRSS of a process tree, in MB."""
    kb = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        kb += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kb / 1024


def children_cpu() -> float:
    """CPU of reaped children: the load generator is the only child reaped during a cell."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Service:
    """A spawned server in its own session, so the whole group dies with it."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])


def spawn(name: str, argv: list[str], url: str, workdir: Path, env: dict[str, str]) -> Service:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True
        )
    return Service(name, proc, url, log)


def wait_ready(service: Service, timeout_s: float) -> None:
    """Poll with a real chat completion (non-streaming and streaming) until both answer 200."""
    deadline = time.monotonic() + timeout_s
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                code = service.proc.returncode
                raise RuntimeError(f"{service.name} exited with {code}:\n{service.log_tail()}")
            try:
                plain = client.post(service.url, json=BODY, headers=headers)
                streamed = client.post(service.url, json={**BODY, "stream": True}, headers=headers)
                if plain.status_code == streamed.status_code == 200 and "[DONE]" in streamed.text:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise RuntimeError(f"{service.name} not ready after {timeout_s:.0f} s")


def wrk_script(workdir: Path) -> Path:
    """wrk needs Lua for a POST body; done() prints one JSON line that run.py parses."""
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {MASTER_KEY}"\n'
        f"wrk.body = [[{json.dumps({**BODY, 'stream': False})}]]\n"
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        '  io.write(string.format(\'{"requests": %d, "duration_us": %d, "p50_us": %d, '
        '"p99_us": %d, "status_errors": %d, "socket_errors": %d}\\n\', summary.requests, '
        "summary.duration, latency:percentile(50), latency:percentile(99), e.status, "
        "e.connect + e.read + e.write + e.timeout))\n"
        "end\n"
    )
    return script


def load(url: str, concurrency: int, duration: float, stream: bool, lua: Path | None) -> dict:
    """One load-generator process: wrk for plain requests when installed, else loadgen.py."""
    limit = duration + 60
    if lua is not None and not stream:
        argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{round(duration)}s", "--timeout", "10s"]
        done = subprocess.run(
            [*argv, "-s", str(lua), url], check=False, capture_output=True, text=True, timeout=limit
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"wrk failed: {done.stdout}{done.stderr}")
        raw = json.loads(lines[0])
        ok = raw["requests"] - raw["status_errors"]
        return {
            "rps": ok / (raw["duration_us"] / 1e6),
            "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "ttft_p50_ms": float("nan"),
            "ttft_p99_ms": float("nan"),
            "errors": raw["status_errors"] + raw["socket_errors"],
        }
    argv = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--key", MASTER_KEY]
    argv += ["--concurrency", str(concurrency), "--duration", str(duration)]
    argv += ["--stream"] if stream else []
    out = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@dataclass
class Cell:
    target: str
    stream: bool
    concurrency: int
    numbers: dict
    rss_mb: float
    cpu: dict[str, float] = field(default_factory=dict)


def measure(
    target: Service,
    fake: Service,
    stream: bool,
    concurrency: int,
    duration: float,
    lua: Path | None,
) -> Cell:
    """Warm up 1 s, then one measured run, sampling each process's CPU around it."""
    direct = target.name == "direct"
    load(target.url, concurrency, 1.0, stream, lua)
    before = (
        children_cpu(),
        cpu_seconds(fake.proc.pid),
        cpu_seconds(target.proc.pid),
        machine_cpu_seconds() - own_cpu_seconds(),
    )
    started = time.monotonic()
    numbers = load(target.url, concurrency, duration, stream, lua)
    wall = time.monotonic() - started
    after = (
        children_cpu(),
        cpu_seconds(fake.proc.pid),
        cpu_seconds(target.proc.pid),
        machine_cpu_seconds() - own_cpu_seconds(),
    )
    cpu = {
        "gw": float("nan") if direct else (after[2] - before[2]) / wall * 100,
        "fake": (after[1] - before[1]) / wall * 100,
        "load": (after[0] - before[0]) / wall * 100,
        # processes outside this benchmark: on a shared machine, a cell to take again
        "other": max(after[3] - before[3], 0.0) / wall * 100,
    }
    rss = float("nan") if direct else rss_mb(target.proc.pid)
    return Cell(target.name, stream, concurrency, numbers, rss, cpu)


def turnout_start(fake_url: str, workdir: Path) -> tuple[Service, str]:
    """`python -m turnout up` with routing off (no routing_preferences)."""
    config = workdir / "turnout.yaml"
    config.write_text(
        "version: v0.4.0\nlisteners:\n  - type: model\n    name: model_listener\n"
        f"    port: 12000\nmodel_providers:\n  - model: {MODEL}\n"
        f"    access_key: sk-upstream\n    base_url: {fake_url}\n    default: true\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    command = ["up", str(config), "--host", "127.0.0.1", "--port", str(port)]
    service = spawn(
        "turnout", [sys.executable, "-m", "turnout", *command], url, workdir, {**os.environ}
    )
    wait_ready(service, 120)
    return service, "`python -m turnout up`"


def litellm_start(
    venv: Path, fake_url: str, workdir: Path, install: bool
) -> tuple[Service | None, str]:
    """Install litellm[proxy] in a bench-only venv if asked, start it; (None, why) on failure."""
    exe = venv / "bin" / "litellm"
    if not exe.exists() and install:
        print(f"installing litellm[proxy] into {venv} (once, up to 15 min)...", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                check=True,
                timeout=900,
                capture_output=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"install failed: {exc}"
    if not exe.exists():
        return None, f"{exe} not found"
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", VERSION_SNIPPET],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: {MODEL}\n"
        f"      api_base: {fake_url}/v1\n"
        "      api_key: sk-upstream\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
    )
    port = free_port()
    # Local cost map: no fetch from the internet at start. WARNING: no per-request access log,
    # as turnout runs uvicorn.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "WARNING"}
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    service = spawn("litellm", argv, f"http://127.0.0.1:{port}/v1/chat/completions", workdir, env)
    try:
        wait_ready(service, 180)
    except RuntimeError as exc:
        tail = service.log_tail()
        service.stop()
        return None, f"start failed ({exc}); log tail:\n{tail}"
    return service, f"LiteLLM {version}"


def fmt(value: float, digits: int = 2) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def pair(a: float, b: float, digits: int = 2) -> str:
    return "—" if math.isnan(a) else f"{fmt(a, digits)} / {fmt(b, digits)}"


def signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.2f}"


def table(cells: list[Cell]) -> str:
    baseline = {(c.stream, c.concurrency): c.numbers for c in cells if c.target == "direct"}
    rows = [
        HEADER,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in cells:
        n, base = c.numbers, baseline[(c.stream, c.concurrency)]
        direct = c.target == "direct"
        added = [n[k] - base[k] for k in ("p50_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms")]
        added_latency = "—" if direct else f"{signed(added[0])} / {signed(added[1])}"
        added_ttft = "—" if direct or not c.stream else f"{signed(added[2])} / {signed(added[3])}"
        cpu = " / ".join(fmt(c.cpu[k], 0) for k in ("gw", "fake", "load"))
        per_request = c.cpu["gw"] * 10 / n["rps"] if n["rps"] else math.nan  # % of 1 s -> ms
        rows.append(
            f"| {c.target} | {'stream' if c.stream else 'plain'} | {c.concurrency} "
            f"| {n['rps']:.0f} | {n['rps'] / base['rps']:.3f} "
            f"| {pair(n['p50_ms'], n['p99_ms'])} | {added_latency} "
            f"| {pair(n['ttft_p50_ms'], n['ttft_p99_ms'])} | {added_ttft} "
            f"| {fmt(c.rss_mb, 0)} | {cpu} | {fmt(per_request)} | {n['errors']} |"
        )
    return "\n".join(rows)


def versions(turnout_note: str, litellm_note: str, wrk: bool) -> str:
    import turnout

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    loadgen = (
        "wrk -t1 (plain), bench/proxy/loadgen.py (stream)" if wrk else "bench/proxy/loadgen.py"
    )
    return (
        f"turnout {getattr(turnout, '__version__', '?')} ({turnout_note}), {litellm_note}, Python "
        f"{platform.python_version()}, {os.cpu_count()} × {cpu_model}; load generator: {loadgen}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per cell (whole)")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--litellm-venv", type=Path, default=Path("/tmp/litellm-venv"))
    parser.add_argument("--no-install", action="store_true", help="never pip-install LiteLLM")
    args = parser.parse_args()
    lua_ok = shutil.which("wrk") is not None
    # A SIGTERM must still reach the finally below that stops every spawned server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    services: list[Service] = []
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        workdir = Path(tmp)
        try:
            port = free_port()
            fake_url = f"http://127.0.0.1:{port}"
            argv = [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port)]
            fake = spawn("fake", argv, f"{fake_url}/v1/chat/completions", workdir, dict(os.environ))
            services.append(fake)
            wait_ready(fake, 30)
            direct = Service("direct", fake.proc, fake.url, fake.log)

            turnout, turnout_note = turnout_start(fake_url, workdir)
            services.append(turnout)
            targets = [direct, turnout]

            litellm_note = "LiteLLM skipped (--skip-litellm)"
            if not args.skip_litellm:
                litellm, litellm_note = litellm_start(
                    args.litellm_venv, fake_url, workdir, not args.no_install
                )
                if litellm is None:
                    print(f"LiteLLM skipped: {litellm_note}", file=sys.stderr)
                    litellm_note = f"LiteLLM skipped: {litellm_note.splitlines()[0]}"
                else:
                    services.append(litellm)
                    targets.append(litellm)

            lua = wrk_script(workdir) if lua_ok else None
            cells: list[Cell] = []
            for stream in (False, True):
                for concurrency in CONCURRENCIES:
                    for target in targets:
                        print(
                            f"  {target.name} stream={stream} c={concurrency}...", file=sys.stderr
                        )
                        cell = measure(target, fake, stream, concurrency, args.duration, lua)
                        cells.append(cell)
        finally:
            for service in reversed(services):
                service.stop()
    setup = versions(turnout_note, litellm_note, lua_ok)
    print(f"\n{setup}; {args.duration} s per cell after a 1 s warm-up.")
    print(
        "Load generator, gateway and fake upstream share the same 2 cores: read ratios and "
        "differences against `direct` from the same run, not absolute numbers.\n"
    )
    print(table(cells))


if __name__ == "__main__":
    main()
