"""`model:` and `models:`: several models, each with a cost and a pool, checked at load."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.errors import ConfigInvalid
from pipelines.config import PipelineConfig, load_config
from pipelines.producer_registry import pipeline_registry
from policies.exceptions import PolicyInvalid
from policies.loader import load_policy_dir
from tests.unit.policies.test_models import CASCADE

TWO_MODELS = """\
kafka: {bootstrap_servers: "broker:9092"}
model: {name_or_path: noop}
models:
  large:
    name_or_path: noop
    device: cuda:1
    cost: large
    pool: {num_gpus: 0.5, max_replicas: 4}
"""


def config_file(tmp_path, text):
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_config_without_models_has_the_one_default_model():
    config = PipelineConfig()
    assert config.model_names() == ("default",)
    assert config.model_settings("default") is config.model
    assert config.model.cost_rank == 0 and config.replica_pool("default") is config.pool


def test_each_named_model_has_its_own_settings_cost_and_pool(tmp_path):
    config = load_config(config_file(tmp_path, TWO_MODELS))
    assert config.model_names() == ("default", "large")
    large = config.model_settings("large")
    assert (large.device, large.cost_rank) == ("cuda:1", 1)
    assert (config.replica_pool("large").num_gpus, config.replica_pool("large").max_replicas) == (
        0.5,
        4,
    )
    assert config.replica_pool("default").num_gpus == 0.0, "the default model keeps `pool`"


@pytest.mark.parametrize(("cost", "rank"), [("small", 0), ("large", 1), (0, 0), (3, 3)])
def test_a_cost_is_a_class_or_a_rank(tmp_path, cost, rank):
    config = load_config(config_file(tmp_path, TWO_MODELS.replace("cost: large", f"cost: {cost}")))
    assert config.model_settings("large").cost_rank == rank


def test_every_models_problem_is_reported_at_its_position(tmp_path):
    path = config_file(
        tmp_path,
        """\
        kafka: {bootstrap_servers: "broker:9092"}
        models:
          large: {name_or_path: x, cost: huge, pool: {consumers: 3}}
          default: {name_or_path: x, cost: large}
          Big: {cost: 2}
          medium: {name_or_path: x}
        """,
    )
    with pytest.raises(ConfigInvalid) as refused:
        load_config(path)
    assert refused.value.reason.splitlines() == [
        f"{path}:3:34: models.large.cost: 'huge' is not a cost: small, large, or a rank 0, 1, "
        "2... (0 = small, 1 = large)",
        f"{path}:3:47: unknown key 'consumers' in models.large.pool; expected one of: "
        "min_replicas, max_replicas, num_gpus, num_cpus, max_batch_size, batch_wait_timeout_s, "
        "target_ongoing_requests, upscale_delay_s, downscale_delay_s, look_back_period_s, "
        "resources",
        f"{path}:4:12: models.default: 'default' is the name of `model:`; give this one "
        "another name",
        f"{path}:5:8: models.Big: model name 'Big' does not match ^[a-z][a-z0-9_-]{{0,39}}$",
        f"{path}:6:11: missing required key 'cost' in models.medium",
    ]


def test_a_model_name_is_given_once(tmp_path):
    path = config_file(
        tmp_path,
        """\
        kafka: {bootstrap_servers: "broker:9092"}
        models:
          large: {name_or_path: a, cost: large}
          large: {name_or_path: b, cost: 2}
        """,
    )
    with pytest.raises(ConfigInvalid) as refused:
        load_config(path)
    assert refused.value.reason == f"{path}:4:3: duplicate key 'large' (first at line 3)"


def test_policies_may_name_the_configs_models_and_no_others(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "cascade.yaml").write_text(CASCADE)
    config = load_config(config_file(tmp_path, TWO_MODELS))
    assert load_policy_dir(policies, registry=pipeline_registry(config)).active
    alone = config.model_copy(update={"models": {}})
    with pytest.raises(PolicyInvalid) as refused:
        load_policy_dir(policies, registry=pipeline_registry(alone))
    assert "unknown model 'large'; the pipeline has default" in str(refused.value)


def test_policy_check_reads_the_models_of_the_config_it_is_given(tmp_path):
    (tmp_path / "cascade.yaml").write_text(CASCADE)
    config = config_file(tmp_path, TWO_MODELS)
    without = CliRunner().invoke(app, ["policy", "check", str(tmp_path / "cascade.yaml")])
    assert without.exit_code == 1 and "unknown model 'large'" in without.stdout
    checked = CliRunner().invoke(
        app, ["policy", "check", "--config", str(config), str(tmp_path / "cascade.yaml")]
    )
    assert checked.exit_code == 0, checked.output


def test_each_model_is_its_own_serve_deployment_sized_by_its_own_pool(tmp_path):
    from pipelines.serving import build_app, signal_deployment

    config = load_config(config_file(tmp_path, TWO_MODELS))
    # Ray keeps a bound application's deployment in `_bound_deployment`; nothing is started.
    large = signal_deployment(config, "large")._bound_deployment
    assert (large.name, large.init_args[1]) == ("vlm-large", "large")
    assert large.ray_actor_options == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert signal_deployment(config)._bound_deployment.name == "vlm"
    args = {**config.model_dump(mode="json"), "policy_dir": "policies/examples"}
    models = build_app(args)._bound_deployment.init_args[1]
    assert {name: app._bound_deployment.name for name, app in models.items()} == {
        "default": "vlm",
        "large": "vlm-large",
    }


def test_a_models_prompt_settings_reach_its_spec_and_the_pipelines_own_stay_behind(tmp_path):
    from operators.spec import ModelSpec
    from pipelines.wiring import model_spec

    text = TWO_MODELS.replace(
        "device: cuda:1",
        "device: cuda:1\n    label_question: 'Is {label} here?'\n    yes_words: [Si]",
    )
    spec = model_spec(load_config(config_file(tmp_path, text)), "large")
    assert type(spec) is ModelSpec
    assert (spec.name_or_path, spec.device) == ("noop", "cuda:1")
    assert (spec.label_question, spec.yes_words, spec.no_words) == (
        "Is {label} here?",
        ("Si",),
        ("no", "No", "NO"),
    )


def test_a_bad_prompt_setting_is_refused_at_its_position(tmp_path):
    path = config_file(
        tmp_path,
        """\
        kafka: {bootstrap_servers: "broker:9092"}
        model: {name_or_path: x, label_question: "Is it?", engine: fast}
        """,
    )
    with pytest.raises(ConfigInvalid) as refused:
        load_config(path)
    assert refused.value.reason.splitlines() == [
        f"{path}:2:42: model.label_question: label_question must contain the placeholder {{label}}",
        f"{path}:2:60: model.engine: engine must be one of eager, static, plain, not 'fast'",
    ]


PINNED = """\
kafka: {bootstrap_servers: "broker:9092"}
model: {name_or_path: noop}
pool: {resources: {model_node: 1}, consumer_resources: {ingest: 0.5}}
models:
  large:
    name_or_path: noop
    cost: large
    pool: {num_gpus: 1, resources: {h200: 1}}
"""


def test_custom_resources_pin_each_pool_and_the_consumers_to_their_nodes(tmp_path):
    from pipelines.serving import actor_resources, signal_deployment

    config = load_config(config_file(tmp_path, PINNED))
    default = signal_deployment(config)._bound_deployment.ray_actor_options
    assert default == {"num_cpus": 1.0, "resources": {"model_node": 1.0}}
    large = signal_deployment(config, "large")._bound_deployment.ray_actor_options
    assert large == {"num_cpus": 1.0, "num_gpus": 1.0, "resources": {"h200": 1.0}}
    consumer = actor_resources(config.pool.consumer_num_cpus, 0.0, config.pool.consumer_resources)
    assert consumer == {"num_cpus": 0.5, "resources": {"ingest": 0.5}}
    assert actor_resources(0.5, 0.0) == {"num_cpus": 0.5}  # none asked, none set
    bad = PINNED.replace("model_node: 1", "model_node: 0")
    with pytest.raises(ConfigInvalid, match=r"pipeline.yaml:3:\d+: pool.resources.model_node"):
        load_config(config_file(tmp_path, bad))


def test_the_pool_s_scaling_delays_and_windows_reach_serve(tmp_path):
    from pipelines.serving import signal_deployment

    text = PINNED.replace(
        "pool: {resources",
        "pool: {max_replicas: 2, upscale_delay_s: 1, downscale_delay_s: 3, "
        "look_back_period_s: 12, resources",
    )
    deployment = signal_deployment(load_config(config_file(tmp_path, text)))._bound_deployment
    scaling = deployment._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (1, 2)
    assert (scaling.upscale_delay_s, scaling.downscale_delay_s) == (1.0, 3.0)
    assert scaling.look_back_period_s == 12.0
    defaults = signal_deployment(load_config(config_file(tmp_path, PINNED)))._bound_deployment
    assert defaults._deployment_config.autoscaling_config.downscale_delay_s == 600.0
    assert defaults._deployment_config.autoscaling_config.look_back_period_s == 30.0
