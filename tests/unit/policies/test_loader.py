"""Loading a policy directory: a set that would route nothing is refused in one line."""

from __future__ import annotations

import pytest

from policies.exceptions import PolicyInvalid
from policies.loader import load_policy_dir

ACTIVE = "id: p\nversion: 1\nrules:\n  - id: r\n    when: text == 'x'\n    action: review\n"


def refusal(directory, **kwargs) -> str:
    with pytest.raises(PolicyInvalid) as refused:
        load_policy_dir(directory, **kwargs)
    return str(refused.value)


def test_a_directory_without_policy_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a policy")
    assert refusal(tmp_path) == f"{tmp_path}: no policy files (*.yaml, *.yml) found"


def test_a_missing_directory_is_refused(tmp_path):
    assert refusal(tmp_path / "nope") == f"{tmp_path / 'nope'}: not a directory"


def test_shadow_only_policies_are_refused_unless_asked_for(tmp_path):
    (tmp_path / "p.yaml").write_text(ACTIVE + "mode: shadow\n")
    assert "no active policy (only shadow ones)" in refusal(tmp_path)
    assert load_policy_dir(tmp_path, require_active=False).shadow


def test_one_active_policy_loads(tmp_path):
    (tmp_path / "p.yaml").write_text(ACTIVE)
    assert [policy.ref.id for policy in load_policy_dir(tmp_path).active] == ["p"]
