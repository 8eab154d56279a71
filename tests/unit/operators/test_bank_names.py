"""Bank names: one rule for `vlmod bank add`, the store and a policy's `signals.banks`."""

from __future__ import annotations

import doctest

import pytest
from pydantic import TypeAdapter, ValidationError

from operators.specialists import bank_names
from operators.specialists.bank_names import BankName, check_bank_name

BAD = ["", "Known", "Known Bad!", "a_b", "-lead", "a b", "ok\n", "é", "../x", "ns:bank:x"]
GOOD = ["a", "known-scams", "0day", "x-1-2"]


@pytest.mark.parametrize("name", [*BAD, None])
def test_bad_bank_names_are_refused_by_name(name):
    with pytest.raises(ValueError, match="bank name") as caught:
        check_bank_name(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", GOOD)
def test_good_bank_names_pass(name):
    check_bank_name(name)


@pytest.mark.parametrize("name", BAD)
def test_a_policys_bank_list_refuses_what_the_store_refuses_with_the_same_message(name):
    with pytest.raises(ValueError) as refused:
        check_bank_name(name)
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(list[BankName]).validate_python(["ok", name])
    [error] = caught.value.errors()
    assert error["loc"] == (1,) and error["msg"] == str(refused.value)


def test_braces_in_a_name_do_not_break_the_message():
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(BankName).validate_python("{problem}")
    assert caught.value.errors()[0]["msg"].startswith("bank name '{problem}' is not allowed")


def test_good_names_validate_and_the_schema_shows_the_pattern():
    adapter = TypeAdapter(list[BankName])
    assert adapter.validate_python(GOOD) == GOOD
    assert adapter.json_schema()["items"] == {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*$"}


def test_module_example_runs():
    assert doctest.testmod(bank_names).failed == 0
