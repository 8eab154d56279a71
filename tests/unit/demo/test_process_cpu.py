"""ProcessCpu: what each process of the box spent since a start point, by name."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.harness import ProcessCpu

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# Names itself `cpu-burner` (prctl PR_SET_NAME), burns 0.3 s of CPU, says so, then waits.
BURNER = """
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, b"cpu-burner", 0, 0, 0)
while time.process_time() < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.readline()
"""


def test_cpu_is_counted_for_the_process_that_spent_it():
    clock = ProcessCpu()
    burner = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert burner.stdout is not None and burner.stdout.readline() == "burnt\n"
        started = time.process_time()
        while time.process_time() - started < 0.2:
            pass
        used = clock.used()
    finally:
        burner.communicate("")
    assert used["cpu-burner"] >= 0.25
    assert 0.15 <= used["this process"] < 0.45, "the child's 0.3 s must not count here"


def test_what_ran_before_the_start_point_is_not_counted():
    started = time.process_time()
    while time.process_time() - started < 0.2:
        pass
    used = ProcessCpu().used()
    assert used["this process"] < 0.1


# Burns 0.3 s, says so, waits; then renames itself `renamed`, burns 0.1 s more, says so, waits.
RENAMER = """
import ctypes, sys, time
def burn(until):
    while time.process_time() < until:
        pass
burn(0.3)
print("burnt", flush=True)
sys.stdin.readline()
ctypes.CDLL(None).prctl(15, b"renamed", 0, 0, 0)
burn(0.4)
print("burnt", flush=True)
sys.stdin.readline()
"""


def test_a_process_that_renames_itself_counts_only_what_it_spent_since():
    burner = subprocess.Popen(
        [sys.executable, "-c", RENAMER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert burner.stdout is not None and burner.stdout.readline() == "burnt\n"
        clock = ProcessCpu()
        assert burner.stdin is not None
        burner.stdin.write("go\n")
        burner.stdin.flush()
        assert burner.stdout.readline() == "burnt\n"
        used = clock.used()
    finally:
        burner.communicate("")
    assert 0.05 <= used["renamed"] < 0.25, "the 0.3 s spent before the start point counted"
