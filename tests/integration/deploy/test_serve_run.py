"""`serve run deploy/serve.yaml` answers POST /v1/moderate, and leaves no process behind.

The command runs as it would for an operator: a subprocess in the repository root, no
RAY_ADDRESS, so `serve run` starts its own local Ray. That Ray gets a private temp root
(RAY_TMPDIR): it can never attach to the test session's Ray (nor to a `ray start` cluster
recorded under /tmp/ray), and its sockets and logs stay apart. Ray workers leave the process
group of `serve run`, so every process it spawned is found by a marker in its environment and
only those are stopped; `ray stop` would also kill the session's own Ray.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from contracts.records import Verdict
from demo.harness import free_port

REPO = Path(__file__).resolve().parents[3]
READY_TIMEOUT_S = 180
MARKER = "VLMOD_SERVE_RUN_TEST"
MAX_REQUEST_BYTES = 1_000_000
# A process started in the background by a non-interactive shell (CI, `nohup ... &`) ignores
# SIGINT, and its children inherit that: `serve run` would then sleep through the Ctrl-C that
# stops it, until `stop` kills it a minute later. This puts SIGINT back to its default before
# `serve run` starts, as an operator's terminal has it.
WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

pytestmark = pytest.mark.integration


@dataclass
class ServeRun:
    process: subprocess.Popen
    base_url: str
    log: Path
    marker: str

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment carries this run's marker."""
    needle = f"{MARKER}={marker}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return [pid for pid in pids if not is_zombie(pid)]


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def wait_until_gone(marker: str, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := marked_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def stop(run: ServeRun) -> bool:
    """Ctrl-C `serve run` (it shuts Serve and its Ray down), then kill whatever it left.

    True when `serve run` exited by itself on the Ctrl-C.
    """
    exited = False
    if run.process.poll() is None:
        run.process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.process.wait(timeout=60)
            exited = True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.process.pid, signal.SIGKILL)
    run.process.wait(timeout=10)
    signal_all(wait_until_gone(run.marker, 20), signal.SIGTERM)
    signal_all(wait_until_gone(run.marker, 10), signal.SIGKILL)
    return exited


@pytest.fixture(scope="module")
def serve_run(tmp_path_factory) -> Iterator[ServeRun]:
    """One `serve run` for the module: starting it is what costs."""
    tmp_path = tmp_path_factory.mktemp("serve-run")
    config = yaml.safe_load((REPO / "deploy" / "serve.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    config["applications"][0]["args"]["api"] = {"max_request_bytes": MAX_REQUEST_BYTES}
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # Unix socket paths are limited to 107 bytes, so the Ray root is short, not under tmp_path.
    ray_root = Path(tempfile.mkdtemp(prefix="vlmod-serve-", dir="/tmp"))
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=str(ray_root),
        **{MARKER: marker},
    )
    log = tmp_path / "serve-run.log"
    serve_cli = Path(sys.executable).parent / "serve"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", WITH_DEFAULT_SIGINT, str(serve_cli), "run", str(config_path)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = ServeRun(process, f"http://127.0.0.1:{port}", log, marker)
    try:
        yield run
    finally:
        exited = stop(run)
        left = marked_pids(marker)
        shutil.rmtree(ray_root, ignore_errors=True)
        assert not left, f"serve run left processes behind: {left}"
        stopped = "was gone before, or did not stop on Ctrl-C within 60 s"
        assert exited, f"serve run {stopped}:\n{run.log_tail()}"


def wait_ready(run: ServeRun) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if run.process.poll() is not None:
            pytest.fail(f"serve run exited with {run.process.returncode}:\n{run.log_tail()}")
        try:
            with urllib.request.urlopen(f"{run.base_url}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"/healthz not ready after {READY_TIMEOUT_S} s:\n{run.log_tail()}")


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def png_base64() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 40, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_serve_run_answers_moderate(serve_run):
    wait_ready(serve_run)
    post = {
        "id": "deploy-serve-1",
        "text": "limited offer, message me for cheap watches",
        "images": [{"data": png_base64(), "mime": "image/png"}],
    }
    status, body = post_json(f"{serve_run.base_url}/v1/moderate", post)
    assert status == 200, (body, serve_run.log_tail())
    verdict = Verdict.model_validate(body)
    assert verdict.post_id == "deploy-serve-1"
    assert verdict.action.value in {"allow", "review", "block", "escalate"}
    assert verdict.model is not None

    status, body = post_json(f"{serve_run.base_url}/v1/moderate", {"text": "no id"})
    assert status == 422, body
    assert body["detail"]["stage"] == "validate"
    assert "id" in body["detail"]["error"]


def post_raw(run: ServeRun, body: bytes, *, declared: int | None = None) -> tuple[int, bytes]:
    """POST `body`; `declared` sends that Content-Length but only `body`, or chunks when None."""
    connection = http.client.HTTPConnection(run.base_url.removeprefix("http://"), timeout=60)
    try:
        connection.putrequest("POST", "/v1/moderate")
        connection.putheader("Content-Type", "application/json")
        if declared is None:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for start in range(0, len(body), 64 * 1024):
                chunk = body[start : start + 64 * 1024]
                with contextlib.suppress(ConnectionError):  # the server may answer early
                    connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            with contextlib.suppress(ConnectionError):
                connection.send(b"0\r\n\r\n")
        else:
            connection.putheader("Content-Length", str(declared))
            connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_serve_run_refuses_big_bodies_and_never_echoes_a_post(serve_run):
    wait_ready(serve_run)
    # Declared too big: refused from the header, before a byte of the body is read.
    status, body = post_raw(serve_run, b"{" + b" " * 1000, declared=20_000_000)
    assert status == 413, body[:500]
    assert len(body) < 300 and b"api.max_request_bytes" in body, body
    # Chunked, no length: refused once the stream passes the limit.
    status, body = post_raw(serve_run, b" " * (3 * MAX_REQUEST_BYTES))
    assert status == 413, body[:500]
    assert len(body) < 300, body

    secret = "do-not-echo-" * 20
    post = {"text": "no id", "meta": {"note": secret}}
    raw = json.dumps(post).encode()
    status, body = post_raw(serve_run, raw, declared=len(raw))
    assert status == 422, body
    detail = json.loads(body)["detail"]
    assert set(detail) == {"stage", "error_type", "error", "post_id"}
    assert secret.encode() not in body
    assert base64.b64encode(raw)[:40] not in body

    not_json = b"\xff not json"
    status, body = post_raw(serve_run, not_json, declared=len(not_json))
    assert status == 422, body
    assert json.loads(body)["detail"]["stage"] == "decode"
