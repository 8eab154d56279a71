"""SignalCache against a real redis-server: hits skip the model, an outage only costs speed."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from demo.harness import RedisServer
from operators.cache import SignalCache
from operators.images import ImageLoader
from operators.loading import load_vlm
from operators.spec import ModelSpec
from operators.tasks import ImageJob, ImageSignals, VlmOperator
from operators.tiny import make_tiny

pytestmark = pytest.mark.integration

QUESTIONS = {"gun": "Is there a gun?", "cat": "Is it a cat?", "text": "Is there text?"}


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    path = make_tiny(tmp_path_factory.mktemp("tiny") / "smolvlm", arch="smolvlm")
    return load_vlm(ModelSpec(name_or_path=str(path), device="cpu", max_new_tokens=4))


@pytest.fixture(scope="module")
def images():
    loader = ImageLoader()
    out = []
    for seed in range(4):
        pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        out.append(loader.load(buffer.getvalue()))
    return out


@pytest.fixture
def redis_server(tmp_path):
    """A private server: these tests kill it, so it cannot be the session's shared one."""
    server = RedisServer(workdir=tmp_path)
    server.start()
    yield server
    server.stop()


def _jobs(images, questions=QUESTIONS):
    return [ImageJob(image, questions=questions, describe=True, embed=True) for image in images]


class ForwardCounter:
    def __init__(self, monkeypatch):
        from operators import tasks

        self.calls = 0
        real = tasks.run_forward

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(tasks, "run_forward", counted)


def test_hit_makes_no_model_call(vlm, images, redis_server, monkeypatch):
    operator = VlmOperator(vlm, SignalCache(redis_server.url, ttl_s=60, namespace="it"))
    cold = operator.run(_jobs(images))
    forwards = ForwardCounter(monkeypatch)
    warm = operator.run(_jobs(images))
    assert forwards.calls == 0
    for before, after in zip(cold, warm, strict=True):
        assert after.answers == pytest.approx(before.answers)
        assert after.embedding == pytest.approx(before.embedding)
        assert after.description == before.description
        assert after.cache_misses == 0
    assert operator.cache.errors == 0


def test_values_carry_the_ttl(vlm, images, redis_server):
    import redis

    VlmOperator(vlm, SignalCache(redis_server.url, ttl_s=77, namespace="ttl")).run(
        _jobs(images[:1])
    )
    client = redis.Redis.from_url(redis_server.url)
    keys = client.keys("ttl:*")
    assert len(keys) == len(QUESTIONS) + 2
    assert all(0 < client.ttl(key) <= 77 for key in keys)


def test_partial_hit_computes_only_missing(vlm, images, redis_server, monkeypatch):
    operator = VlmOperator(vlm, SignalCache(redis_server.url, namespace="part"))
    operator.run(_jobs(images, {"gun": QUESTIONS["gun"]}))
    from operators import tasks

    seen_rows = []
    real = tasks.run_forward

    def spy(vlm_, prefix, rows, embed, steps=None):
        seen_rows.append((prefix.size, rows.size, embed))
        return real(vlm_, prefix, rows, embed, steps)

    monkeypatch.setattr(tasks, "run_forward", spy)
    results = operator.run(_jobs(images))
    # Only "cat" and "text" for each image; embedding and description came from Redis.
    assert seen_rows == [(len(images), 2 * len(images), False)]
    assert all(result.cache_hits == 3 and result.cache_misses == 2 for result in results)


def test_redis_killed_mid_run_only_costs_speed(vlm, images, redis_server, monkeypatch):
    cache = SignalCache(redis_server.url, namespace="kill", timeout_s=0.2, retry_after_s=0.3)
    operator = VlmOperator(vlm, cache)
    reference = VlmOperator(vlm).run(_jobs(images))
    from operators import tasks

    real = tasks.run_forward

    def kill_redis_then_forward(*args, **kwargs):
        redis_server.stop()  # after the lookup, before the write-back
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "run_forward", kill_redis_then_forward)
    during = operator.run(_jobs(images))
    monkeypatch.setattr(tasks, "run_forward", real)
    after = operator.run(_jobs(images))  # Redis still down: bypassed or failing fast
    for results in (during, after):
        assert all(isinstance(result, ImageSignals) for result in results)
        for got, want in zip(results, reference, strict=True):
            assert got.answers == pytest.approx(want.answers, abs=1e-5)
    assert cache.errors >= 1

    redis_server.start()  # same port, empty (no persistence)
    time.sleep(0.35)
    operator.run(_jobs(images))
    errors = cache.errors
    warm = operator.run(_jobs(images))
    assert all(result.cache_misses == 0 for result in warm)
    assert cache.errors == errors


def test_unreachable_from_the_start(vlm, images):
    from demo.harness import free_port

    cache = SignalCache(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    started = time.monotonic()
    results = VlmOperator(vlm, cache).run(_jobs(images))
    assert all(isinstance(result, ImageSignals) for result in results)
    assert cache.errors == 1
    assert time.monotonic() - started < 10
