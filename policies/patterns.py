"""`matches()` with patterns compiled once, at load time, and a time bound that cannot be beaten.

CEL's own `matches` runs on the Rust regex crate: linear time, but it compiles the pattern on
every call (50-500 µs for a case-insensitive Unicode pattern), which alone would blow the 1 ms
budget of a 20-rule policy. So each literal pattern becomes a function registered on the CEL
context: it searches with a pattern precompiled by the `regex` module under a short timeout,
and if that ever times out (a pathological pattern or input) it answers with CEL's linear-time
engine instead. The answer is always given, and the cost of a call is bounded by the timeout
plus one linear scan.
"""

from __future__ import annotations

from typing import Any

import cel
import regex

from policies.celscan import Token, string_value, tokenize

FAST_TIMEOUT_S = 0.005
FUNCTION_PREFIX = "vlmod_matches_"
# Syntax the two engines read differently (POSIX classes, \z); such patterns use Rust only.
_RUST_ONLY = ("[:", "\\z", "\\A")


class PatternMatcher:
    """Search one pattern: precompiled and timed, with a linear-time fallback."""

    def __init__(self, literal: Token) -> None:
        self.pattern = string_value(literal)
        self.linear = cel.compile(f"s.matches({literal.text})")
        self.fast: Any = None
        self.fallbacks = 0
        if not any(marker in self.pattern for marker in _RUST_ONLY):
            try:
                self.fast = regex.compile(self.pattern)
            except (regex.error, ValueError, OverflowError):
                self.fast = None

    def __call__(self, text: Any) -> bool:
        if not isinstance(text, str):
            raise TypeError(f"matches() needs a string, got {type(text).__name__}")
        if self.fast is not None:
            try:
                # `regex` releases the GIL on str subjects unless told not to; in a threaded
                # consumer every call would then wait for the GIL, and the wait would count
                # against the timeout. A search here takes microseconds: keep the GIL.
                found = self.fast.search(text, timeout=FAST_TIMEOUT_S, concurrent=False)
                return found is not None
            except TimeoutError:
                self.fallbacks += 1
        return bool(self.linear.execute({"s": text}))


class PatternRegistry:
    """The literal patterns of one policy, each a named CEL function."""

    def __init__(self) -> None:
        self.functions: dict[str, PatternMatcher] = {}
        self._names: dict[str, str] = {}

    def name_for(self, literal: Token) -> str:
        """The function name standing for `literal` (one per distinct pattern text)."""
        if literal.text not in self._names:
            name = f"{FUNCTION_PREFIX}{len(self._names)}"
            self._names[literal.text] = name
            self.functions[name] = PatternMatcher(literal)
        return self._names[literal.text]

    def rewrite(self, source: str) -> str:
        """`x.matches("lit")` → `x.vlmod_matches_N()`; anything else is left as written."""
        tokens = tokenize(source)
        pieces, last = [], 0
        for i, token in enumerate(tokens):
            window = [t.text for t in tokens[i - 1 : i + 4]] if i > 0 else []
            if len(window) == 5 and window[0] == "." and window[1:3] == ["matches", "("]:
                literal, close = tokens[i + 2], tokens[i + 3]
                if literal.kind == "string" and close.text == ")":
                    pieces += [source[last : token.offset], f"{self.name_for(literal)}()"]
                    last = close.offset + 1
        return "".join([*pieces, source[last:]])
