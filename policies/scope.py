"""One post's CEL environment, shared by every policy that judges it, to plan and to decide.

Converting Python values into CEL values is most of what a rule run costs: the post alone takes
about 20 µs and a map of six scores about 10 µs, while a compiled term runs in well under 1 µs
once its environment is built. So `post` and `text` are converted once per post, and only when
a term first needs CEL (most terms have Python answers, `policies.terms`), and each
policy run then sets only its own pattern functions and those of its signal variables that do
not already hold the very same values (a keyed map such as `labels` is compared item by item,
by identity, so `1`, `1.0` and `True` never pass for one another).

Sharing is safe because a policy's term runs only when every signal it reads is present in that
policy's own view, which sets those variables first, and a policy can name only the variables
it declares (`policies.expressions`): what another policy left in the environment is never
read. A scope is not thread-safe; one post's policy work stays on one thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import cel

from contracts.records import Post
from policies.expressions import Term
from policies.terms import SLOW
from policies.truncation import TRUNCATED_FIELD

BUILTIN_VARIABLES = ("text", "post")
_UNSET = object()


def post_variables(post: Post) -> dict[str, Any]:
    """The post as JSON data, inline image bytes left out (PostScope adds `truncated`)."""
    data = post.model_dump(mode="json", exclude={"images"})
    data["images"] = [{"url": image.url, "mime": image.mime} for image in post.images]
    return data


class PostScope:
    """A post's `post` and `text` converted once; policies add their signals and functions.

    `truncated` says whether the decoder cut the text (`DecodedPost.truncated`). It is the
    only source of `post.truncated`: a post keeps unknown fields, and a `truncated` field the
    message carried is overwritten, never read.
    """

    def __init__(
        self, post: Post | Mapping[str, Any], *, truncated: bool = False, growing: bool = False
    ) -> None:
        self.post: dict[str, Any] = post_variables(post) if isinstance(post, Post) else dict(post)
        self.post[TRUNCATED_FIELD] = truncated
        self.truncated = truncated
        self.text: Any = self.post.get("text") or ""  # a dict post may hold any JSON
        self._context: Any = None  # made by the first term that needs CEL (26 µs a post)
        self._signals: dict[str, Any] = {}
        self.terms: dict[int, tuple[Term, Any]] = {}  # see run_term
        # With `growing` (signals are only ever added, never changed, as a journey's are):
        # rules that matched or did not, by id, with the rule (kept alive, so its id stays its
        # own). Planning and deciding then test such a rule once (`CompiledPolicy._test`).
        self.decided: dict[int, tuple[Any, Any]] | None = {} if growing else None
        self._functions: Mapping[str, Any] | None = None

    @property
    def context_built(self) -> bool:
        """True once a term of some policy needed CEL on this post (the environment was built)."""
        return self._context is not None

    def context_for(self, functions: Mapping[str, Any], signals: Mapping[str, Any]) -> Any:
        """The CEL context with `functions` and `signals` set; `text` and `post` stay the post's.

        Only what differs from the last call is converted again.
        """
        context = self._context
        if context is None:
            context = self._context = cel.Context({"text": self.text, "post": self.post})
        if functions is not self._functions:
            for name, function in functions.items():
                context.add_function(name, function)
            self._functions = functions
        for name, value in signals.items():
            if name in BUILTIN_VARIABLES or same_value(self._signals.get(name, _UNSET), value):
                continue
            context.add_variable(name, value)
            self._signals[name] = dict(value) if type(value) is dict else value
        return context


def same_value(held: Any, value: Any) -> bool:
    """True when `value` is the object `held`, or a dict whose items are `held`'s own objects."""
    if held is value:
        return True
    if type(held) is not dict or type(value) is not dict or held.keys() != value.keys():
        return False
    return all(held[key] is item for key, item in value.items())


class LazyContext:
    """A policy's CEL context on a post, set up (`PostScope.context_for`) only when a term
    first needs CEL: a post whose terms all have Python answers never converts its values."""

    __slots__ = ("_context", "functions", "scope", "signals")

    def __init__(
        self, scope: PostScope, functions: Mapping[str, Any], signals: Mapping[str, Any]
    ) -> None:
        self.scope, self.functions, self.signals = scope, functions, signals
        self._context: Any = None

    def get(self) -> Any:
        """The CEL context, made on first use."""
        if self._context is None:
            self._context = self.scope.context_for(self.functions, self.signals)
        return self._context


def run_term(
    term: Term,
    context: Any,
    memo: dict[int, tuple[Term, Any]] | None,
    answer: Callable[[Any], Any] | None = None,
    row: Any = None,
) -> Any:
    """The term's value, or the exception it raised; from `memo` when it reads no signal.

    Such a term reads only the post and its policy's pattern functions, so on the same post it
    always gives the same: planning and deciding run it once. `answer(row)` is the term's
    Python answer (`policies.terms`), taken unless it gives `SLOW`.
    """
    if memo is None or not term.needs.cheap:
        return _execute(term, context, answer, row)
    held = memo.get(id(term))
    if held is None:
        # The term is kept with its value so that its id cannot be reused while memoized.
        held = memo[id(term)] = (term, _execute(term, context, answer, row))
    return held[1]


def _execute(term: Term, context: Any, answer: Callable[[Any], Any] | None, row: Any) -> Any:
    if answer is not None:
        value = answer(row)
        if value is not SLOW:
            return value
    if type(context) is LazyContext:
        context = context.get()
    try:
        return term.program.execute(context)
    except Exception as exc:  # the CEL runtime raises builtins; any is this rule's error
        return exc
