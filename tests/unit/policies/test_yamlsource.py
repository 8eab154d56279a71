import pytest

from policies.exceptions import PolicyInvalid
from policies.yamlsource import read_yaml


def read(text: str):
    return read_yaml("f.yaml", text.encode())


def test_every_duplicate_key_is_reported():
    with pytest.raises(PolicyInvalid) as info:
        read("a: 1\na: 2\nb: {c: 1, c: 2}\n")
    assert [(p.line, p.col) for p in info.value.problems] == [(2, 1), (3, 11)]


def test_scalars_follow_the_yaml_core_schema():
    doc = read("a: yes\nb: 12\nc: 1.5\nd: ~\ne: '7'\nf: true\n")
    assert doc.data == {"a": "yes", "b": 12, "c": 1.5, "d": None, "e": "7", "f": True}


def test_positions_inside_folded_and_quoted_scalars():
    doc = read('r:\n  w: >\n    abc &&\n    def\n  q: "xyz"\n')
    assert doc.data["r"]["w"] == "abc && def\n"
    mark = doc.inside_scalar(("r", "w"), doc.data["r"]["w"].index("def"))
    assert (mark.line, mark.col) == (4, 5)
    mark = doc.inside_scalar(("r", "q"), 1)
    assert (mark.line, mark.col) == (5, 8)


def test_small_aliases_are_fine():
    doc = read("a: &x {k: 1}\nb: *x\n")
    assert doc.data["b"] == {"k": 1}


def test_one_document_per_file():
    with pytest.raises(PolicyInvalid, match="one YAML document"):
        read("a: 1\n---\nb: 2\n")
