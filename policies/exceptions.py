"""Errors of the policy layer: a problem at a place in a policy file, and a refused policy."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import ModerationError, Stage


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a policy file, at a 1-based line and column (0: the whole path)."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        if self.line == 0:  # about a whole file or directory, not a place in it
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PolicyInvalid(ModerationError):
    """A policy file (or directory) was refused; `problems` lists every problem found."""

    stage = Stage.POLICY

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(problem) for problem in self.problems) or "invalid policy")


class NativeBuildFailed(ModerationError):
    """`python -m policies.native` could not compile the policy engine (`policies.native`)."""

    stage = Stage.POLICY
