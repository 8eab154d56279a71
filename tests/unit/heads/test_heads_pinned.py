"""`NAME@VERSION` in a policy pins a head version; anything else a name cannot be is refused."""

from __future__ import annotations

import pytest

from heads.producer import PINNED


@pytest.mark.parametrize("name", ["wave", "spam-wave", "wave@2", "wave@123456789"])
def test_a_name_or_a_pinned_version_is_allowed(name):
    assert PINNED.match(name)


@pytest.mark.parametrize("name", ["Wave", "wave@0", "wave@", "wave@2@3", "@2", "wave@02", "-w"])
def test_other_names_are_refused(name):
    assert not PINNED.match(name)
