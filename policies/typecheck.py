"""Type-check a condition against the types of the variables it may read, at load time.

Conditions run on the `cel` package (cel-rust), which has no type checker: `labels.x > "a"`
or a bare `labels.x` would only fail on a post. Google's cel-cpp (`cel_expr_python`) has one,
so conditions are checked with it and still run on cel-rust. The two differ in one place we
keep: cel-rust orders numbers across types (`labels.x > 1`), so the checker's ordering
operators are redeclared to accept that too. Equality stays strict, as in both.

Variable types are declarative strings, `map(string, double)`, so whatever declares a root
(the policy's builtins today, signal producers later) can name its type without this module.

A map's values have one type, so a field of `post` (a `map(string, dyn)`) reads as `dyn`. The
fields the engine sets itself have a known type (`post.truncated` is a bool): a read of one is
checked through a stand-in root typed as a map of that type, named as the root with its first
letter upper-cased, which no condition can name and which keeps every offset where it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from cel_expr_python import cel

from policies.celscan import scan, tokenize

Finding = tuple[int, str]
TypedFields = Mapping[str, tuple[frozenset[str], str]]  # root -> (its typed fields, their type)
_PASSING = frozenset({"bool", "dyn"})
_SCALARS = {
    "bool": cel.Type.BOOL,
    "int": cel.Type.INT,
    "uint": cel.Type.UINT,
    "double": cel.Type.DOUBLE,
    "string": cel.Type.STRING,
    "bytes": cel.Type.BYTES,
    "timestamp": cel.Type.TIMESTAMP,
    "duration": cel.Type.DURATION,
    "dyn": cel.Type.DYN,
}
_NUMBERS = ("int", "uint", "double")
_ORDERING = {"_>_": "greater", "_<_": "less", "_>=_": "greater_equals", "_<=_": "less_equals"}
_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
_NO_OVERLOAD = re.compile(r"found no matching overload for '([^']*)' applied to '\((.*)\)'")
_NOT_SELECTABLE = re.compile(r"expression of type '([^']*)' cannot be the operand of a select")
_COMPARISONS = {"_==_": "==", "_!=_": "!=", "_>_": ">", "_<_": "<", "_>=_": ">=", "_<=_": "<="}
_OPERATOR_REASONS = {
    "_+_": "'+' cannot add {0} and {1}",
    "_-_": "'-' cannot subtract {1} from {0}",
    "_*_": "'*' cannot multiply {0} by {1}",
    "_/_": "'/' cannot divide {0} by {1}",
    "_%_": "'%' cannot divide {0} by {1}",
    "-_": "'-' cannot negate {0}",
    "!_": "'!' needs a bool, got {0}",
    "_&&_": "'&&' needs bools, got {0} and {1}",
    "_||_": "'||' needs bools, got {0} and {1}",
    "_?_:_": "the branches of '?:' give {1} and {2}",
    "@in": "'in' looks for {0} in {1}",
    "_[_]": "cannot index {0} with {1}",
}


def check_types(
    source: str, roots: Mapping[str, str], fields: TypedFields | None = None
) -> list[Finding]:
    """Type errors in `source` given its roots' and typed `fields`' types; [] if it gives a bool."""
    source, roots = pin_fields(source, roots, fields or {})
    try:
        expression = _environment(tuple(sorted(roots.items()))).compile(source)
    except RuntimeError as exc:
        return _findings(source, str(exc))
    kind = _type_name(expression.return_type().name())
    if kind in _PASSING:
        return []
    start = len(source) - len(source.lstrip())
    return [(start, f"condition gives {_a(kind)}, not a bool; {_bool_hint(source, kind)}")]


def pin_fields(
    source: str, roots: Mapping[str, str], fields: TypedFields
) -> tuple[str, dict[str, str]]:
    """`source` reading each typed field through its root's stand-in, and the roots with them."""
    chars, pinned = list(source), dict(roots)
    tokens = tokenize(source)
    at = {token.offset: index for index, token in enumerate(tokens)}
    for reference in scan(source, frozenset(fields)).references:
        names, spec = fields[reference.root]
        if reference.name not in names:
            continue
        root = tokens[at[reference.offset] - 2]  # `post.truncated` or `post["truncated"]`
        stand_in = reference.root[:1].upper() + reference.root[1:]
        chars[root.offset] = stand_in[0]
        pinned[stand_in] = f"map(string, {spec})"
    return "".join(chars), pinned


def cel_type(spec: str) -> cel.Type:
    """The checker type a spec names: a scalar such as `double`, `list(T)` or `map(K, V)`."""
    text = spec.strip()
    if text in _SCALARS:
        return _SCALARS[text]
    if text.startswith("list(") and text.endswith(")"):
        return cel.Type.List(cel_type(text[5:-1]))
    if text.startswith("map(") and text.endswith(")") and "," in text:
        key, value = text[4:-1].split(",", 1)
        return cel.Type.Map(cel_type(key), cel_type(value))
    raise ValueError(f"unknown CEL type {spec!r}; use one of {', '.join(_SCALARS)}, list, map")


@lru_cache(maxsize=64)
def _environment(roots: tuple[tuple[str, str], ...]) -> cel.Env:
    """One checker per set of root types (building one takes tens of milliseconds)."""
    config = cel.NewEnvConfigFromYaml(
        "stdlib:\n  exclude_functions:\n" + "".join(f'    - name: "{op}"\n' for op in _ORDERING)
    )
    variables = {name: cel_type(spec) for name, spec in roots}
    return cel.NewEnv(config=config, variables=variables, functions=_ordering_decls())


def _ordering_decls() -> list[cel.FunctionDecl]:
    """`<`, `<=`, `>`, `>=` on same-type operands, plus across int, uint and double."""
    pairs = [(a, a) for a in _SCALARS if a != "dyn"]
    pairs += [(a, b) for a in _NUMBERS for b in _NUMBERS if a != b]
    return [
        cel.FunctionDecl(
            op,
            [
                cel.Overload(
                    id=f"{name}_{a}_{b}",
                    return_type=cel.Type.BOOL,
                    parameters=[_SCALARS[a], _SCALARS[b]],
                )
                for a, b in pairs
            ],
        )
        for op, name in _ORDERING.items()
    ]


def _findings(source: str, message: str) -> list[Finding]:
    errors = list(_ERROR.finditer(message))
    if any("Syntax error" in error.group(3) for error in errors):
        # cel-rust, which runs the condition, already parsed it; a grammar difference
        # between the two libraries is not the author's mistake, so there is nothing to check.
        return []
    if not errors:
        first = message.splitlines()[0].removeprefix("INVALID_ARGUMENT: ")
        return [(0, f"type error: {first.removesuffix(' [INVALID_ARGUMENT]')}")]
    found = []
    for error in errors:
        offset = _offset(source, int(error.group(1)), int(error.group(2)))
        found.append((offset, _reason(source, offset, error.group(3))))
    return found


def _offset(source: str, line: int, col: int) -> int:
    starts = [0] + [m.end() for m in re.finditer("\n", source)]
    offset = starts[min(line, len(starts)) - 1] + col - 1
    return min(offset, max(len(source) - 1, 0))


def _reason(source: str, offset: int, message: str) -> str:
    message = message.removesuffix(" [INVALID_ARGUMENT]")
    overload = _NO_OVERLOAD.search(message)
    if overload:
        types = [_type_name(t) for t in _split_types(overload.group(2))]
        return "type error: " + _overload_reason(source, offset, overload.group(1), types)
    selectable = _NOT_SELECTABLE.search(message)
    if selectable:
        return f"type error: {_a(_type_name(selectable.group(1)))} has no fields to select"
    return "type error: " + message.replace(" (in container '')", "")


def _overload_reason(source: str, offset: int, function: str, types: list[str]) -> str:
    named = [_a(kind) for kind in types]
    if function == "_?_:_" and types[0] not in _PASSING:
        return f"'?' needs a bool before it, got {named[0]}"
    if function in _COMPARISONS:
        hint = _equality_hint(source, offset, types)
        return f"'{_COMPARISONS[function]}' compares {named[0]} with {named[-1]}{hint}"
    if function in _OPERATOR_REASONS:
        return _OPERATOR_REASONS[function].format(*named)
    return f"{function}() does not take ({', '.join(types)})"


def _equality_hint(source: str, offset: int, types: list[str]) -> str:
    """For a double against an int literal, suggest writing the literal as a double."""
    if sorted(types) != ["double", "int"]:
        return ""
    tokens = tokenize(source)
    at = next((i for i, token in enumerate(tokens) if token.offset == offset), None)
    if at is None:
        return "; convert the int with double()"
    side = at + 1 if types[1] == "int" else at - 1
    literal = tokens[side] if 0 <= side < len(tokens) else None
    if literal is None or literal.kind != "number" or not literal.text.isdigit():
        return "; convert the int with double()"
    return f"; write {literal.text}.0, not {literal.text}"


def _bool_hint(source: str, kind: str) -> str:
    example = " ".join(source.split())
    if len(example) > 40:
        return "compare it with a value"
    if kind == "double":
        return f"compare it, e.g. {example} > 0.5"
    if kind in _NUMBERS:
        return f"compare it, e.g. {example} > 0"
    if kind == "string":
        if [token.kind for token in tokenize(source)] == ["string"]:
            return f"compare it, e.g. text == {example}"
        return f'compare it, e.g. {example} == "..."'
    if kind.startswith(("list", "map")):
        return f"test it, e.g. size({example}) > 0"
    return "compare it with a value"


def _split_types(text: str) -> list[str]:
    """`double, map(string, int)` → ['double', 'map(string, int)'] (commas inside kept)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def _type_name(name: str) -> str:
    """The checker's type names as CEL writes them: `LIST<INT>` → `list(int)`."""
    lowered = name.lower().replace("<", "(").replace(">", ")").replace(",", ", ")
    return re.sub(r",\s+", ", ", lowered).replace("null_type", "null")


def _a(kind: str) -> str:
    if kind == "bytes":
        return kind
    return ("an " if kind[:1] in "aeio" else "a ") + kind
