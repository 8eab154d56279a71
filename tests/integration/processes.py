"""What of the harness's servers is still running: they are children of the test process,
each leading its own session."""

from __future__ import annotations

import subprocess


def servers_left(parent: int) -> list[str]:
    """`pid args` of each live child of `parent` that leads its own session."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,sid=,stat=,args="], capture_output=True, text=True
    )
    left = []
    for line in out.stdout.splitlines():
        fields = line.split(None, 4)
        if len(fields) < 5:
            continue
        pid, ppid, sid, stat, args = fields
        if int(ppid) == parent and pid == sid and not stat.startswith("Z"):
            left.append(f"{pid} {args}")
    return left
