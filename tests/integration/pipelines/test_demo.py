"""`vlmod demo`, the README's first command, end to end in its own process."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile


def test_demo_moderates_every_sample_and_dead_letters_the_malformed(tmp_path):
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLUMNS": "200",
    }
    env.pop("RAY_ADDRESS", None)
    # A Ray root of its own (short, for Ray's socket paths): never the test session's Ray.
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="vlmod-demo-", dir="/tmp")
    done = subprocess.run(
        [shutil.which("vlmod") or "vlmod", "demo", "--posts", "6"],
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
    for stage in ("decode", "validate", "fetch-image"):
        assert stage in done.stdout
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
