"""`specialists:` is checked against the registered producers, each section against its model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from contracts.errors import ConfigInvalid
from contracts.producers import ProducerContext, Variable
from operators.guards.producers import GuardLoading
from operators.specialists.settings import BankSettings, OcrSettings
from pipelines.config import config_of, load_config
from tests.producers import ShoutSignals


class ShoutSettings(BaseModel):
    """The `loud` producer's section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(0.5, ge=0, le=1)


class LoudSignals(ShoutSignals):
    """A producer shipped outside this package that takes settings."""

    name = "loud"
    variables = (Variable("loud", "double"),)
    settings_model = ShoutSettings


LOUD = f"{__name__}:LoudSignals"


def _load(tmp_path, text: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path, lambda: load_config(path)


def _refusal(tmp_path, text: str) -> tuple[str, str]:
    path, load = _load(tmp_path, text)
    with pytest.raises(ConfigInvalid) as refused:
        load()
    return str(path), str(refused.value)


def test_an_unknown_producer_under_specialists_is_refused_where_it_stands(tmp_path):
    path, message = _refusal(tmp_path, "specialists:\n  post: {}\n  ocrr:\n    threads: 2\n")
    assert message == f"{path}:3:3: unknown key 'ocrr' in specialists; did you mean 'ocr'?"


def test_a_producer_that_takes_no_settings_gets_no_section(tmp_path):
    path, message = _refusal(tmp_path, "specialists:\n  links: {}\n")
    assert message.startswith(f"{path}:2:3: unknown key 'links' in specialists;")
    path, message = _refusal(tmp_path, "specialists:\n  xyz: {}\n")
    allowed = "post, placement, pool, banks, heads, llamaguard, nsfw, ocr, shieldgemma"
    assert message == f"{path}:2:3: unknown key 'xyz' in specialists; expected one of: {allowed}"


def test_each_section_is_checked_against_its_producers_model(tmp_path):
    path, message = _refusal(tmp_path, "specialists:\n  ocr:\n    max_sidee: 800\n")
    assert message == (
        f"{path}:3:5: unknown key 'max_sidee' in specialists.ocr; did you mean 'max_side'?"
    )
    path, message = _refusal(tmp_path, "specialists:\n  nsfw: {threads: 0}\n")
    assert message.startswith(f"{path}:2:19: specialists.nsfw.threads:")


def test_the_sections_reach_their_producers_with_defaults_for_the_rest(tmp_path):
    _, load = _load(tmp_path, "specialists:\n  shieldgemma: {device: cpu}\n  ocr: {threads: 2}\n")
    config = load()
    context = config.producer_context()
    guard = context.settings_for("shieldgemma", GuardLoading)
    assert guard.model_dump() == {"device": "cpu", "dtype": "auto"}
    ocr = context.settings_for("ocr", OcrSettings)
    assert (ocr.threads, ocr.max_side) == (2, 1600)
    banks = context.settings_for("banks", BankSettings).model_dump()
    assert banks == {"refresh_s": 1.0, "recent_window": 100_000}
    assert ocr is config.specialists.ocr, "the instance validated at load, not parsed again"


def test_a_section_left_out_reads_as_its_models_defaults():
    assert ProducerContext().settings_for("loud", ShoutSettings).threshold == 0.5


def test_a_section_built_in_code_as_a_plain_mapping_is_refused():
    context = ProducerContext(settings={"ocr": {"threads": 2}})
    with pytest.raises(ConfigInvalid, match=r"^specialists\.ocr: expected OcrSettings, got dict$"):
        context.settings_for("ocr", OcrSettings)


def test_a_configured_producer_brings_its_own_section(tmp_path):
    text = f"producers: [{LOUD!r}]\nspecialists:\n  loud: {{threshold: 0.8}}\n"
    _, load = _load(tmp_path, text)
    assert load().producer_context().settings_for("loud", ShoutSettings).threshold == 0.8
    path, message = _refusal(tmp_path, "specialists:\n  loud: {threshold: 0.8}\n")
    assert message.startswith(f"{path}:2:3: unknown key 'loud' in specialists")
    path, message = _refusal(tmp_path, text.replace("0.8", "2"))
    assert message.startswith(f"{path}:3:21: specialists.loud.threshold:")


def test_placement_and_pool_are_settings_of_their_own_not_producer_sections(tmp_path):
    text = (
        "specialists:\n  placement: pool\n"
        "  pool: {min_replicas: 1, max_replicas: 8, num_cpus: 1, target_ongoing_requests: 4}\n"
    )
    _, load = _load(tmp_path, text)
    config = load()
    assert config.specialists.placement == "pool"
    pool = config.specialists.pool
    assert (pool.min_replicas, pool.max_replicas, pool.num_cpus) == (1, 8, 1.0)
    assert pool.target_ongoing_requests == 4
    assert not {"placement", "pool"} & set(config.producer_context().settings)


def test_specialists_run_on_the_consumer_unless_told_otherwise(tmp_path):
    _, load = _load(tmp_path, "kafka: {bootstrap_servers: 'x:9092'}\n")
    assert load().specialists.placement == "consumer"


def test_a_bad_placement_or_pool_is_refused_where_it_stands(tmp_path):
    path, message = _refusal(tmp_path, "specialists:\n  placement: pools\n")
    assert message == f"{path}:2:14: specialists.placement: value should be 'consumer' or 'pool'"
    path, message = _refusal(tmp_path, "specialists:\n  pool: {max_replicas: 0}\n")
    assert message.startswith(f"{path}:2:24: specialists.pool.max_replicas:")
    path, message = _refusal(tmp_path, "specialists:\n  pool:\n    replicas: 2\n")
    assert message.startswith(f"{path}:3:5: unknown key 'replicas' in specialists.pool;")


def test_a_config_handed_to_an_actor_gets_its_sections_back_as_models(tmp_path):
    _, load = _load(tmp_path, "specialists:\n  placement: pool\n  ocr: {threads: 2}\n")
    dumped = load().model_dump(mode="json")
    again = config_of(dumped)
    assert again.producer_context().settings_for("ocr", OcrSettings).threads == 2
    assert again.specialists.placement == "pool"
