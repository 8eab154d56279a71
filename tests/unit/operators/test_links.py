"""The `links` producer: URL counts of a post's text."""

from __future__ import annotations

from contracts.producers import ProducerJob
from contracts.records import Post
from operators.specialists.links import COUNTS, LinkSignals, link_counts


def test_counts_urls_shorteners_and_distinct_domains():
    text = "win at https://bit.ly/x and www.Example.com/a, again http://example.com/b"
    assert link_counts(text) == {"count": 3, "shortened": 1, "domains": 2}


def test_text_without_links_counts_nothing():
    assert link_counts("no links, just a.b and example dot com") == {
        "count": 0,
        "shortened": 0,
        "domains": 0,
    }


def test_compute_answers_every_job_in_order():
    jobs = [
        ProducerJob(Post(id="a", text="see t.co/x and https://t.co/y"), frozenset({COUNTS})),
        ProducerJob(Post(id="b"), frozenset({COUNTS})),
    ]
    [first, second] = LinkSignals().compute(jobs)
    assert first[COUNTS]["shortened"] == 1 and second[COUNTS]["count"] == 0
