"""The compiled policy engine (`policies.native`): found only for the sources as they are, and
deciding exactly as the Python sources do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import policies
import policies.compiled
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir
from policies.native import ROOT, activate, build_dir, digest
from tests.unit.policies.test_python_terms import judged, random_cases
from tests.unit.replay.test_replay_fast import EXAMPLES


def sources(root: Path) -> Path:
    for package in ("policies", "contracts"):
        (root / package).mkdir(parents=True)
        (root / package / "a.py").write_text(f"NAME = {package!r}\n")
    return root


def test_the_digest_follows_every_source_the_build_reads(tmp_path):
    root = sources(tmp_path)
    before = digest(root)
    assert digest(root) == before
    (root / "contracts" / "a.py").write_text("NAME = 'changed'\n")
    assert digest(root) != before
    (root / "contracts" / "a.py").write_text("NAME = 'contracts'\n")
    assert digest(root) == before
    (root / "policies" / "b.py").write_text("")
    after = digest(root)
    assert after != before
    (root / "policies" / "notes.md").write_text("not a source")
    assert digest(root) == after
    assert build_dir(root).name == f"{sys.implementation.cache_tag}-{after}"


def test_without_a_build_of_these_sources_the_engine_is_the_python_one(tmp_path, monkeypatch):
    root = sources(tmp_path)
    stale = root / ".vlmod" / "native" / f"{sys.implementation.cache_tag}-0123456789abcdef"
    (stale / "policies").mkdir(parents=True)
    (stale / "vlmod_policies__mypyc.so").write_bytes(b"a build of other sources")
    path = [str(root / "policies")]
    monkeypatch.delenv("VLMOD_NATIVE", raising=False)
    assert activate(path, root).startswith("python (no build")
    assert path == [str(root / "policies")]
    monkeypatch.setenv("VLMOD_NATIVE", "off")
    assert activate(path, root) == "python (VLMOD_NATIVE=off)"
    monkeypatch.setenv("VLMOD_NATIVE", "require")
    with pytest.raises(ImportError, match="vlmod policy engine --build"):
        activate(path, root)
    monkeypatch.setenv("VLMOD_NATIVE", "fast")
    with pytest.raises(ValueError, match="auto, off, require"):
        activate(path, root)
    assert path == [str(root / "policies")]


def test_a_build_that_does_not_load_runs_the_sources_or_is_refused(tmp_path, monkeypatch):
    root = sources(tmp_path)
    (build_dir(root) / "policies").mkdir(parents=True)
    (build_dir(root) / "vlmod_policies__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    # This process may run the real build: out of sight here, its modules keep their library.
    monkeypatch.delitem(sys.modules, "vlmod_policies__mypyc", raising=False)
    path = [str(root / "policies")]
    monkeypatch.delenv("VLMOD_NATIVE", raising=False)
    with pytest.warns(UserWarning, match="does not load"):
        assert activate(path, root).startswith("python (the build at")
    assert path == [str(root / "policies")]
    assert "vlmod_policies__mypyc" not in sys.modules
    monkeypatch.setenv("VLMOD_NATIVE", "require")
    with pytest.raises(ImportError, match="does not load"):
        activate(path, root)


def test_the_engine_modules_come_from_the_build_exactly_when_it_is_used():
    built = build_dir(ROOT).is_dir() and os.environ.get("VLMOD_NATIVE", "auto") != "off"
    module = Path(policies.compiled.__file__)
    assert policies.ENGINE.startswith("mypyc") == built
    assert (module.parent.parent == build_dir(ROOT)) == built
    assert (module.suffix == ".py") != built
    if os.environ.get("VLMOD_NATIVE") == "require":
        assert built, "CI runs the suite on the compiled engine"


def decisions() -> list[str]:
    """Every example policy's plan and decision on random posts, as JSON lines."""
    found = load_policy_dir(EXAMPLES, registry=producer_registry()).policies
    lines = []
    for case in random_cases(found, 400, seed=11):
        for policy in found:
            plan, decision = judged(policy, case, False)
            verdict = decision.to_verdict(case[0]["id"]).model_dump(mode="json")
            del verdict["processed_at"]  # the clock, not the decision
            lines.append(json.dumps([sorted(map(list, plan.refs)), verdict], sort_keys=True))
    return lines


def test_the_engine_in_use_decides_as_the_python_sources_do():
    script = "import json, tests.unit.policies.test_native as t; print(json.dumps(t.decisions()))"
    env = {**os.environ, "VLMOD_NATIVE": "off", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reference = json.loads(done.stdout)
    mine = decisions()
    assert len(mine) == len(reference) > 1000
    assert mine == reference
    # The sample decides more than one way, errors included.
    assert len({json.loads(line)[1]["action"] for line in mine}) >= 2
    assert any(json.loads(line)[1]["rule_errors"] for line in mine)


def test_the_command_says_which_engine_runs_and_keeps_a_build_of_these_sources():
    from typer.testing import CliRunner

    from cli.main import app

    said = CliRunner().invoke(app, ["policy", "engine"])
    assert said.exit_code == 0 and said.output.strip() == policies.ENGINE
    target = build_dir(ROOT)
    if not target.is_dir():
        assert "vlmod policy engine --build" in said.output or "VLMOD_NATIVE=off" in said.output
        return
    built_at = target.stat().st_mtime_ns
    again = CliRunner().invoke(app, ["policy", "engine", "--build"])
    assert again.exit_code == 0 and again.output.strip() == f"compiled policy engine: {target}"
    assert target.stat().st_mtime_ns == built_at  # the build of these sources is kept, not redone


def test_a_failed_build_exits_1_with_the_reason(monkeypatch):
    from typer.testing import CliRunner

    import policies.native
    from cli.main import app
    from policies.exceptions import NativeBuildFailed

    def failing() -> Path:
        raise NativeBuildFailed("mypyc could not compile the policy engine: no C compiler")

    monkeypatch.setattr(policies.native, "build_engine", failing)
    result = CliRunner().invoke(app, ["policy", "engine", "--build"])
    assert result.exit_code == 1
    assert "vlmod policy engine --build: mypyc could not compile" in result.output


def test_a_new_build_removes_the_builds_of_earlier_sources(tmp_path):
    from policies.native import _remove_stale

    tag = sys.implementation.cache_tag
    builds = tmp_path / ".vlmod" / "native"
    for name in (f"{tag}-aaaa", f"{tag}-bbbb", "cpython-399-cccc"):
        (builds / name / "policies").mkdir(parents=True)
    _remove_stale(builds / f"{tag}-bbbb")
    assert {p.name for p in builds.iterdir()} == {"cpython-399-cccc", f"{tag}-bbbb"}
