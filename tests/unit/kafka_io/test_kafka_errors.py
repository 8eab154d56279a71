import pytest

from contracts.errors import ServiceUnavailable
from kafka_io.clients import create_topics
from kafka_io.settings import KafkaSettings


def test_a_kafka_client_failure_is_one_sentence_naming_the_brokers():
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", extra={"no_such_setting": 1})
    with pytest.raises(ServiceUnavailable) as failed:
        create_topics(settings, ["posts"])
    assert failed.value.reason.startswith("Kafka at 127.0.0.1:1 failed: ")
    assert "no_such_setting" in failed.value.reason


def test_librdkafka_gets_the_connection_settings_by_its_own_names():
    from kafka_io.rdkafka import rdkafka_config

    settings = KafkaSettings(
        bootstrap_servers="a:9092,b:9092",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="vlmod",
        sasl_plain_password="secret",
        ssl_cafile="/ca.crt",
        extra={"max_block_ms": 1},  # kafka-python's: not passed to librdkafka
        librdkafka={"queue.buffering.max.messages": 1000},
    )
    assert rdkafka_config(settings) == {
        "bootstrap.servers": "a:9092,b:9092",
        "client.id": "vlmod",
        "security.protocol": "SASL_SSL",
        "request.timeout.ms": 30000,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "vlmod",
        "sasl.password": "secret",
        "ssl.ca.location": "/ca.crt",
        "queue.buffering.max.messages": 1000,
    }


@pytest.mark.parametrize(
    ("code", "outage"),
    [
        ("MSG_SIZE_TOO_LARGE", False),
        ("RECORD_LIST_TOO_LARGE", False),
        ("INVALID_RECORD", False),
        ("_MSG_TIMED_OUT", True),
        ("_TRANSPORT", True),
        ("NOT_LEADER_FOR_PARTITION", True),
        ("UNKNOWN_TOPIC_OR_PART", True),
    ],
)
def test_librdkafka_errors_are_outages_unless_the_broker_refused_the_message(code, outage):
    from kafka_io.rdkafka import refused

    assert refused(code) is not outage


def test_librdkafka_without_its_package_is_one_line_naming_the_package_and_the_way_out(
    monkeypatch,
):
    import sys

    from kafka_io.clients import kafka_writer

    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", producer="librdkafka")
    with pytest.raises(ImportError, match=r"confluent-kafka.*kafka\.producer: kafka-python") as e:
        kafka_writer(settings)
    assert "\n" not in str(e.value)
