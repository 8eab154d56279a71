"""Each kind of policy error has a snapshot of its exact `FILE:LINE:COL: message` output.

Regenerate after a deliberate message change with `UPDATE_GOLDEN=1 pytest tests/unit/policies`.
"""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.policy import app

GOLDEN = Path(__file__).parent / "golden"
# A case is a policy file, or a directory of them for problems across files (`case/*.yaml`).
CASES = sorted(
    path.name
    for path in GOLDEN.iterdir()
    if path.suffix == ".yaml" or (path.is_dir() and not path.name.startswith((".", "_")))
)


@pytest.mark.parametrize("name", CASES)
def test_check_output_matches_snapshot(name, monkeypatch):
    monkeypatch.chdir(GOLDEN)
    result = CliRunner().invoke(app, ["check", name])
    assert result.exit_code == 1, result.output
    snapshot = GOLDEN / (Path(name).stem + ".txt")
    if os.environ.get("UPDATE_GOLDEN"):
        snapshot.write_text(result.stdout)
    assert result.stdout == snapshot.read_text()


def test_every_case_has_a_snapshot():
    assert {p.stem for p in GOLDEN.glob("*.txt")} == {Path(n).stem for n in CASES}
