"""How to reach Kafka and which topics the pipeline reads and writes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster; security settings pass through to kafka-python."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(..., description="host:port[,host:port...] of the brokers.")
    client_id: str = Field("vlmod", description="Client id shown in broker logs.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="kafka-python security_protocol."
    )
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512...")
    sasl_plain_username: str | None = Field(None, description="SASL user name.")
    sasl_plain_password: SecretStr | None = Field(None, description="SASL password.")
    ssl_cafile: str | None = Field(None, description="CA bundle for SSL.")
    ssl_certfile: str | None = Field(None, description="Client certificate for SSL.")
    ssl_keyfile: str | None = Field(None, description="Client key for SSL.")
    request_timeout_ms: int = Field(30_000, gt=0, description="Broker request timeout.")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Any other kafka-python settings, passed as they are."
    )
    producer: Literal["librdkafka", "kafka-python"] = Field(
        "librdkafka",
        description="The client that produces: librdkafka (confluent-kafka), at about a seventh "
        "of kafka-python's CPU a message, or kafka-python (then `extra` reaches it too). The "
        "admin client is kafka-python's; the consumers' client is `consumer`.",
    )
    consumer: Literal["kafka-python", "librdkafka"] = Field(
        "kafka-python",
        description="The client the pipeline's and the review console's group consumers read "
        "through: kafka-python, or librdkafka (a tenth of kafka-python's CPU a record). Consumer "
        "overrides keep kafka-python's names either way; those librdkafka lacks are refused.",
    )
    librdkafka: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other librdkafka settings for its producer and consumer, by "
        "librdkafka's own names (`extra` is kafka-python's), passed as they are.",
    )

    def connection(self) -> dict[str, Any]:
        """The connection settings that are set, by kafka-python's names (`extra` aside)."""
        password = self.sasl_plain_password
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_plain_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        return {key: value for key, value in settings.items() if value is not None}

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by kafka-python's producer, consumer and admin client."""
        kwargs = self.connection()
        kwargs["bootstrap_servers"] = self.bootstrap_servers.split(",")
        kwargs.update(self.extra)
        return kwargs


class TopicSettings(BaseModel):
    """Where posts come from and where results go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: list[str] = Field(["posts"], min_length=1, description="Topics carrying posts.")
    verdicts: str = Field("moderation.verdicts", description="Every verdict, one per post.")
    dead_letter: str = Field(
        "moderation.dead-letter", description="Posts that could not be moderated."
    )
    shadow: str = Field("moderation.shadow", description="Shadow-policy verdicts with their diff.")
    partitions: int = Field(2, ge=1, description="Partitions for topics the pipeline creates.")
    create: bool = Field(True, description="Create missing topics at start-up.")

    @classmethod
    def namespaced(cls, prefix: str, *, partitions: int = 2) -> TopicSettings:
        """Every topic under `prefix.`: posts, verdicts, dead-letter, shadow (runs side by side)."""
        return cls(
            inputs=[f"{prefix}.posts"],
            verdicts=f"{prefix}.verdicts",
            dead_letter=f"{prefix}.dead-letter",
            shadow=f"{prefix}.shadow",
            partitions=partitions,
        )
