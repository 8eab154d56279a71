"""deploy/ checked against Ray's own schemas, PipelineConfig, and the fields KubeRay requires."""

from __future__ import annotations

import json
import math
import re
import secrets
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from pipelines.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
KUBERAY = DEPLOY / "kuberay"
SERVE_DEPLOYMENTS = {"moderation-api", "vlm"}  # pipelines.serving's deployment names


def read_yaml(path: Path) -> dict:
    with path.open() as file:
        return yaml.safe_load(file)


def serve_config_args(config: dict) -> list[PipelineConfig]:
    """Validate a Serve config as Ray does, then each application's args as the builder does."""
    schema = ServeDeploySchema.model_validate(config)
    assert schema.applications, "a Serve config without applications deploys nothing"
    configs = []
    for app in schema.applications:
        assert app.import_path == "pipelines.serving:build_app"
        assert app.route_prefix == "/"
        overridden = {deployment.name for deployment in app.deployments}
        assert overridden <= SERVE_DEPLOYMENTS, f"unknown deployments: {overridden}"
        configs.append(PipelineConfig.model_validate(app.args))
    return configs


# -- deploy/serve.yaml -------------------------------------------------------------------------


def test_serve_yaml_is_a_serve_config_of_the_tiny_cpu_model():
    (config,) = serve_config_args(read_yaml(DEPLOY / "serve.yaml"))
    assert config.model.name_or_path == "tiny:smolvlm"
    assert config.model.device == "cpu"
    assert config.pool.num_gpus == 0
    assert config.pool.num_cpus == 0.5
    assert config.pool.max_batch_size == 8
    assert config.pool.min_replicas == config.pool.max_replicas == 1
    assert config.redis_url is None


def test_serve_yaml_policy_dir_resolves_from_the_repository_root():
    (config,) = serve_config_args(read_yaml(DEPLOY / "serve.yaml"))
    policy_dir = REPO / config.policy_dir
    assert any(policy_dir.glob("*.yaml")), f"no policies in {policy_dir}"


def test_serve_yaml_args_build_the_application_without_starting_ray():
    from ray.serve import Application

    from pipelines.serving import build_app

    schema = ServeDeploySchema.model_validate(read_yaml(DEPLOY / "serve.yaml"))
    assert isinstance(build_app(schema.applications[0].args), Application)


def test_serve_schema_refuses_an_unknown_pipeline_key():
    config = read_yaml(DEPLOY / "serve.yaml")
    config["applications"][0]["args"]["pool"]["gpus"] = 1
    with pytest.raises(ValueError, match="gpus"):
        serve_config_args(config)


# -- deploy/kuberay/rayservice.yaml ------------------------------------------------------------


@pytest.fixture(scope="module")
def rayservice() -> dict:
    return read_yaml(KUBERAY / "rayservice.yaml")


@pytest.fixture(scope="module")
def pipeline_job() -> dict:
    return read_yaml(KUBERAY / "pipeline-job.yaml")


def test_rayservice_identity(rayservice):
    assert rayservice["apiVersion"] == "ray.io/v1"
    assert rayservice["kind"] == "RayService"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rayservice["metadata"]["name"])


def test_rayservice_serve_config_is_the_gpu_application(rayservice):
    serve_config = rayservice["spec"]["serveConfigV2"]
    assert isinstance(serve_config, str), "KubeRay takes serveConfigV2 as a YAML string"
    (config,) = serve_config_args(yaml.safe_load(serve_config))
    assert config.model.device.startswith("cuda")
    assert 0 < config.pool.num_gpus <= 1
    assert config.pool.min_replicas <= config.pool.max_replicas
    assert config.redis_url
    assert Path(config.policy_dir).is_absolute()


def test_rayservice_gpu_share_fits_the_worker_gpu(rayservice):
    (config,) = serve_config_args(yaml.safe_load(rayservice["spec"]["serveConfigV2"]))
    gpus = [gpu_limit(c) for group in worker_groups(rayservice) for c in containers(group)]
    assert max(gpus) >= math.ceil(config.pool.num_gpus)


def cluster_spec(manifest: dict) -> dict:
    spec = manifest["spec"]
    return spec.get("rayClusterConfig") or spec["rayClusterSpec"]


def worker_groups(manifest: dict) -> list[dict]:
    return cluster_spec(manifest)["workerGroupSpecs"]


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def gpu_limit(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


@pytest.mark.parametrize("name", ["rayservice.yaml", "pipeline-job.yaml"])
def test_head_group_has_what_kuberay_requires(name):
    head = cluster_spec(read_yaml(KUBERAY / name))["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    container = containers(head)[0]
    assert container["name"] == "ray-head"
    assert_pinned_image(container["image"])
    ports = {port["containerPort"] for port in container["ports"]}
    assert {6379, 8265} <= ports
    assert_requests_within_limits(container)


def test_rayservice_head_exposes_serve(rayservice):
    head = cluster_spec(rayservice)["headGroupSpec"]
    assert 8000 in {port["containerPort"] for port in containers(head)[0]["ports"]}


@pytest.mark.parametrize("name", ["rayservice.yaml", "pipeline-job.yaml"])
def test_gpu_worker_group_is_schedulable_on_gpu_nodes(name):
    groups = worker_groups(read_yaml(KUBERAY / name))
    gpu_groups = [g for g in groups if any(gpu_limit(c) >= 1 for c in containers(g))]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
        pod = group["template"]["spec"]
        assert pod["nodeSelector"]
        assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
        for container in containers(group):
            assert_pinned_image(container["image"])
            assert_requests_within_limits(container)


@pytest.mark.parametrize("name", ["rayservice.yaml", "pipeline-job.yaml"])
def test_every_ray_container_mounts_the_policy_dir(name):
    manifest = read_yaml(KUBERAY / name)
    policy_dir = policy_dir_of(manifest)
    pods = [cluster_spec(manifest)["headGroupSpec"], *worker_groups(manifest)]
    for pod in pods:
        volumes = {v["name"]: v for v in pod["template"]["spec"]["volumes"]}
        for container in containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert policy_dir in mounts, f"{container['name']} cannot read {policy_dir}"
            assert "configMap" in volumes[mounts[policy_dir]]


def policy_dir_of(manifest: dict) -> str:
    if manifest["kind"] == "RayService":
        (config,) = serve_config_args(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
        return config.policy_dir
    return load_config(DEPLOY / "pipeline.yaml").policy_dir


def assert_pinned_image(image: str) -> None:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image} has no tag"
    assert tag != "latest", f"{image} is not pinned"


def assert_requests_within_limits(container: dict) -> None:
    resources = container["resources"]
    assert resources["limits"], f"{container['name']} has no limits"
    for key in ("cpu", "nvidia.com/gpu"):
        if key in resources.get("requests", {}):
            assert float(resources["requests"][key]) <= float(resources["limits"][key])


def test_pipeline_job_runs_vlmod_with_the_mounted_config(pipeline_job):
    assert pipeline_job["apiVersion"] == "ray.io/v1"
    assert pipeline_job["kind"] == "RayJob"
    match = re.fullmatch(r"vlmod run --config (\S+)", pipeline_job["spec"]["entrypoint"])
    assert match, pipeline_job["spec"]["entrypoint"]
    head = cluster_spec(pipeline_job)["headGroupSpec"]["template"]["spec"]
    mounts = [m["mountPath"] for m in containers({"template": {"spec": head}})[0]["volumeMounts"]]
    assert str(Path(match.group(1)).parent) in mounts


def test_pipeline_job_gives_the_drain_time_before_sigkill(pipeline_job):
    head = cluster_spec(pipeline_job)["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in head["containers"][0]["env"]}
    # PipelineRun.stop waits up to 120 s for consumers to drain.
    assert float(env["RAY_JOB_STOP_WAIT_TIME_S"]) >= 120
    assert head["terminationGracePeriodSeconds"] > float(env["RAY_JOB_STOP_WAIT_TIME_S"])


# -- deploy/pipeline.yaml ----------------------------------------------------------------------


def test_pipeline_yaml_loads_as_a_gpu_pipeline():
    config = load_config(DEPLOY / "pipeline.yaml")
    assert config.model.device == "cuda"
    assert 0 < config.pool.num_gpus < 1, "the example shows GPU sharing"
    assert config.pool.min_replicas < config.pool.max_replicas
    assert config.redis_url
    assert config.telemetry.exporter == "otlp"
    assert config.telemetry.otlp_endpoint


def test_pipeline_yaml_commented_sasl_example_is_valid():
    text = (DEPLOY / "pipeline.yaml").read_text()
    uncommented = re.sub(r"(?m)^  # ((security_protocol|sasl_|ssl_)\w*:)", r"  \1", text)
    uncommented = re.sub(r"(?m)^  security_protocol: PLAINTEXT\n", "", uncommented)
    config = PipelineConfig.model_validate(yaml.safe_load(uncommented))
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.kafka.client_kwargs()["sasl_plain_password"]


# -- deploy/cluster.yaml -----------------------------------------------------------------------


def test_cluster_yaml_validates_against_rays_launcher_schema():
    import jsonschema
    import ray

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    cluster = read_yaml(DEPLOY / "cluster.yaml")
    validator = jsonschema.Draft7Validator(json.loads(schema_path.read_text()))
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(cluster)]
    assert problems == []


def test_cluster_yaml_passes_rays_own_config_checks():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(read_yaml(DEPLOY / "cluster.yaml")))


def test_cluster_yaml_has_a_gpu_worker_type_and_installs_the_project():
    cluster = read_yaml(DEPLOY / "cluster.yaml")
    types = cluster["available_node_types"]
    assert types[cluster["head_node_type"]]["resources"].get("GPU", 0) == 0
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types and all(t["max_workers"] >= t.get("min_workers", 0) for t in gpu_types)
    installs = " ".join(cluster["setup_commands"])
    mounted = [remote for remote, local in cluster["file_mounts"].items() if local == "."]
    assert mounted and f"pip install {mounted[0]}" in installs
    assert any("--head" in cmd for cmd in cluster["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP" in cmd for cmd in cluster["worker_start_ray_commands"])


# -- deploy/Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in logical.splitlines()]
    pairs = [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]
    return [(word.upper(), rest) for word, rest in pairs]


def test_dockerfile_starts_from_the_installed_ray_version():
    import ray

    instruction, image = dockerfile_instructions()[0]
    assert instruction == "FROM"
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-gpu", image)
    assert match, image
    assert match.group(1) == ray.__version__
    assert (int(match.group(2)), int(match.group(3))) == (3, 11)


def test_dockerfile_installs_the_package_not_editable():
    runs = [args for word, args in dockerfile_instructions() if word == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip install\b", r)]
    assert any(re.search(r"\s\"?\.(\[[a-z,]+\])?\"?(\s|$)", r) for r in installs), installs
    assert not any(re.search(r"\s(-e|--editable)\s", r) for r in installs)


def test_dockerfile_runs_as_non_root_and_exposes_serve():
    instructions = dockerfile_instructions()
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("EXPOSE", "8000") in instructions
    assert all(":latest" not in args for word, args in instructions if word == "FROM")


def test_dockerfile_copies_every_package_pyproject_installs():
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = " ".join(args for word, args in dockerfile_instructions() if word == "COPY")
    for needed in packages | {"pyproject.toml", pyproject["project"]["readme"]}:
        assert needed in copied, f"{needed} is not copied into the image"


# -- the review console -------------------------------------------------------------------------


def test_review_yaml_loads_and_its_placeholder_hashes_match_no_password(monkeypatch):
    from review.auth import verify_password
    from review.settings import load_review_config

    monkeypatch.setenv("VLMOD_REVIEW_SESSION_SECRET", secrets.token_urlsafe(48))
    config = load_review_config(DEPLOY / "review.yaml")
    assert config.session_secret is None, "the secret comes from the environment, not the file"
    assert config.secure_cookies and "scam" in config.review_topics
    for reviewer in config.reviewers.values():
        assert not verify_password(reviewer.password_argon2, "")
        assert not verify_password(reviewer.password_argon2, "change-me")


def test_review_yaml_has_a_queue_for_every_topic_of_the_example_policies(monkeypatch):
    from pipelines.runner import review_topics
    from policies.loader import load_policy_dir
    from review.settings import load_review_config

    monkeypatch.setenv("VLMOD_REVIEW_SESSION_SECRET", secrets.token_urlsafe(48))
    config = load_review_config(DEPLOY / "review.yaml")
    policy_set = load_policy_dir(REPO / "policies" / "examples")
    assert review_topics(policy_set) <= set(config.topics.values())
    queue_of = {topic: config.task_queue(queue) for queue, topic in config.topics.items()}
    for policy in policy_set.active:  # the tasks on each topic carry the name it expects
        for queue, topic in policy.routed_queues().items():
            assert queue_of[topic] == queue


def test_the_review_console_manifest_takes_the_session_secret_from_a_secret():
    deployment, _ = list(yaml.safe_load_all((DEPLOY / "kubernetes/review-console.yaml").open()))
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    secret = env["VLMOD_REVIEW_SESSION_SECRET"]["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"]
    assert "session_secret_env: VLMOD_REVIEW_SESSION_SECRET" in (DEPLOY / "review.yaml").read_text()


def test_review_console_deployment_runs_vlmod_review_on_the_mounted_config():
    deployment, service = list(
        yaml.safe_load_all((DEPLOY / "kubernetes/review-console.yaml").open())
    )
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["vlmod", "review"]
    config_path = command[command.index("--config") + 1]
    [mount] = container["volumeMounts"]
    assert config_path == f"{mount['mountPath']}/review.yaml"
    port = int(command[command.index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
