"""A head reads the embedding of the model it was trained on: another model's embedding of the
same size would give a number, a wrong one, so the head is unavailable there, with the reason."""

from __future__ import annotations

import math

from contracts.producers import ProducerContext, ProducerJob, Unavailable
from contracts.records import Post
from contracts.vlm import DEFAULT_MODEL
from contracts.vlm_signals import EMBED_PRODUCER, POST_EMBEDDING
from heads.producer import HeadSignals
from pipelines.config import ModelSettings, PipelineConfig
from tests.unit.heads.held import producer_holding


def _producer(context: ProducerContext) -> HeadSignals:
    return producer_holding(context, version=2, model="org/model-a")


def _score(producer: HeadSignals) -> object:
    signals = {EMBED_PRODUCER: {POST_EMBEDDING: [math.log(3.0), 0.0]}}  # logistic: 0.75
    [out] = producer.compute([ProducerJob(Post(id="p"), frozenset({"wave"}), signals=signals)])
    return out.values["wave"]


def test_the_head_scores_the_embedding_of_its_own_model():
    assert _score(_producer(ProducerContext(models={DEFAULT_MODEL: "org/model-a"}))) == 0.75


def test_another_models_embedding_of_the_same_size_leaves_the_head_unavailable():
    value = _score(_producer(ProducerContext(models={DEFAULT_MODEL: "org/model-b"})))
    assert isinstance(value, Unavailable)
    assert value.reason == (
        "head wave v2 was trained on org/model-a's embeddings, the pipeline's model is org/model-b"
    )


def test_the_pipeline_config_names_its_model_to_the_producers():
    config = PipelineConfig(model=ModelSettings(name_or_path="org/model-b"))
    assert _score(_producer(config.producer_context())) == _score(
        _producer(ProducerContext(models={DEFAULT_MODEL: "org/model-b"}))
    )
    assert config.producer_context().models[DEFAULT_MODEL] == "org/model-b"
