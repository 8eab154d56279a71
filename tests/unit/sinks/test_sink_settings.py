"""The `sinks:` list: each kind's settings checked at load, with the file position of a problem."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from contracts.errors import ConfigInvalid
from contracts.records import Action
from policies.settings_files import read_config_yaml, validate_config
from sinks.settings import (
    KafkaSinkSettings,
    PluginSinkSettings,
    PostgresSinkSettings,
    SinkSettings,
    WebhookSinkSettings,
    default_sinks,
)

SECRET = "s" * 40


class Holder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sinks: list[SinkSettings] = Field(default_factory=default_sinks, description="Sinks.")


def load(tmp_path, text: str) -> Holder:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return validate_config(read_config_yaml(path, needs="sinks"), Holder)


def test_absent_means_the_kafka_topics_alone():
    assert Holder().sinks == [KafkaSinkSettings()]


def test_each_kind_is_read_into_its_own_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("PG_DSN", "postgresql://vlmod:pw@db/vlmod")
    sinks = load(
        tmp_path,
        "sinks:\n  - kind: kafka\n  - {kind: postgres, dsn_env: PG_DSN}\n"
        "  - {kind: webhook, url: 'https://hooks.example.com/m', secret_env: HOOK_SECRET,"
        " actions: [block, escalate]}\n  - {kind: 'audit.sinks:Bucket', bucket: b1}\n",
    ).sinks
    kafka, postgres, webhook, plugin = sinks
    assert isinstance(kafka, KafkaSinkSettings)
    assert isinstance(postgres, PostgresSinkSettings)
    assert postgres.address() == "postgresql://vlmod:pw@db/vlmod"
    assert isinstance(webhook, WebhookSinkSettings)
    assert (
        webhook.actions == [Action.BLOCK, Action.ESCALATE] and webhook.secret() == SECRET.encode()
    )
    assert isinstance(plugin, PluginSinkSettings) and plugin.options() == {"bucket": "b1"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sinks:\n  - kind: s3\n", ":2:5: sinks[0]: unknown sink kind 's3': one of kafka,"),
        ("sinks:\n  - {kind: postgres}\n", ":2:5: sinks[0]: give dsn or dsn_env, one of them"),
        (
            "sinks:\n  - {kind: webhook, url: 'http://h/x', secret_env: UNSET_SECRET}\n",
            ":2:5: sinks[0]: secret_env names UNSET_SECRET, which is not set",
        ),
        (
            "sinks:\n  - {kind: webhook, url: 'http://h/x', secret_env: SHORT}\n",
            ":2:5: sinks[0]: secret_env names SHORT, which holds under 32 bytes",
        ),
        (
            "sinks:\n  - {kind: kafka, topic: x}\n",
            ":2:19: unknown key 'topic' in sinks[0]; expected one of: kind",
        ),
    ],
)
def test_a_bad_sink_is_refused_at_its_position(tmp_path, monkeypatch, text, problem):
    monkeypatch.setenv("SHORT", "too-short")
    monkeypatch.delenv("UNSET_SECRET", raising=False)
    with pytest.raises(ConfigInvalid) as refused:
        load(tmp_path, text)
    assert problem in str(refused.value)
