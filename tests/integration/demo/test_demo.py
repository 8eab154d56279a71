"""`vlmod demo`, the README's first command, end to end in its own process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

VLMOD = shutil.which("vlmod") or "vlmod"


def demo_env() -> dict[str, str]:
    """The environment a demo runs in: a Ray root of its own, never the test session's Ray."""
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLUMNS": "200",
    }
    env.pop("RAY_ADDRESS", None)
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="vlmod-demo-", dir="/tmp")  # short socket paths
    return env


def start_demo(tmp_path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """`vlmod demo --posts 6 ARGS` in the background, its output merged into one text stream."""
    return subprocess.Popen(
        [VLMOD, "demo", "--posts", "6", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_demo_moderates_every_sample_and_dead_letters_the_malformed(tmp_path):
    env = demo_env()
    done = subprocess.run(
        [VLMOD, "demo", "--posts", "6"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "6/6 posts got verdicts, 5/5 malformed messages dead-lettered" in done.stdout
    assert "random weights" in done.stdout
    # One verdict from each real specialist, on the bundled showcase posts.
    assert "known-bad-image" in done.stdout, "the resized, cropped repost matched the bank"
    assert "scam-text-in-image" in done.stdout, "OCR read the flyer"
    assert "abusive-language" in done.stdout, "profanity flagged the text"
    assert "known-bad match (distance" in done.stdout and "nsfw 0." in done.stdout
    verdicts = done.stdout.split("Dead letters")[0]
    assert "escalate" not in verdicts, "random-weight scores never escalate an innocent post"
    assert "text only" in done.stdout and "text + 2 images" in done.stdout
    for stage in ("decode", "validate", "fetch-image"):
        assert stage in done.stdout
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def test_sigterm_to_the_demo_leaves_no_server_behind(tmp_path):
    import re
    import signal

    from .test_harness import check_gone

    env = demo_env()
    demo = start_demo(tmp_path, env)
    try:
        ports = None
        for line in demo.stdout:
            ports = re.search(r"Kafka 127\.0\.0\.1:(\d+) · Redis redis://127\.0\.0\.1:(\d+)", line)
            if ports:
                break
        assert ports, "the demo never said where its services run"
        servers = server_pids(ports.groups())
        assert len(servers) == 2, f"no Tansu and Redis on ports {ports.groups()}: {servers}"
        demo.send_signal(signal.SIGTERM)
        demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode != 0, "SIGTERM stops the demo before it finishes"
    check_gone(servers)
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def server_pids(ports) -> set[int]:
    """Tansu and Redis processes whose command line names one of `ports`."""
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True)
    found = set()
    for line in out.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        ours = any(f":{port}" in args for port in ports)
        if ours and ("tansu" in args or "redis-server" in args):
            found.add(int(pid))
    return found


def test_demo_review_serves_a_console_where_the_demos_tasks_are_decided(tmp_path):
    import signal
    from pathlib import Path

    import pytest

    from demo.harness import free_port

    if not Path("/usr/bin/chromium").exists() and not os.environ.get("CI"):
        pytest.skip("no Debian chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    env = demo_env()
    demo = start_demo(tmp_path, env, "--review", "--review-port", str(free_port()))
    try:
        ready = None
        for line in demo.stdout:
            ready = re.search(r"review console: (\S+) · reviewer demo, password (\S+)", line)
            if ready:
                break
        assert ready, "the demo never said where its console runs"
        url, password = ready.group(1).rstrip("/"), ready.group(2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = browser.new_page()
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "demo")
            page.fill("input[name=password]", password)
            page.click("#login button[type=submit]")
            page.wait_for_url(f"{url}/")
            # The profane post's community-standards verdict is queued for harassment review.
            page.goto(f"{url}/queue/harassment")
            deadline = time.monotonic() + 60
            while not page.locator("#task").count() and time.monotonic() < deadline:
                with page.expect_navigation():
                    page.keyboard.press("n")
            assert page.locator("#post-id").inner_text() == "post-profane"
            page.keyboard.press("u")
            page.wait_for_url(re.compile(r"/queue/harassment\?done=uphold$"))
            browser.close()
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0 and "stopped" in out
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
