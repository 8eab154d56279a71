"""`vlmod model make-tiny` fails in one line naming the path, exit 2, never a traceback."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from cli.main import app
from operators.tiny import checkpoint_directory


def make_tiny(target) -> str:
    result = CliRunner().invoke(app, ["model", "make-tiny", str(target)])
    assert "Traceback" not in result.output + result.stderr
    assert result.exit_code == 2, (result.exception, result.output)
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    [line] = result.stderr.splitlines()
    return line


def test_onto_an_existing_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_text("not a directory")
    assert make_tiny(target) == f"error: {target} exists and is not a directory"
    assert target.read_text() == "not a directory"


def test_below_an_existing_file(tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "model"
    assert make_tiny(target) == f"error: cannot create {target}: Not a directory"


def test_into_a_place_nothing_may_be_created():
    assert make_tiny("/proc/vlmod-tiny") == (
        "error: cannot create /proc/vlmod-tiny: No such file or directory"
    )


def test_into_a_directory_without_write_permission(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root writes anywhere: make the check say what it would
        real_access = os.access

        def no_writes_into_locked(path, mode):
            return not (str(path) == str(locked) and mode & os.W_OK) and real_access(path, mode)

        monkeypatch.setattr(os, "access", no_writes_into_locked)
    try:
        assert make_tiny(locked) == f"error: cannot write into {locked}: permission denied"
    finally:
        locked.chmod(0o755)


def test_a_failed_write_names_the_directory(tmp_path):
    (tmp_path / "model.safetensors").mkdir()  # the weights file cannot be written
    line = make_tiny(tmp_path)
    assert line.startswith(f"error: cannot write the checkpoint into {tmp_path}: "), line


def test_checkpoint_directory_creates_missing_parents(tmp_path):
    target = tmp_path / "a" / "b"
    assert checkpoint_directory(target) == target and target.is_dir()
    (target / "x.txt").touch()
    with pytest.raises(FileExistsError, match=r"x\.txt exists and is not a directory"):
        checkpoint_directory(target / "x.txt")
