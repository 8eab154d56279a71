"""Hash banks end to end on a real Redis: `vlmod bank`, then moderation that matches copies."""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from demo.samples import repost_of
from kafka_io.settings import KafkaSettings
from pipelines.config import BankSettings, PipelineConfig, SpecialistSettings
from pipelines.local import LocalModerator
from pipelines.producer_registry import producer_registry
from policies.loader import load_policy_dir

pytest.importorskip("pdqhash")
pytest.importorskip("faiss")

from operators.specialists.render import photo_like

POLICY = """
id: banked
version: 1
signals:
  banks: [{bank}]
rules:
  - id: known-image
    when: 'banks["{bank}"]'
    action: block
    queue: known-bad
    priority: 0
  - id: words
    when: 'text.contains("giveaway")'
    action: review
    queue: spam
"""


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def bank():
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def files(tmp_path):
    original = photo_like(5, (640, 480))
    (tmp_path / "known.png").write_bytes(_png(original))
    (tmp_path / "repost.jpg").write_bytes(repost_of(original))
    (tmp_path / "other.png").write_bytes(_png(photo_like(8, (640, 480))))
    return tmp_path


def _moderate(policy_dir, image, redis_url, text="hello"):
    args = ["moderate", "--policy", str(policy_dir), "--image", str(image), "--text", text]
    result = CliRunner().invoke(app, [*args, "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _policy_dir(tmp_path, bank):
    directory = tmp_path / "policies"
    directory.mkdir(exist_ok=True)
    (directory / "banked.yaml").write_text(POLICY.format(bank=bank))
    return directory


def test_bank_add_then_moderate_matches_a_resized_recompressed_cropped_copy(redis_url, bank, files):
    runner = CliRunner()
    added = runner.invoke(
        app, ["bank", "add", bank, str(files / "known.png"), "--redis-url", redis_url]
    )
    assert added.exit_code == 0, added.output
    assert f"bank {bank}: added 1 hash(es)" in added.stdout
    listed = runner.invoke(app, ["bank", "list", "--redis-url", redis_url])
    assert any(line.split()[:3] == [bank, "1", "31"] for line in listed.stdout.splitlines())

    policies = _policy_dir(files, bank)
    verdict = _moderate(policies, files / "repost.jpg", redis_url)
    assert verdict["action"] == "block" and verdict["signals"]["banks"] == {bank: True}
    [run] = [r for r in verdict["producers"] if r["name"] == "banks"]
    match = run["evidence"][bank]
    assert 0 <= match["distance"] <= 31 and match["source"] == "known.png" and match["image"] == 0
    distinct = _moderate(policies, files / "other.png", redis_url)
    assert distinct["action"] == "allow" and distinct["signals"]["banks"] == {bank: False}

    emptied = runner.invoke(app, ["bank", "remove", bank, match["hash"], "--redis-url", redis_url])
    assert emptied.exit_code == 0 and "removed 1 hash(es)" in emptied.stdout
    listed = runner.invoke(app, ["bank", "list", "--redis-url", redis_url])
    assert any(line.split()[:3] == [bank, "0", "31"] for line in listed.stdout.splitlines())
    empty = _moderate(policies, files / "repost.jpg", redis_url)
    assert empty["action"] == "allow" and empty["signals"]["banks"] == {bank: False}

    removed = runner.invoke(app, ["bank", "remove", bank, "--redis-url", redis_url])
    assert removed.exit_code == 0 and "removed 0 hash(es)" in removed.stdout
    gone = runner.invoke(app, ["bank", "remove", bank, "--redis-url", redis_url])
    assert gone.exit_code == 1 and f"no bank named {bank!r}" in gone.stderr


def test_a_typo_in_a_bank_name_is_a_rule_error_naming_it_not_a_silent_allow(redis_url, files):
    suffix = uuid.uuid4().hex[:8]
    bank, typo = f"known-bad-{suffix}", f"known-bda-{suffix}"
    runner = CliRunner()
    args = ["bank", "add", bank, str(files / "known.png"), "--redis-url", redis_url]
    assert runner.invoke(app, args).exit_code == 0
    verdict = _moderate(_policy_dir(files, typo), files / "repost.jpg", redis_url)
    assert verdict["action"] == "allow" and verdict["matched_rules"] == []
    [error] = verdict["rule_errors"]
    assert error["id"] == "known-image"
    assert error["error"] == (
        f"signal unavailable: banks.{typo} (no bank named {typo}; did you mean {bank}?)"
    )


def test_bank_list_with_policies_marks_the_banks_they_read_that_redis_lacks(redis_url, files):
    suffix = uuid.uuid4().hex[:8]
    bank, typo = f"known-bad-{suffix}", f"known-bda-{suffix}"
    runner = CliRunner()
    args = ["bank", "add", bank, str(files / "known.png"), "--redis-url", redis_url]
    assert runner.invoke(app, args).exit_code == 0
    policies = _policy_dir(files, typo)
    listing = ["bank", "list", "--redis-url", redis_url, "--policy", str(policies)]
    listed = runner.invoke(app, listing)
    assert listed.exit_code == 1
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()}
    assert rows[bank][:2] == ["1", "31"]
    assert rows[typo] == ["-", "-", "MISSING,", "read", "by", str(policies / "banked.yaml")]
    assert f"1 bank(s) read by policies are not in Redis: {typo}" in listed.stderr

    (policies / "banked.yaml").write_text(POLICY.format(bank=bank))
    fixed = runner.invoke(app, listing)
    assert fixed.exit_code == 0, fixed.output
    assert "MISSING" not in fixed.stdout


def test_bank_list_refuses_a_policy_that_does_not_load(redis_url, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.format(bank="Known Bad!"))
    listed = CliRunner().invoke(
        app, ["bank", "list", "--redis-url", redis_url, "--policy", str(bad)]
    )
    assert listed.exit_code == 2
    assert f"{bad}:5:11: signals.banks[0]: bank name 'Known Bad!' is not allowed" in listed.stderr


def test_bank_add_refuses_files_that_are_not_images_and_adds_nothing(redis_url, bank, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    good = tmp_path / "good.png"
    good.write_bytes(_png(photo_like(5, (640, 480))))
    flat = tmp_path / "flat.png"
    flat.write_bytes(_png(Image.new("RGB", (200, 200), (120, 120, 120))))
    runner = CliRunner()
    args = ["bank", "add", bank, str(good), str(tmp_path / "notes.txt"), str(flat)]
    result = runner.invoke(app, [*args, "--redis-url", redis_url])
    assert result.exit_code == 1
    assert f"{tmp_path / 'notes.txt'}: " in result.stderr
    assert f"{flat}: PDQ quality" in result.stderr
    assert "nothing added: 2 of 3 file(s) refused" in result.stderr
    listed = runner.invoke(app, ["bank", "list", "--redis-url", redis_url])
    assert bank not in listed.stdout


def _config(policy_dir, redis_url):
    return PipelineConfig(
        kafka=KafkaSettings(bootstrap_servers="unused:9092"),
        policy_dir=str(policy_dir),
        redis_url=redis_url,
        specialists=SpecialistSettings(banks=BankSettings(refresh_s=1e-6)),
    )


def _local(config):
    registry = producer_registry()
    policies = load_policy_dir(config.policy_dir, registry=registry)
    return LocalModerator.with_policies(config, policies)


def _post(path, text="hello"):
    import base64

    return {
        "id": "p",
        "text": text,
        "images": [{"data": base64.b64encode(path.read_bytes()).decode()}],
    }


def test_a_running_consumer_sees_a_bank_change_and_a_restarted_one_keeps_the_bank(
    redis_url, bank, files
):
    config = _config(_policy_dir(files, bank), redis_url)
    running = _local(config)
    before, _ = running.moderate_one(_post(files / "repost.jpg"))
    assert before.action == "allow" and [e.id for e in before.rule_errors] == ["known-image"]
    # Other tests' banks share this Redis: a close name may be suggested after the name.
    assert re.search(
        rf"\(no bank named {bank}(; did you mean [^)]+)?\)", before.rule_errors[0].error
    )
    runner = CliRunner()
    args = ["bank", "add", bank, str(files / "known.png"), "--redis-url", redis_url]
    assert runner.invoke(app, args).exit_code == 0
    after, _ = running.moderate_one(_post(files / "repost.jpg"))
    assert after.action == "block", "the running consumer picked the new bank up"
    restarted, _ = _local(config).moderate_one(_post(files / "repost.jpg"))
    assert restarted.action == "block", "a new consumer reads the bank from Redis"


def test_redis_down_makes_bank_rules_errors_and_the_rest_of_the_policy_decides(
    redis_factory, bank, files
):
    server = redis_factory()
    config = _config(_policy_dir(files, bank), server.url)
    moderator = _local(config)
    runner = CliRunner()
    args = ["bank", "add", bank, str(files / "known.png"), "--redis-url", server.url]
    assert runner.invoke(app, args).exit_code == 0
    server.stop()
    verdict, dead = moderator.moderate_one(_post(files / "repost.jpg", "a giveaway!"))
    assert dead is None
    assert verdict.action == "review" and [r.id for r in verdict.matched_rules] == ["words"]
    [error] = verdict.rule_errors
    assert error.id == "known-image"
    assert error.error.startswith(f"signal unavailable: banks.{bank} (hash banks unavailable:")
    assert server.url in error.error
