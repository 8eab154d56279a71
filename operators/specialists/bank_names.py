"""The one rule for hash bank names, shared by `vlmod bank`, `BankStore` and policy files.

A name becomes part of a Redis key (`vlmod:bank:NAME`), so it is lower-case letters, digits
and dashes. `BankName` is the type of an item of a policy's `signals.banks`: a name the store
would refuse is refused when the policy loads, at its position in the file.

>>> bank_name_problem("known-bad") is None
True
>>> bank_name_problem("../x").startswith("bank name '../x' is not allowed")
True

Standard library only, like `operators.exceptions`: pydantic is imported when a policy model is
built, not when this module is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

BANK_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# The `banks` producer's evidence key for the post's image hashes; no bank can be named so.
IMAGE_HASHES = "image_hashes"
BANK_NAME = re.compile(BANK_NAME_PATTERN)


def bank_name_problem(bank: object) -> str | None:
    """Why `bank` is not an allowed bank name, or None when it is one."""
    if isinstance(bank, str) and BANK_NAME.fullmatch(bank):
        return None
    return (
        f"bank name {bank!r} is not allowed: use lower-case letters, digits and dashes, "
        "starting with a letter or digit (e.g. 'known-scams')"
    )


def check_bank_name(bank: object) -> None:
    """Refuse a name that is not lower-case letters, digits and dashes, with ValueError."""
    problem = bank_name_problem(bank)
    if problem is not None:
        raise ValueError(problem)


class _BankNameRule:
    """pydantic metadata: `check_bank_name`'s rule and message, and the pattern in JSON Schema."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(_validated, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> Any:
        json_schema = handler(schema)
        json_schema["pattern"] = BANK_NAME_PATTERN
        return json_schema


def _validated(bank: str) -> str:
    from pydantic_core import PydanticCustomError

    problem = bank_name_problem(bank)
    if problem is not None:
        # A custom error keeps the message as written (a ValueError gets "Value error, " before
        # it); the text goes in as context because a name may hold braces.
        raise PydanticCustomError("bank_name", "{problem}", {"problem": problem})
    return bank


BankName = Annotated[str, _BankNameRule()]
