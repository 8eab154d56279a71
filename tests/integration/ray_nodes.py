"""A Ray cluster of real nodes on this machine, started with `ray start` as a cluster operator
starts one: a head, and worker nodes that join it with custom resources. Each node is a
`ray start --block` process leading its own session, so losing a node is killing every process
of that session (its raylet, its object store and its workers) at once.

The test process never connects to this cluster (it may be a driver of another one already);
`vlmod run` is its driver, with `RAY_ADDRESS` naming the head.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from demo.harness import free_port, port_answers, wait_until

ROOT = Path(__file__).resolve().parents[2]


def ray_command() -> str:
    """The `ray` CLI beside this Python."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


def node_env() -> dict[str, str]:
    """What every node's processes see: the repository importable, no usage reports."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }


@dataclass
class RayNode:
    """One node: the head (no `address`) or a worker joining `address`."""

    workdir: Path
    name: str
    address: str | None = None
    num_cpus: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def gcs_address(self) -> str:
        """host:port of the head, for RAY_ADDRESS and for nodes that join."""
        return self.address or f"127.0.0.1:{self.port}"

    def start(self) -> RayNode:
        """Start the node (a head waits until its GCS answers)."""
        argv = [ray_command(), "start", "--block", "--disable-usage-stats"]
        argv += ["--node-ip-address=127.0.0.1", f"--num-cpus={self.num_cpus}"]
        if self.resources:
            argv.append(f"--resources={json.dumps(self.resources)}")
        if self.address is None:
            argv += ["--head", f"--port={self.port}", "--include-dashboard=false"]
            argv.append(f"--temp-dir={self.workdir / 'ray'}")
        else:
            argv.append(f"--address={self.address}")
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            argv, env=node_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if self.address is None:
            wait_until(self._answers, what=f"Ray head on port {self.port}", timeout_s=60)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"ray start exited {self.process.returncode}; see {self.name}.log")
        return port_answers(self.port)

    def session_processes(self) -> list[tuple[int, str]]:
        """(pid, args) of every live process of this node's session."""
        if self.process is None:
            return []
        return processes_of_session(self.process.pid)

    def kill(self) -> None:
        """Lose the node: SIGKILL every process of its session, and wait until none is left."""
        if self.process is None:
            return
        leader = self.process.pid
        for pid, _ in processes_of_session(leader):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(30)
        wait_until(lambda: not processes_of_session(leader), what=f"{self.name} gone", timeout_s=30)
        self.process = None


def processes_of_session(sid: int) -> list[tuple[int, str]]:
    """(pid, args) of each live (not zombie) process whose session id is `sid`."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,sid=,stat=,args="], capture_output=True, text=True, check=True
    )
    found = []
    for line in out.stdout.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and int(fields[1]) == sid and not fields[2].startswith("Z"):
            found.append((int(fields[0]), fields[3]))
    return found
