import textwrap
from pathlib import Path

import pytest

from policies.loader import load_policy

HEADER = """\
id: {id}
version: {version}
mode: {mode}
signals:
  labels:
    weapon: "a weapon such as a gun or a knife"
    violence: "graphic violence, blood or gore"
  questions:
    minor: "Does the image show a child?"
  describe: true
"""


@pytest.fixture
def write_policy(tmp_path):
    """Write a policy file from a rules block (or a whole body) and return its path."""

    def write(
        body: str,
        *,
        name: str = "p.yaml",
        id: str = "p",
        version: int = 1,
        mode: str = "active",
        header: bool = True,
        directory: Path | None = None,
    ) -> Path:
        text = textwrap.dedent(body)
        if header:
            text = HEADER.format(id=id, version=version, mode=mode) + text
        path = (directory or tmp_path) / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def make_policy(write_policy):
    """Compile a policy from a rules block."""

    def make(body: str, **kwargs):
        return load_policy(write_policy(body, **kwargs))

    return make
