import pytest
from cel_expr_python import cel

from contracts.producers import Variable
from policies.expressions import BUILTIN_TYPES, Declared, compile_condition
from policies.typecheck import cel_type, check_types

ROOTS = BUILTIN_TYPES | {
    "labels": "map(string, double)",
    "answers": "map(string, double)",
    "description": "string",
    "nsfw": "double",
    "ocr": "string",
    "banks": "map(string, bool)",
}


@pytest.mark.parametrize(
    "source",
    [
        "labels.x > 1",
        "1 < labels.x && size(text) > 3u",
        "post.meta.price < 10.0 && size(text) > 3",
        "labels.exists(k, labels[k] > 0.9)",
        "labels.x > 0.5 ? answers.y > 0.5 : text.startsWith('a')",
        "post.meta.flag",
        "(post.meta.flag ? 1 : 2) == 1",
        "text.matches('(?i)buy') || description.contains('gun')",
        "nsfw > 0.5 || ocr.contains('x') || banks.csam",
        "timestamp(post.meta.at) < timestamp('2020-01-01T00:00:00Z')",
    ],
)
def test_well_typed_conditions_pass(source):
    assert check_types(source, ROOTS) == []


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ('labels.nudity > "high"', 14, "type error: '>' compares a double with a string"),
        (
            "labels.nudity",
            0,
            "condition gives a double, not a bool; compare it, e.g. labels.nudity > 0.5",
        ),
        ("text + 1", 5, "type error: '+' cannot add a string and an int"),
        ("'yes'", 0, "condition gives a string, not a bool; compare it, e.g. text == 'yes'"),
        (
            "labels.x == 1",
            9,
            "type error: '==' compares a double with an int; write 1.0, not 1",
        ),
        ("banks.csam > 0.5", 11, "type error: '>' compares a bool with a double"),
        ("labels.x ? true : false", 9, "type error: '?' needs a bool before it, got a double"),
        ("!labels.x", 0, "type error: '!' needs a bool, got a double"),
        ("text.foo == 'a'", 4, "type error: a string has no fields to select"),
        ("labels.x.contains('a')", 17, "type error: contains() does not take (double, string)"),
        (
            "labels",
            0,
            "condition gives a map(string, double), not a bool; test it, e.g. size(labels) > 0",
        ),
    ],
)
def test_ill_typed_conditions_are_refused_in_words(source, offset, message):
    assert check_types(source, ROOTS) == [(offset, message)]


def test_every_error_is_reported_at_its_line_and_column():
    source = "text == 1 ||\n  labels.a > 'x'"
    found = check_types(source, ROOTS)
    assert [offset for offset, _ in found] == [5, source.index(">")]


def test_equality_against_a_computed_int_suggests_a_conversion():
    [(_, message)] = check_types("labels.x == size(text)", ROOTS)
    assert message.endswith("; convert the int with double()")


def test_messages_carry_no_checker_noise():
    [(_, message)] = check_types("labels.x + 'a' == 'b'", ROOTS)
    assert "\n" not in message and "INVALID_ARGUMENT" not in message and "^" not in message


def test_type_specs_name_checker_types():
    T = cel.Type
    assert cel_type("double") == T.DOUBLE
    assert cel_type("map(string, double)") == T.Map(T.STRING, T.DOUBLE)
    assert cel_type("map(string,list(dyn))") == T.Map(T.STRING, T.List(T.DYN))


def test_an_unknown_type_spec_is_refused():
    with pytest.raises(ValueError, match="unknown CEL type 'float'"):
        cel_type("float")


def test_compile_condition_type_checks_the_source_as_written():
    declared = Declared(
        variables={
            "labels": Variable("labels", "map(string, double)", keyed=True),
            "nsfw": Variable("nsfw", "dyn"),
        },
        items={"labels": frozenset({"nudity"})},
    )
    condition, findings = compile_condition('text.matches("(?i)x") && nsfw.score > 1', declared)
    assert findings == [] and condition is not None
    _, findings = compile_condition('text.matches("(?i)x") && labels.nudity > "a"', declared)
    assert findings == [(39, "type error: '>' compares a double with a string")]
