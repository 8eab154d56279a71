"""`vlmod moderate` and POST /v1/moderate give the golden verdicts on the example policies.

Each example policy set (the whole `policies/examples` directory, as the pipeline loads it, and
each active policy file alone, with its tests file) judges a fixed set of posts: allow, review,
block and escalate by text, metadata, links and a cut text, posts with images, and posts that
end as dead letters.
Both paths are compared with the same golden file, written from the code before the pipeline
was split into packages; each verdict's `record` (the post's recorded inputs) was added to it
later, the rest of the file unchanged. `noop` gives exact signals; the seeded random-weight
`tiny:smolvlm` gives real model probabilities, compared to 1e-4. Regenerate with
`VLMOD_WRITE_GOLDEN=1` only when a change of verdicts is meant.

`spam-scams-next.yaml` is not judged alone: it is a shadow policy, and a set of shadow policies
only is refused (test_cli_moderate_input); it is loaded with the whole directory, where it
routes nothing and neither path returns its verdict.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from pipelines.config import PipelineConfig
from pipelines.model_settings import ModelSettings
from pipelines.serving import ModerationApi
from pipelines.wiring import build_signal_source

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
GOLDEN = Path(__file__).parent / "golden" / "moderate_verdicts.json"
ACTIVE_FILES = ("community-standards", "marketplace-listings", "spam-scams")
SETS = ("examples", *ACTIVE_FILES)
FLOAT_TOLERANCE = 1e-4  # the model's float noise between runs and thread counts is ~1e-7
ABSENT = "<absent>"  # a key one side has and the other has not

# name -> (width, height, colour); BMP is uncompressed, so the bytes never depend on zlib.
IMAGES = {
    "red": (32, 24, (200, 30, 30)),
    "green": (24, 24, (10, 200, 10)),
    "grey": (16, 32, (90,) * 3),
}
# Post cases: text, images (IMAGES names; "garbage" is bytes no decoder reads), meta.
POSTS: dict[str, dict[str, Any]] = {
    "allow-text": {"text": "Sunset at the beach"},
    "review-engagement": {"text": "Buy followers now!"},
    "review-fresh-account-link": {
        "text": "check http://example.com",
        "meta": {"account_age_days": 0},
    },
    "review-link-flood": {
        "text": "gifts https://bit.ly/a https://t.co/b https://x.example/c https://y.example/d"
    },
    "review-cut-text": {"text": "lovely weather today " * 1000},
    "block-crypto": {"text": "Send 1 ETH and we DOUBLE your ETH instantly"},
    "block-ammo-cheap-rolex": {
        "text": "Selling 500 rounds of ammo, and a replica Rolex",
        "meta": {"price": 40, "currency": "EUR"},
    },
    "escalate-self-harm": {"text": "I just want to die tonight"},
    "image-with-text": {"text": "Still for sale. Pay me on the other app", "images": ["red"]},
    "images-with-meta": {
        "text": "Rolex Submariner, like new",
        "images": ["green", "grey"],
        "meta": {"price": 40, "category": "outdoor"},
    },
    "image-only": {"images": ["grey"], "meta": {"age_gated": True}},
    "dead-letter-image": {"text": "look", "images": ["red", "garbage"]},
    "dead-letter-too-many-images": {"text": "album", "images": ["grey"] * 9},
}
# The random-weight model on the whole directory: a text-only post, a post with two images.
TINY_POSTS = ("review-engagement", "images-with-meta")
CASES = [(s, "noop", p) for s in SETS for p in POSTS] + [
    ("examples", "tiny:smolvlm", p) for p in TINY_POSTS
]
# Bodies the CLI cannot send (it always writes a well-formed post): the HTTP API's dead letters.
HTTP_ONLY = {
    "not-json": b"{not json",
    "not-utf8": b"\xff\xfe not utf-8",
    "no-id": json.dumps({"text": "no id"}).encode(),
    "images-not-a-list": json.dumps({"id": "h-img", "images": "red"}).encode(),
}


def image_bytes(name: str) -> bytes:
    if name == "garbage":
        return b"garbage, not an image"
    width, height, colour = IMAGES[name]
    picture = Image.new("RGB", (width, height), colour)
    picture.putpixel((1, 1), (255, 255, 0))  # not one flat colour
    buffer = io.BytesIO()
    picture.save(buffer, "BMP")
    return buffer.getvalue()


def normalized(verdict: dict[str, Any]) -> dict[str, Any]:
    """The verdict without what legitimately differs from run to run or machine to machine."""
    verdict = dict(verdict)
    verdict["processed_at"] = "<wall clock>"  # when it was decided
    verdict["latency_ms"] = "<timing>"  # time from consume to decision
    # Each producer's run time; which producers ran, cached or not, and their evidence stay.
    verdict["producers"] = [{**run, "ms": "<timing>"} for run in verdict["producers"]]
    # Compared as they are: post_id, key, action, queue, priority, policy (id, version, sha256
    # of the file), matched_rules with evidence, rule_errors, signals (floats to 1e-4),
    # input_changes, models, shadow and trace_id (null: no traceparent is sent).
    # A twin model's name is its path in this machine's cache directory: keep the last part.
    for ref in [verdict["model"], *verdict["models"].values()]:
        if ref is not None:
            ref["name"] = ref["name"].rsplit("/", 1)[-1]
    # The post's record (what its policies read) is compared too; a model producer's version
    # names the model by the same path.
    if verdict.get("record"):
        versions = verdict["record"]["versions"]
        verdict["record"] = {
            **verdict["record"],
            "versions": {name: re.sub(r"=\S*/", "=", each) for name, each in versions.items()},
        }
    return verdict


def differences(got: Any, want: Any, path: str) -> list[str]:
    """Where `got` differs from the golden `want`, one line each; floats within
    FLOAT_TOLERANCE are the same."""
    if isinstance(got, dict) and isinstance(want, dict):
        keys = sorted(set(got) | set(want))
        return [
            d
            for k in keys
            for d in differences(got.get(k, ABSENT), want.get(k, ABSENT), f"{path}.{k}")
        ]
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [
            d
            for n, (g, w) in enumerate(zip(got, want, strict=True))
            for d in differences(g, w, f"{path}[{n}]")
        ]
    if isinstance(got, float) and isinstance(want, float) and abs(got - want) <= FLOAT_TOLERANCE:
        return []
    return [] if got == want else [f"{path}: {got!r} != golden {want!r}"]


@pytest.fixture(scope="module")
def policy_dirs(tmp_path_factory) -> dict[str, Path]:
    """Each set's directory: the examples, and each active policy file with its tests."""
    dirs = {"examples": EXAMPLES}
    for name in ACTIVE_FILES:
        directory = tmp_path_factory.mktemp(name)
        for path in EXAMPLES.glob(f"{name}.*"):
            shutil.copy(path, directory / path.name)
        dirs[name] = directory
    return dirs


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    files = {}
    for name in [*IMAGES, "garbage"]:
        files[name] = root / f"{name}.bmp"
        files[name].write_bytes(image_bytes(name))
    return files


def cli_outcome(directory: Path, model: str, post: str, images: dict[str, Path]) -> dict:
    """`vlmod moderate` in this process: the verdict it prints, or its dead letter's line."""
    case = POSTS[post]
    args = ["moderate", "--policy", str(directory), "--model", model, "--id", post]
    if "text" in case:
        args += ["--text", case["text"]]
    for name in case.get("images", []):
        args += ["--image", str(images[name])]
    for key, value in case.get("meta", {}).items():
        args += ["--meta", f"{key}={json.dumps(value)}"]
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output + result.stderr
    if result.exit_code == 1:  # a dead letter: `error: <stage>: <error>`, nothing on stdout
        assert result.stdout == ""
        [line] = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
        stage, error = line.removeprefix("error: ").split(": ", 1)
        return {"dead_letter": {"stage": stage, "error": error}}
    assert result.exit_code == 0, result.stderr
    return {"verdict": normalized(json.loads(result.stdout))}


class Call:
    """A finished Serve call: `.result()` is the value."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self, timeout_s: float | None = None) -> Any:
        return self.value


class Method:
    """A deployment method's handle: `.remote(...)` calls it at once."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def remote(self, *args: Any) -> Call:
        return Call(self.function(*args))


class ReplicaHandle:
    """A replica deployment's handle without Ray: the replica's own SignalSource, in process."""

    def __init__(self, config: PipelineConfig, model: str) -> None:
        self.source = build_signal_source(config, model)  # what SignalReplica.__init__ builds
        self.model = Method(lambda: self.source.model)

    def options(self, *, _by_reference: bool) -> ReplicaHandle:
        """The by-value twin Serve gives (`pipelines.replica_calls`): in process, the same."""
        return self

    def remote(self, requests: list) -> Call:
        return Call(self.source.compute(requests))


def api_ingress(directory: Path, model: str) -> Any:
    """ModerationApi as `build_app` makes it, its replica handles in process and Ray's ASGI
    wrapper left out: the ingress's own constructor and route."""
    [ingress] = [c for c in ModerationApi.func_or_class.__mro__ if "moderate" in vars(c)]
    config = PipelineConfig(model=ModelSettings(name_or_path=model), policy_dir=str(directory))
    handles = {name: ReplicaHandle(config, name) for name in config.model_names()}
    api = object.__new__(ingress)
    ingress.__init__(api, config.model_dump(mode="json"), handles)
    return api


def post_request(raw: bytes) -> Request:
    chunks = [raw]

    async def receive() -> dict:
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
    scope = {"type": "http", "method": "POST", "path": "/v1/moderate", "headers": headers}
    return Request(scope, receive)


def http_answer(api: Any, raw: bytes) -> tuple[int, dict]:
    response = asyncio.run(api.moderate(post_request(raw)))
    return response.status_code, json.loads(bytes(response.body))


def http_body(post: str) -> bytes:
    """The post the CLI's options describe, as a client sends it: images inline as base64."""
    case = POSTS[post]
    images = [{"data": base64.b64encode(image_bytes(n)).decode()} for n in case.get("images", [])]
    body = {"id": post, "text": case.get("text"), "images": images, "meta": case.get("meta", {})}
    return json.dumps(body).encode()


def http_outcome(api: Any, raw: bytes) -> dict:
    """POST /v1/moderate: 200 and the verdict, or 422 and the dead letter's fields."""
    status, body = http_answer(api, raw)
    if status == 422:
        return {"dead_letter": body["detail"]}
    assert status == 200, body
    return {"verdict": normalized(body)}


def cli_outcomes(policy_dirs, image_files) -> dict[str, dict]:
    return {f"{s}/{m}/{p}": cli_outcome(policy_dirs[s], m, p, image_files) for s, m, p in CASES}


def http_outcomes(policy_dirs) -> dict[str, dict]:
    outcomes = {}
    for set_name, model in dict.fromkeys((s, m) for s, m, _ in CASES):
        api = api_ingress(policy_dirs[set_name], model)
        try:
            for s, m, post in CASES:
                if (s, m) == (set_name, model):
                    outcomes[f"{s}/{m}/{post}"] = http_outcome(api, http_body(post))
            if (set_name, model) == ("examples", "noop"):
                for name, raw in HTTP_ONLY.items():
                    outcomes[f"http-only/{name}"] = http_outcome(api, raw)
        finally:
            api.moderator.moderator.policies.__self__.stop()  # the PolicyWatcher's thread
    return outcomes


@pytest.fixture(scope="module")
def golden(policy_dirs, image_files) -> dict[str, dict]:
    if os.environ.get("VLMOD_WRITE_GOLDEN"):
        outcomes = http_outcomes(policy_dirs)
        GOLDEN.write_text(json.dumps(outcomes, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    written: dict[str, dict] = json.loads(GOLDEN.read_text())
    return written


def golden_differences(
    outcomes: dict[str, dict], golden: dict[str, dict], shared: Callable
) -> list[str]:
    """Each way an outcome differs from the golden file's, policy hashes last."""
    found = [d for key, got in outcomes.items() for d in differences(got, shared(golden[key]), key)]
    # An edited policy file changes the sha256 of each of its verdicts: the rest first.
    found.sort(key=lambda line: ".policy.sha256:" in line)
    return found


def reported(found: list[str]) -> str:
    return f"{len(found)} differences from {GOLDEN.name}:\n" + "\n".join(found[:60])


def test_the_golden_file_covers_every_action_and_dead_letters(golden):
    verdicts = [o["verdict"] for o in golden.values() if "verdict" in o]
    assert {v["action"] for v in verdicts} == {"allow", "review", "block", "escalate"}
    assert {f"{s}/{m}/{p}" for s, m, p in CASES} | {f"http-only/{n}" for n in HTTP_ONLY} == set(
        golden
    )
    stages = {o["dead_letter"]["stage"] for o in golden.values() if "dead_letter" in o}
    assert {"decode", "validate"} <= stages and len(stages) >= 3, stages
    tiny = [v for v in verdicts if v["model"]["name"] == "tiny-smolvlm"]
    assert any(0.0 < p < 1.0 for v in tiny for p in v["signals"]["labels"].values())


def test_the_http_api_gives_the_golden_verdicts(policy_dirs, golden):
    outcomes = http_outcomes(policy_dirs)
    assert set(outcomes) == set(golden), "every golden case, HTTP-only ones too, came out"
    found = golden_differences(outcomes, golden, lambda want: want)
    assert not found, reported(found)


def test_vlmod_moderate_gives_the_golden_verdicts(policy_dirs, image_files, golden):
    def shared(want: dict) -> dict:  # the CLI's dead letter is one line: its stage and error
        if "dead_letter" in want:
            return {"dead_letter": {k: want["dead_letter"][k] for k in ("stage", "error")}}
        return want

    outcomes = cli_outcomes(policy_dirs, image_files)
    assert set(outcomes) == {f"{s}/{m}/{p}" for s, m, p in CASES}, "every case the CLI can run"
    found = golden_differences(outcomes, golden, shared)
    assert not found, reported(found)
