"""Does turnout's memory stay flat over many requests? RSS sampled while it serves N of them.

    python bench/proxy/soak.py [--requests 100000]

The same fake upstream and load generators as run.py; turnout with routing off, one worker;
plain and streamed requests alternate in 5 s batches at concurrency 16 until N have been served.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from run import HERE, free_port, load, rss_mb, spawn, turnout_start, wait_ready, wrk_script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="proxy-soak-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        fake_url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port)]
        fake = spawn("fake", argv, f"{fake_url}/v1/chat/completions", workdir, dict(os.environ))
        services = [fake]
        try:
            wait_ready(fake, 30)
            turnout, _ = turnout_start(fake_url, workdir)
            services.append(turnout)
            lua = wrk_script(workdir) if shutil.which("wrk") else None
            served, batch = 0, 0
            samples = [(0, rss_mb(turnout.proc.pid))]
            while served < args.requests and batch < 200:
                result = load(turnout.url, 16, 5, stream=batch % 2 == 1, lua=lua)
                served += int(result["rps"] * 5)
                batch += 1
                samples.append((served, rss_mb(turnout.proc.pid)))
            print("| requests served | turnout RSS MB |\n|--:|--:|")
            for count, rss in samples:
                print(f"| {count} | {rss:.0f} |")
            after_warmup = samples[min(2, len(samples) - 1)][1]
            print(
                f"\nRSS growth after the first 2 batches: {samples[-1][1] - after_warmup:+.1f} MB"
            )
        finally:
            for service in reversed(services):
                service.stop()


if __name__ == "__main__":
    main()
