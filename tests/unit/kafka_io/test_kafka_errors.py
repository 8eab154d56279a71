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
