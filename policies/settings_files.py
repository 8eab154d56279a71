"""Settings files (the pipeline's, the review console's) read like policy files: every problem
as FILE:LINE:COL: message."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.errors import ConfigInvalid
from policies.compiler import schema_problems
from policies.exceptions import PolicyInvalid
from policies.yamlsource import YamlDocument, read_yaml

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_config_yaml(path: str | Path, *, needs: str) -> YamlDocument:
    """A config file's YAML with its positions; unreadable or empty files refused in one line.

    `needs` names what an empty file should at least hold, for the message.
    """
    file = Path(path)
    try:
        doc = read_yaml(str(file), file.read_bytes())
    except OSError as exc:
        raise ConfigInvalid(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except PolicyInvalid as exc:
        raise ConfigInvalid(str(exc)) from exc
    if doc.data is None:  # empty, only comments, or `null`: almost surely not what was meant
        raise ConfigInvalid(f"{file}:1:1: the file is empty; write at least {needs}")
    return doc


def validate_config(
    doc: YamlDocument, model: type[ModelT], context: dict[str, Any] | None = None
) -> ModelT:
    """`doc` as `model`; every problem reported as FILE:LINE:COL: message."""
    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        problems = schema_problems(doc, exc, model)
        raise ConfigInvalid("\n".join(str(problem) for problem in sorted(problems))) from exc
