"""Benchmark the review console under a storm of failed logins: memory and /healthz latency.

Starts Tansu and Redis through the harness, then `vlmod review` as its own process (so its
memory is its own), and fires `--logins` concurrent failed logins at it, each with a distinct
user name, all from one client that fetched the login form once (as a script would). While
they run it samples the console's resident memory (/proc, every 20 ms) and times /healthz
again and again. It prints the console's memory before and at its peak, /healthz latency
(p50, p99, max) during the storm, and how the logins were answered (401 wrong password, 429
throttled, 503 no password check came free in time).

    python bench/review_login.py                      # the config's defaults
    python bench/review_login.py --open-limiter       # no per-address limit: every login hashes
    python bench/review_login.py --repo ../old-tree   # the same storm against another checkout

`--repo` runs the console from another checkout of this project with the same config, keys
that checkout does not know left out (for before/after figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from multiprocessing import Event, Process, Queue
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from demo.harness import free_port, running_services, wait_until  # noqa: E402
from kafka_io.clients import create_topics  # noqa: E402
from kafka_io.settings import KafkaSettings  # noqa: E402
from review.auth import hash_password  # noqa: E402


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_config(path: Path, kafka: str, redis_url: str, *, new_keys: bool, open_limiter: bool):
    """A console config over fresh topics; `new_keys` only where the console knows them."""
    topic = f"bench-login-{secrets.token_hex(4)}"
    create_topics(KafkaSettings(bootstrap_servers=kafka), [topic, "moderation.decisions"])
    config = {
        "kafka": {"bootstrap_servers": kafka},
        "redis_url": redis_url,
        "review_topics": {"spam": topic},
        "namespace": f"bench-login:{secrets.token_hex(4)}",
        "session_secret": secrets.token_urlsafe(48),
        "reviewers": {"ana": {"password_argon2": hash_password("right"), "queues": ["*"]}},
    }
    if new_keys and open_limiter:
        config["login_max_failures_per_address"] = 100_000
    path.write_text(yaml.safe_dump(config))


def start_console(repo: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    """`vlmod review` from `repo`'s code, on `port`."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-c", "from cli.main import main; main()"]
    args = ["review", "--config", str(config), "--port", str(port)]
    return subprocess.Popen([*command, *args], cwd=repo, env=env, stdout=subprocess.DEVNULL)


async def storm(url: str, logins: int) -> Counter[int]:
    """`logins` failed logins at once, one form and cookie for all; their status codes."""
    timeout = aiohttp.ClientTimeout(total=600)
    limits = aiohttp.TCPConnector(limit=0)
    jar = aiohttp.CookieJar(unsafe=True)  # it keeps no cookie from a bare IP address otherwise
    async with aiohttp.ClientSession(timeout=timeout, connector=limits, cookie_jar=jar) as session:
        async with session.get(f"{url}/login") as page:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)

        async def one(n: int) -> int:
            form = {"name": f"nobody-{n}", "password": f"guess-{n}", "csrf": csrf}
            async with session.post(f"{url}/login", data=form, allow_redirects=False) as answer:
                await answer.read()
                return answer.status

        return Counter(await asyncio.gather(*(one(n) for n in range(logins))))


def sample_health(url: str, stop: Event, out: Queue) -> None:
    """Time /healthz every 50 ms until `stop`, in a process of its own (no GIL shared)."""
    import urllib.request

    times = []
    while not stop.is_set():
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as answer:
            answer.read()
        times.append((time.perf_counter() - started) * 1000)
        stop.wait(0.05)
    out.put(times)


class MemorySampler(threading.Thread):
    """Samples the console's resident memory every 20 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.memory: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.memory.append(rss_mb(self.pid))
            self.stop.wait(0.02)


def main() -> None:
    """Run the storm and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--repo", type=Path, default=_REPO)
    parser.add_argument("--open-limiter", action="store_true")
    args = parser.parse_args()
    new_keys = args.repo.resolve() == _REPO
    with running_services(ray=False) as services, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "review.yaml"
        write_config(
            config,
            services.kafka_bootstrap,
            services.redis_url,
            new_keys=new_keys,
            open_limiter=args.open_limiter,
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        console = start_console(args.repo.resolve(), config, port)
        try:
            wait_until(lambda: _answers(url), what="the console", timeout_s=120)
            time.sleep(1)  # let start-up allocations settle before the baseline
            before = rss_mb(console.pid)
            memory, stop, out = MemorySampler(console.pid), Event(), Queue()
            health_process = Process(target=sample_health, args=(url, stop, out), daemon=True)
            memory.start()
            health_process.start()
            started = time.perf_counter()
            statuses = asyncio.run(storm(url, args.logins))
            took = time.perf_counter() - started
            stop.set()
            health = sorted(out.get(timeout=60))
            health_process.join()
            memory.stop.set()
            memory.join()
        finally:
            console.terminate()
            console.wait(60)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; console from {args.repo}")
    print(f"{args.logins} concurrent failed logins, answered in {took:.1f} s: {dict(statuses)}")
    print(f"console RSS: {before:.0f} MB before, {max(memory.memory):.0f} MB at peak")
    print(
        f"/healthz during the storm ({len(health)} calls): p50 {statistics.median(health):.1f} ms, "
        f"p99 {health[int(len(health) * 0.99) - 1]:.1f} ms, max {health[-1]:.1f} ms"
    )


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
