"""The review console's auth pieces and config, without services: passwords, sessions, CSRF,
login throttling, queue grants, the config loader's positioned errors, and decision building."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.errors import ConfigInvalid
from contracts.records import Action, MatchedRule, PolicyRef, Post, Verdict
from contracts.review import DecisionKind, ReviewTask
from review.auth import (
    Gate,
    LoginLimiter,
    LoginRequired,
    LoginThrottled,
    QueueForbidden,
    Session,
    SessionSigner,
    client_address,
    csrf_matches,
    hash_password,
    hash_token,
    verify_password,
)
from review.decisions import (
    DecisionChoice,
    DecisionInvalid,
    build_decision,
    escalated_task,
)
from review.settings import ReviewConfig, load_review_config, secret_problem

SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def pw_hash():
    return hash_password("correct horse")


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(pw_hash, **overrides) -> ReviewConfig:
    base = {
        "kafka": {"bootstrap_servers": "localhost:9092"},
        "redis_url": "redis://localhost:6379/0",
        "review_topics": {"spam": "review.spam", "weapons": "review.weapons"},
        "session_secret": SECRET,
        "reviewers": {
            "ana": {"password_argon2": pw_hash, "queues": ["*"]},
            "ben": {"password_argon2": pw_hash, "queues": ["spam"]},
        },
    }
    return ReviewConfig.model_validate({**base, **overrides})


# --- passwords -----------------------------------------------------------------------------


def test_argon2_verifies_the_right_password_only(pw_hash):
    assert pw_hash.startswith("$argon2id$")
    assert verify_password(pw_hash, "correct horse")
    assert not verify_password(pw_hash, "correct horse ")
    assert not verify_password(pw_hash, "")


def test_a_missing_or_broken_hash_never_verifies():
    assert not verify_password(None, "anything")
    assert not verify_password("$argon2id$not-a-hash", "anything")
    assert not verify_password("plain-text-password", "plain-text-password")


def test_an_empty_password_is_not_hashed():
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


# --- sessions ----------------------------------------------------------------------------


def test_a_pre_login_cookie_reads_back_with_its_csrf_token_and_no_reviewer():
    signer = SessionSigner(SECRET, max_age_s=3600, clock=FakeClock())
    session, cookie = signer.anonymous()
    read = signer.read(cookie)
    assert read is not None and read.anonymous == session and read.token is None
    assert session.reviewer is None and len(session.csrf) >= 32


def test_a_logged_in_cookie_only_names_a_server_side_session():
    signer = SessionSigner(SECRET, max_age_s=3600, clock=FakeClock())
    read = signer.read(signer.cookie_for("opaque-token"))
    assert read is not None and read.token == "opaque-token" and read.anonymous is None


def test_a_validly_signed_cookie_that_claims_a_reviewer_grants_nothing():
    from itsdangerous import URLSafeSerializer

    from review.auth import _SALT

    # What an older cookie held, or what someone with the secret would forge: no session token.
    forged = URLSafeSerializer(SECRET, salt=_SALT).dumps({"r": "lead", "c": "x", "t": 1e6})
    read = SessionSigner(SECRET, max_age_s=3600, clock=FakeClock()).read(forged)
    assert read is not None and read.token is None
    assert read.anonymous is not None and read.anonymous.reviewer is None


def test_a_tampered_session_cookie_is_refused():
    signer = SessionSigner(SECRET, max_age_s=3600, clock=FakeClock())
    cookie = signer.cookie_for("token-of-ben")
    payload, _, signature = cookie.rpartition(".")
    forged_payload = SessionSigner("x" * 32, max_age_s=3600).cookie_for("t").rpartition(".")[0]
    assert signer.read(f"{forged_payload}.{signature}") is None  # someone else's payload
    assert signer.read(f"{payload}.{signature[:-2]}AA") is None  # a changed signature
    assert signer.read(cookie[:-1]) is None
    assert signer.read("") is None and signer.read(None) is None
    assert signer.read("garbage") is None
    assert signer.read(cookie + "A" * 5000) is None  # oversized cookies are not even parsed


def test_a_session_signed_with_another_secret_is_refused():
    cookie = SessionSigner(secrets.token_urlsafe(32), max_age_s=60).cookie_for("t")
    assert SessionSigner(SECRET, max_age_s=60).read(cookie) is None
    _, anonymous = SessionSigner(secrets.token_urlsafe(32), max_age_s=60).anonymous()
    assert SessionSigner(SECRET, max_age_s=60).read(anonymous) is None


def test_a_pre_login_cookie_expires_after_its_max_age():
    clock = FakeClock()
    signer = SessionSigner(SECRET, max_age_s=60, clock=clock)
    _, cookie = signer.anonymous()
    clock.now += 60
    assert signer.read(cookie) is not None
    clock.now += 1
    assert signer.read(cookie) is None


def test_each_session_gets_its_own_csrf_token():
    signer = SessionSigner(SECRET, max_age_s=60)
    assert signer.anonymous()[0].csrf != signer.anonymous()[0].csrf


# --- the session secret ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("replace-with-64-random-characters-from-a-secret-store", "placeholder"),
        ("a long random string", "placeholder"),
        ("short-but-random-Q8f", "characters; at least 43"),
        ("s" * 64, "repeats a short pattern"),
        ("password" * 8, "repeats a short pattern"),
        ("0123456789" * 5, "repeats a short pattern"),
    ],
)
def test_weak_session_secrets_are_refused_with_the_reason(secret, why):
    assert why in (secret_problem(secret) or "")


def test_random_secrets_pass_in_urlsafe_base64_or_hex():
    for _ in range(50):
        assert secret_problem(secrets.token_urlsafe(32)) is None
        assert secret_problem(secrets.token_hex(32)) is None


def test_the_shipped_placeholder_is_refused_in_one_line_naming_the_setting(tmp_path, pw_hash):
    path = tmp_path / "review.yaml"
    placeholder = "replace-with-64-random-characters-from-a-secret-store"
    path.write_text(
        CONFIG_YAML.replace("      - scams\n", "").format(secret=placeholder, pw=pw_hash)
    )
    with pytest.raises(ConfigInvalid) as caught:
        load_review_config(path)
    message = str(caught.value)
    assert message.count("\n") == 0
    assert message.startswith(f"{path}:7:17: session_secret: the session secret is the shipped")
    assert "shipped placeholder" in message and "python -m review.auth --secret" in message


def test_the_secret_can_come_from_the_environment(tmp_path, pw_hash, monkeypatch):
    text = CONFIG_YAML.replace("      - scams\n", "").replace(
        'session_secret: "{secret}"', "session_secret_env: REVIEW_SECRET"
    )
    path = write(tmp_path, text, pw_hash)
    monkeypatch.delenv("REVIEW_SECRET", raising=False)
    with pytest.raises(
        ConfigInvalid, match=r":7:21: session_secret_env: environment variable REVIEW_SECRET is not"
    ):
        load_review_config(path)
    monkeypatch.setenv("REVIEW_SECRET", "s" * 64)
    with pytest.raises(ConfigInvalid, match="repeats a short pattern"):
        load_review_config(path)
    monkeypatch.setenv("REVIEW_SECRET", SECRET)
    assert load_review_config(path).secret_value() == SECRET


# --- CSRF ------------------------------------------------------------------------------------


def test_csrf_tokens_compare_exactly():
    assert csrf_matches("token-abc", "token-abc")
    assert not csrf_matches("token-abc", "token-abd")
    assert not csrf_matches("token-abc", "")
    assert not csrf_matches("token-abc", None)
    assert not csrf_matches("token-abc", "token-abc ")


# --- login throttling ------------------------------------------------------------------------


def test_the_sixth_failure_in_a_minute_is_throttled_then_the_window_passes():
    clock = FakeClock()
    limiter = LoginLimiter(max_failures=5, window_s=60, clock=clock)
    for _ in range(5):
        limiter.check("ana", "10.0.0.1")
        limiter.failed("ana", "10.0.0.1")
        clock.now += 1
    with pytest.raises(LoginThrottled, match="try again in"):
        limiter.check("ana", "10.0.0.1")
    clock.now += 56  # the first failure is now 60 s old
    limiter.check("ana", "10.0.0.1")


def test_throttling_is_per_name_and_address():
    clock = FakeClock()
    limiter = LoginLimiter(max_failures=2, window_s=60, clock=clock)
    for _ in range(2):
        limiter.failed("ana", "10.0.0.1")
    with pytest.raises(LoginThrottled):
        limiter.check("ana", "10.0.0.1")
    limiter.check("ana", "10.0.0.2")
    limiter.check("ben", "10.0.0.1")


def test_one_address_spraying_many_names_is_throttled_too():
    limiter = LoginLimiter(max_failures=5, window_s=60, clock=FakeClock(), max_per_address=10)
    for n in range(10):
        limiter.check(f"name-{n}", "10.0.0.9")
        limiter.failed(f"name-{n}", "10.0.0.9")
    with pytest.raises(LoginThrottled):
        limiter.check("a-fresh-name", "10.0.0.9")
    limiter.check("a-fresh-name", "10.0.0.10")


def test_a_successful_login_forgets_the_failures():
    limiter = LoginLimiter(max_failures=2, window_s=60, clock=FakeClock())
    limiter.failed("ana", "ip")
    limiter.succeeded("ana", "ip")
    limiter.failed("ana", "ip")
    limiter.check("ana", "ip")


def test_the_limiter_stays_small_whatever_the_names_and_forgets_after_its_window():
    import sys

    clock = FakeClock()
    limiter = LoginLimiter(max_failures=5, window_s=60, clock=clock, max_entries=1000)
    huge = "x" * 1_000_000
    for n in range(3000):
        limiter.failed(f"{huge}{n}", f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) <= 1000
    keys = list(limiter._failures)
    assert max(sys.getsizeof(name) for name, _ in keys) < 200, "names are kept as digests"
    clock.now += 61
    limiter.check("anyone", "10.0.0.1")  # touching it forgets what the window left behind
    assert len(limiter) == 0


def test_forwarded_for_counts_only_from_trusted_proxies():
    assert client_address("127.0.0.1", "203.0.113.7", []) == "127.0.0.1"
    assert client_address("198.51.100.2", "203.0.113.7", ["10.0.0.0/8"]) == "198.51.100.2"
    assert client_address("10.0.0.5", "203.0.113.7", ["10.0.0.0/8"]) == "203.0.113.7"
    # The client may prepend anything; the proxy appends what it saw, so read from the right.
    chain = "1.2.3.4, 203.0.113.7, 10.0.0.6"
    assert client_address("10.0.0.5", chain, ["10.0.0.0/8"]) == "203.0.113.7"
    assert client_address("10.0.0.5", "not-an-address", ["10.0.0.0/8"]) == "10.0.0.5"
    assert client_address(None, None, []) == "unknown"


def test_overlong_passwords_and_names_are_refused_without_hashing(pw_hash):
    started = time.perf_counter()
    assert not verify_password(pw_hash, "p" * 100_000)
    assert time.perf_counter() - started < 0.05, "an argon2 check takes far longer than this"
    gate = Gate(config(pw_hash))
    started = time.perf_counter()
    assert not gate.login_ok("a" * 100_000, "correct horse")
    assert time.perf_counter() - started < 0.05


# --- grants and tokens -----------------------------------------------------------------------


def test_gate_logs_in_only_known_reviewers_with_their_password(pw_hash):
    gate = Gate(config(pw_hash))
    assert gate.login_ok("ana", "correct horse")
    assert not gate.login_ok("ana", "wrong")
    assert not gate.login_ok("mallory", "correct horse")


def test_gate_grants_queues_per_reviewer(pw_hash):
    gate = Gate(config(pw_hash))
    gate.check_queue("ana", "weapons")  # "*"
    gate.check_queue("ben", "spam")
    with pytest.raises(QueueForbidden):
        gate.check_queue("ben", "weapons")
    with pytest.raises(QueueForbidden):
        gate.check_queue("ana", "not-a-queue")


def test_gate_refuses_anonymous_and_removed_reviewers(pw_hash):
    gate = Gate(config(pw_hash))
    assert gate.reviewer_of(Session("ana", "t", 0)) == "ana"
    for session in (None, Session(None, "t", 0), Session("removed", "t", 0)):
        with pytest.raises(LoginRequired):
            gate.reviewer_of(session)


def test_bearer_tokens_are_matched_by_their_sha256(pw_hash):
    gate = Gate(config(pw_hash, tokens={"grafana": {"sha256": hash_token("t0ken")}}))
    assert gate.token_name("Bearer t0ken") == "grafana"
    assert gate.token_name("bearer t0ken") == "grafana"
    assert gate.token_name("Bearer nope") is None
    assert gate.token_name("Basic t0ken") is None
    assert gate.token_name(None) is None


# --- config ----------------------------------------------------------------------------------

CONFIG_YAML = """\
kafka:
  bootstrap_servers: localhost:9092
redis_url: redis://localhost:6379/0
review_topics:
  spam: review.spam
  weapons: review.weapons
session_secret: "{secret}"
reviewers:
  ana:
    password_argon2: "{pw}"
    queues: ["*"]
  ben:
    password_argon2: "{pw}"
    queues:
      - spam
      - scams
"""


def write(tmp_path, text, pw_hash):
    path = tmp_path / "review.yaml"
    path.write_text(text.format(secret=SECRET, pw=pw_hash))
    return path


def test_a_good_config_loads_with_defaults(tmp_path, pw_hash):
    text = CONFIG_YAML.replace("      - scams\n", "")
    loaded = load_review_config(write(tmp_path, text, pw_hash))
    assert loaded.decisions_topic == "moderation.decisions"
    assert loaded.consumer_group == "vlmod-review"
    assert loaded.lease_s == 300 and loaded.order == "priority"
    assert loaded.queues_of("ana") == ["spam", "weapons", "appeals"]
    assert loaded.queues_of("ben") == ["spam"]
    assert SECRET not in repr(loaded)


def test_an_unknown_queue_is_reported_at_its_file_line_and_column(tmp_path, pw_hash):
    path = write(tmp_path, CONFIG_YAML, pw_hash)
    with pytest.raises(ConfigInvalid) as caught:
        load_review_config(path)
    assert str(caught.value) == (
        f"{path}:16:9: reviewers.ben.queues[1]: unknown queue 'scams'; "
        'known queues: appeals, spam, weapons (or use "*")'
    )


def test_every_unknown_queue_is_reported(tmp_path, pw_hash):
    text = CONFIG_YAML.replace('queues: ["*"]', "queues: [nope]")
    with pytest.raises(ConfigInvalid) as caught:
        load_review_config(write(tmp_path, text, pw_hash))
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert ":11:14: reviewers.ana.queues[0]: unknown queue 'nope'" in lines[0]
    assert ":16:9: reviewers.ben.queues[1]: unknown queue 'scams'" in lines[1]


def test_schema_errors_are_positioned_too(tmp_path, pw_hash):
    text = CONFIG_YAML.replace("      - scams\n", "").replace("lease_s", "x")
    text = text.replace("review_topics:", "lease_sec: 30\nreview_topics:")
    with pytest.raises(ConfigInvalid) as caught:
        load_review_config(write(tmp_path, text, pw_hash))
    assert ":4:1: unknown key 'lease_sec'; did you mean 'lease_s'?" in str(caught.value)


def test_a_missing_session_secret_is_named(tmp_path, pw_hash):
    text = CONFIG_YAML.replace("      - scams\n", "").replace('session_secret: "{secret}"\n', "")
    with pytest.raises(
        ConfigInvalid, match=r":1:1: \(file\): give session_secret or session_secret_env"
    ):
        load_review_config(write(tmp_path, text, pw_hash))


def test_a_password_that_is_not_an_argon2id_hash_is_refused(tmp_path, pw_hash):
    text = CONFIG_YAML.replace("      - scams\n", "")
    path = tmp_path / "review.yaml"
    path.write_text(text.format(secret=SECRET, pw="hunter2").replace(f'"{pw_hash}"', '"x"'))
    with pytest.raises(ConfigInvalid, match=r":10:22: reviewers\.ana\.password_argon2"):
        load_review_config(path)


def test_the_command_exits_2_with_the_positioned_error(tmp_path, pw_hash):
    import typer
    from typer.testing import CliRunner

    from cli.review import review

    app = typer.Typer()
    app.command()(review)
    path = write(tmp_path, CONFIG_YAML, pw_hash)
    result = CliRunner().invoke(app, ["--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:16:9: reviewers.ben.queues[1]: unknown queue 'scams'" in result.output
    assert "Traceback" not in result.output


def test_vlmod_review_refuses_to_start_with_the_placeholder_secret_in_one_line(tmp_path, pw_hash):
    import typer
    from typer.testing import CliRunner

    from cli.review import review

    app = typer.Typer()
    app.command()(review)
    path = tmp_path / "review.yaml"
    text = CONFIG_YAML.replace("      - scams\n", "")
    placeholder = "replace-with-64-random-characters-from-a-secret-store"
    path.write_text(text.format(secret=placeholder, pw=pw_hash))
    result = CliRunner().invoke(app, ["--config", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: {path}:7:17: session_secret: the session secret is")


def test_an_unknown_queue_is_refused_when_built_in_code_too(pw_hash):
    bad = {"ben": {"password_argon2": pw_hash, "queues": ["scams"]}}
    with pytest.raises(ValidationError, match="unknown queue 'scams'"):
        config(pw_hash, reviewers=bad)


def test_a_short_session_secret_is_refused(pw_hash):
    with pytest.raises(ValidationError, match="session_secret"):
        config(pw_hash, session_secret="short")


def test_two_queues_on_one_topic_are_refused(pw_hash):
    topics = {"spam": "review.spam", "weapons": "review.spam"}
    with pytest.raises(ValidationError, match=r"topic 'review\.spam' is queue 'spam'"):
        config(pw_hash, review_topics=topics)


def test_a_queue_can_take_tasks_named_as_another_policy_names_them(pw_hash):
    topics = {
        "spam": "review.spam",
        "weapons": "review.weapons",
        "marketplace-weapons": {"topic": "marketplace.review.weapons", "queue": "weapons"},
    }
    loaded = config(pw_hash, review_topics=topics)
    assert loaded.topics == {
        "spam": "review.spam",
        "weapons": "review.weapons",
        "marketplace-weapons": "marketplace.review.weapons",
    }
    assert loaded.task_queue("marketplace-weapons") == "weapons"
    assert loaded.task_queue("weapons") == "weapons"


def test_reviewers_escalate_into_their_own_queues_unless_given_a_list(pw_hash):
    topics = {"spam": "review.spam", "weapons": "review.weapons", "senior": "review.senior"}
    reviewers = {
        "ana": {"password_argon2": pw_hash, "queues": ["*"]},
        "ben": {"password_argon2": pw_hash, "queues": ["spam"]},
        "cam": {"password_argon2": pw_hash, "queues": ["spam"], "escalate_to": ["senior"]},
    }
    loaded = config(pw_hash, review_topics=topics, reviewers=reviewers)
    assert loaded.escalations_of("ana") == ["spam", "weapons", "senior"]
    assert loaded.escalations_of("ben") == ["spam"]
    assert loaded.escalations_of("cam") == ["senior"]
    assert loaded.escalations_of("stranger") == []
    bad = {"ben": {"password_argon2": pw_hash, "queues": ["spam"], "escalate_to": ["nope"]}}
    with pytest.raises(ValidationError, match=r"reviewers\.ben\.escalate_to\[0\]: unknown queue"):
        config(pw_hash, review_topics=topics, reviewers=bad)


# --- decisions (pure) ------------------------------------------------------------------------


def review_task(key: str = "k1", action: Action = Action.BLOCK) -> ReviewTask:
    verdict = Verdict(
        post_id="p1",
        key="k1",
        action=action,
        queue="spam",
        policy=PolicyRef(id="pol", version=3, sha256="0" * 64),
        matched_rules=[MatchedRule(id="spam-text", action=action, queue="spam")],
    )
    return ReviewTask(key=key, queue="spam", verdict=verdict, post=Post(id="p1", text="hi"))


NOW = datetime(2025, 1, 1, tzinfo=UTC)


def decide(choice: DecisionChoice, task: ReviewTask | None = None):
    return build_decision(
        task or review_task(), "ana", choice, review_queues=["spam", "senior"], decided_at=NOW
    )


def test_uphold_keeps_the_verdicts_action_and_records_the_rules():
    decision = decide(DecisionChoice("uphold", note="clear spam"))
    assert decision.decision is DecisionKind.UPHOLD and decision.action is Action.BLOCK
    assert decision.rules == ["spam-text"] and decision.reviewer == "ana"
    assert decision.policy.version == 3 and decision.note == "clear spam"


def test_overturn_needs_a_different_action():
    assert decide(DecisionChoice("overturn", Action.ALLOW)).action is Action.ALLOW
    for action in (None, Action.BLOCK):
        with pytest.raises(DecisionInvalid):
            decide(DecisionChoice("overturn", action))


def test_escalate_needs_another_known_queue():
    decision = decide(DecisionChoice("escalate", escalate_to="senior"))
    assert decision.escalated_to == "senior" and decision.action is Action.BLOCK
    for target in (None, "spam", "unknown"):
        with pytest.raises(DecisionInvalid):
            decide(DecisionChoice("escalate", escalate_to=target))


def test_escalation_only_into_the_queues_the_reviewer_is_given():
    task, choice = review_task(), DecisionChoice("escalate", escalate_to="senior")
    with pytest.raises(DecisionInvalid, match="you may escalate only into: none"):
        build_decision(task, "ben", choice, review_queues=["spam"], decided_at=NOW)


def test_the_form_refuses_unknown_kinds_and_actions():
    with pytest.raises(DecisionInvalid):
        DecisionChoice.from_form("approve", "", "", "")
    with pytest.raises(DecisionInvalid):
        DecisionChoice.from_form("overturn", "delete", "", "")
    with pytest.raises(DecisionInvalid):
        DecisionChoice.from_form("uphold", "", "", "x" * 4001)
    assert DecisionChoice.from_form("skip", "", "", "").kind == "skip"


def test_escalated_tasks_get_fresh_keys_and_decisions_keep_the_verdict_key():
    first = escalated_task(review_task(), "senior", NOW)
    back = escalated_task(first.model_copy(update={"queue": "senior"}), "spam", NOW)
    again = escalated_task(back, "senior", NOW)
    assert len({"k1", first.key, back.key, again.key}) == 4
    assert first.queue == "senior" and first.verdict.key == "k1"
    assert decide(DecisionChoice("uphold"), first).key == "k1"
    named = escalated_task(review_task(), "marketplace-weapons", NOW, task_queue="weapons")
    assert named.queue == "weapons", "the task carries the name its topic's queue expects"
    assert named.key.endswith(":marketplace-weapons")
