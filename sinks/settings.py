"""The `sinks:` list of a pipeline's config: where outcomes are written, each entry by `kind`.

    sinks:
      - kind: kafka                  # verdict, review-queue, shadow and dead-letter topics
      - kind: postgres
        dsn_env: VLMOD_POSTGRES_DSN  # or dsn: postgresql://vlmod@127.0.0.1:5432/vlmod
      - kind: webhook
        url: https://hooks.example.com/moderation
        secret_env: VLMOD_WEBHOOK_SECRET
        actions: [block, escalate]   # which verdicts it receives; all when absent
      - kind: mypackage.sinks:AuditSink   # any other sink: a vlmod.sinks entry point or a class
        bucket: audit                # its own settings, handed to it

Absent, the list is `[{kind: kafka}]`: the topics alone.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from contracts.records import Action

BUILT_IN = ("kafka", "postgres", "webhook")
ENTRY_POINTS = "vlmod.sinks"
_CLASS_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MIN_SECRET_BYTES = 32


class KafkaSinkSettings(BaseModel):
    """The topics: verdicts, review queues, shadow verdicts and dead letters, as configured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["kafka"] = Field("kafka", description="The pipeline's Kafka topics.")


class PostgresSinkSettings(BaseModel):
    """The verdict history: `verdicts` and `posts` tables, created where missing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["postgres"] = Field(..., description="A PostgreSQL database.")
    dsn: str | None = Field(None, description="postgresql:// address of the database.")
    dsn_env: str | None = Field(
        None, description="Or the environment variable that holds it (keeps a password out)."
    )

    @model_validator(mode="after")
    def _one_address(self) -> PostgresSinkSettings:
        if (self.dsn is None) == (self.dsn_env is None):
            raise ValueError("give dsn or dsn_env, one of them")
        if self.dsn_env is not None and not os.environ.get(self.dsn_env):
            raise ValueError(f"dsn_env names {self.dsn_env}, which is not set")
        return self

    def address(self) -> str:
        """The DSN, from the file or the environment."""
        return self.dsn if self.dsn is not None else os.environ[str(self.dsn_env)]


class WebhookSinkSettings(BaseModel):
    """Signed POSTs of verdicts to one URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["webhook"] = Field(..., description="An HTTP endpoint.")
    url: str = Field(..., pattern=r"^https?://[^/\s]+", description="http(s) URL to POST to.")
    secret_env: str = Field(
        ...,
        description="Environment variable holding the HMAC secret (at least 32 bytes) that "
        "signs each body in X-Vlmod-Signature.",
    )
    actions: list[Action] | None = Field(
        None, description="The verdict actions it receives; all when absent."
    )
    allow_private_addresses: bool = Field(
        False, description="Allow loopback and private addresses (a hook inside the network)."
    )
    timeout_s: float = Field(5.0, gt=0, description="Seconds per POST.")
    max_attempts: int = Field(5, ge=1, description="Tries of a 5xx or timeout before failing.")
    backoff_base_s: float = Field(0.2, gt=0, description="First retry's backoff ceiling, seconds.")
    backoff_cap_s: float = Field(5.0, gt=0, description="Largest backoff between tries, seconds.")

    @model_validator(mode="after")
    def _secret_is_set(self) -> WebhookSinkSettings:
        secret = os.environ.get(self.secret_env, "")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            state = "is not set" if not secret else f"holds under {MIN_SECRET_BYTES} bytes"
            raise ValueError(f"secret_env names {self.secret_env}, which {state}")
        return self

    def secret(self) -> bytes:
        """The signing secret, from the environment."""
        return os.environ[self.secret_env].encode()


class PluginSinkSettings(BaseModel):
    """Another sink: a `vlmod.sinks` entry point's name or package.module:Class, and its
    settings (every other key), handed to it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: str = Field(..., description="Entry point name or package.module:Class.")

    @model_validator(mode="after")
    def _known_kind(self) -> PluginSinkSettings:
        installed = sorted(point.name for point in entry_points(group=ENTRY_POINTS))
        if self.kind not in installed and not _CLASS_PATH.match(self.kind):
            known = ", ".join([*BUILT_IN, *installed])
            raise ValueError(
                f"unknown sink kind {self.kind!r}: one of {known}, or package.module:Class"
            )
        return self

    def options(self) -> dict[str, Any]:
        """Its settings besides `kind`."""
        return dict(self.model_extra or {})


def _kind_of(entry: Any) -> str:
    kind = entry.get("kind") if isinstance(entry, dict) else getattr(entry, "kind", None)
    return kind if kind in BUILT_IN else "plugin"


SinkSettings = Annotated[
    Annotated[KafkaSinkSettings, Tag("kafka")]
    | Annotated[PostgresSinkSettings, Tag("postgres")]
    | Annotated[WebhookSinkSettings, Tag("webhook")]
    | Annotated[PluginSinkSettings, Tag("plugin")],
    Discriminator(_kind_of),
]


def default_sinks() -> list[Any]:
    """The topics alone, as before sinks could be configured."""
    return [KafkaSinkSettings()]
