"""`matches()` with patterns compiled once, at load time, and a time bound that cannot be beaten.

CEL's own `matches` runs on the Rust regex crate: linear time, but it compiles the pattern on
every call (50-500 µs for a case-insensitive Unicode pattern), which alone would blow the 1 ms
budget of a 20-rule policy. So each literal pattern becomes a function registered on the CEL
context that searches with a pattern compiled once:
- with the Rust regex crate itself (`regex-rs`, installed beside the engine where a wheel exists):
  the very engine CEL runs, so the very answers, in linear time with no timeout to keep;
- else with the `regex` module under a short timeout, answered by CEL's linear-time engine if
  the search ever times out (a pathological pattern or input). Its timeout reads the process's
  CPU clock, a system call, on every search: 3-7 µs a search, against 0.2-0.4 µs for the Rust
  crate on the same bench texts.
Either way the answer is always given, and the cost of a call is bounded.
"""

from __future__ import annotations

from typing import Any

import cel
import regex

from policies.celscan import Token, string_value, tokenize

RustRegex: Any
try:
    from regex_rs import Regex as RustRegex  # the Rust regex crate: CEL's own engine
except ImportError:  # no wheel for this platform or Python: the `regex` module answers
    RustRegex = None

FAST_TIMEOUT_S = 0.005
FUNCTION_PREFIX = "vlmod_matches_"
# Syntax `regex` reads otherwise than the Rust crate (POSIX classes, \z; `$` also matches
# before a final newline there): without the crate, such patterns go to CEL on every call.
_RUST_ONLY = ("[:", "\\z", "\\A", "$")


class PatternMatcher:
    """Search one pattern: precompiled on CEL's own engine, else timed with a linear fallback.

    `rust=False` leaves the Rust crate out (the `regex` module's path, as where it is not
    installed)."""

    def __init__(self, literal: Token, *, rust: bool = True) -> None:
        self.pattern = string_value(literal)
        self.linear = cel.compile(f"s.matches({literal.text})")
        self.rust: Any = _rust_regex(self.pattern) if rust else None
        self.fast: Any = None
        self.fallbacks = 0
        if self.rust is None and not any(marker in self.pattern for marker in _RUST_ONLY):
            try:
                self.fast = regex.compile(self.pattern)
            except (regex.error, ValueError, OverflowError):
                self.fast = None

    @property
    def engine(self) -> str:
        """Which engine searches: `rust` (CEL's own), `regex` (timed) or `cel` (compiled by
        CEL on every call: a pattern neither of the others reads as CEL does)."""
        return "rust" if self.rust is not None else "regex" if self.fast is not None else "cel"

    def __call__(self, text: Any) -> bool:
        if not isinstance(text, str):
            raise TypeError(f"matches() needs a string, got {type(text).__name__}")
        if self.rust is not None:
            try:
                return self.rust.is_match(text)  # keeps the GIL: microseconds, linear time
            except UnicodeEncodeError:
                pass  # a lone surrogate is no UTF-8: CEL's engine says what it makes of it
        elif self.fast is not None:
            try:
                # `regex` releases the GIL on str subjects unless told not to; in a threaded
                # consumer every call would then wait for the GIL, and the wait would count
                # against the timeout. A search here takes microseconds: keep the GIL.
                found = self.fast.search(text, timeout=FAST_TIMEOUT_S, concurrent=False)
                return found is not None
            except TimeoutError:
                self.fallbacks += 1
        return bool(self.linear.execute({"s": text}))


def _rust_regex(pattern: str) -> Any:
    """The pattern on the Rust regex crate, or None where that is not installed or refuses it
    (CEL then compiles it on every call and reports the same refusal as the rule's error)."""
    if RustRegex is None:
        return None
    try:
        return RustRegex(pattern)
    except (ValueError, OverflowError):
        return None


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
