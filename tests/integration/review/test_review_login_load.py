"""200 concurrent failed logins against `vlmod review` in its own process: its memory stays
bounded (each argon2 check takes 64 MiB, and only `login_hash_concurrency` run at once) and
/healthz keeps answering. bench/review_login.py prints the same figures in detail."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

from demo.harness import free_port, wait_until
from kafka_io.clients import create_topics

REPO = Path(__file__).resolve().parents[3]
LOGINS = 200
MEMORY_LIMIT_MB = 300


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_storm_of_failed_logins_keeps_memory_bounded_and_healthz_answering(
    tmp_path, kafka_settings, redis_url, topic_factory, password_hash
):
    topic = topic_factory("review-spam")
    create_topics(kafka_settings, ["moderation.decisions", "moderation.dead-letter"])
    config = {
        "kafka": {"bootstrap_servers": kafka_settings.bootstrap_servers},
        "redis_url": redis_url,
        "review_topics": {"spam": topic},
        "namespace": f"login-load:{secrets.token_hex(4)}",
        "session_secret": secrets.token_urlsafe(48),
        "login_max_failures_per_address": 100_000,  # every attempt reaches a password check
        "reviewers": {"ana": {"password_argon2": password_hash, "queues": ["*"]}},
    }
    (tmp_path / "review.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cli.main", "review", "--config", "review.yaml"]
    console = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _healthy(url), what="the console", timeout_s=120)
        statuses, peak_mb, health_s = _storm(url, console.pid)
    finally:
        console.terminate()
        console.wait(60)
    assert sum(statuses.values()) == LOGINS and set(statuses) <= {401, 503}, statuses
    assert statuses[401] >= 10, "the password checks went on throughout"
    assert peak_mb < MEMORY_LIMIT_MB, f"the console reached {peak_mb:.0f} MB"
    assert health_s and max(health_s) < 2.0, f"/healthz took up to {max(health_s):.2f} s"


def _storm(url: str, pid: int) -> tuple[Counter[int], float, list[float]]:
    """Fire the logins at once; the statuses, the console's peak RSS and /healthz times."""
    session = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{url}/login").text).group(1)
    cookies = session.cookies.get_dict()
    done, peak, health = threading.Event(), [0.0], []

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            started = time.perf_counter()
            assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
            health.append(time.perf_counter() - started)
            done.wait(0.02)

    def login(n: int) -> int:
        form = {"name": f"nobody-{n}", "password": f"guess-{n}", "csrf": csrf}
        answer = requests.post(
            f"{url}/login", data=form, cookies=cookies, allow_redirects=False, timeout=120
        )
        return answer.status_code

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(LOGINS) as pool:
            statuses = Counter(pool.map(login, range(LOGINS)))
    finally:
        done.set()
        watcher.join()
    return statuses, peak[0], health


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
