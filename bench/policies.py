"""Micro-benchmark: median time to evaluate one post against a 20-rule policy.

Run: python bench/policies.py   (prints; asserts nothing)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and its name would shadow the
# `policies` package; drop that entry before importing it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from contracts.records import Post, Signals  # noqa: E402 - after the sys.path fix above
from policies.loader import load_policy  # noqa: E402 - after the sys.path fix above

LABELS = ["violence", "weapon", "nudity", "suggestive", "self_harm", "hate_symbol", "drugs"]


def policy_text() -> str:
    """20 rules: 12 on model signals, 5 regexes over text, 3 on post meta."""
    lines = ["id: bench", "version: 1", "signals:", "  labels:"]
    lines += [f'    {name}: "{name.replace("_", " ")}"' for name in LABELS]
    lines += ["  questions:", '    minor: "Does the image show a child?"', "  describe: true"]
    lines += ["rules:"]
    conditions = [f"labels.{LABELS[i % len(LABELS)]} > 0.{5 + i % 4}" for i in range(10)]
    conditions += ["labels.weapon > 0.5 && answers.minor > 0.5"]
    conditions += ['description.contains("gun") && labels.weapon > 0.3']
    conditions += [
        'text.matches("(?i)\\\\bbuy\\\\s+(followers|likes|views)\\\\b")',
        'text.matches("(?i)\\\\b(double|2x)\\\\s+your\\\\s+(btc|eth)\\\\b")',
        'text.matches("(?i)\\\\b(whats ?app|telegram)\\\\b\\\\W{0,3}\\\\+?[0-9][0-9 ]{6,}")',
        'text.matches("(?i)\\\\b(replica|super ?fake)\\\\b")',
        'text.matches("(https?://\\\\S+[\\\\s\\\\S]*){4,}")',
        "has(post.meta.price) && post.meta.price < 100",
        "has(post.meta.account_age_days) && post.meta.account_age_days < 2",
        'post.lang == "en" && size(text) > 2000',
    ]
    actions = ["allow", "review", "block", "escalate"]
    for index, when in enumerate(conditions):
        lines += [f"  - id: rule-{index}", f"    when: '{when}'"]
        lines += [f"    action: {actions[index % 4]}", f"    priority: {index}"]
    return "\n".join(lines) + "\n"


def main(repeats: int = 2000) -> None:
    """Print the median, p90 and p99 evaluation time of one post."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(policy_text())
        policy = load_policy(path)
    assert len(policy.rules) == 20
    post = Post(
        id="p1",
        text="Great bike for sale, barely used, message me on telegram +44 7700 900123 " * 3,
        lang="en",
        meta={"price": 80, "account_age_days": 30, "category": "sports"},
    )
    signals = Signals(
        labels={name: 0.1 * (i + 1) for i, name in enumerate(LABELS)},
        answers={"minor": 0.2},
        description="a red bicycle leaning on a wall",
    )
    for _ in range(200):
        policy.evaluate(post, signals)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        policy.evaluate(post, signals)
        times.append(time.perf_counter() - started)
    times.sort()
    median = statistics.median(times) * 1e3
    p90, p99 = times[int(0.9 * len(times))] * 1e3, times[int(0.99 * len(times))] * 1e3
    print(
        f"policy evaluation, 20 rules, one post: median {median:.3f} ms, "
        f"p90 {p90:.3f} ms, p99 {p99:.3f} ms ({repeats} runs, Python {sys.version.split()[0]})"
    )


if __name__ == "__main__":
    main()
