"""`images:` is the operators' ImageLimits: read from YAML, checked there, handed on as is."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import ConfigInvalid
from operators.limits import ImageLimits, limits_of
from pipelines.config import load_config


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_the_images_section_is_the_limits_every_reader_gets(tmp_path):
    text = (
        "images:\n  max_pixels: 1000\n  file_root: /srv/images\n  allowed_networks: [10.1.2.0/24]\n"
    )
    config = load_config(_write(tmp_path, text))
    assert config.images.file_root == Path("/srv/images")
    assert config.images.allowed_networks == ("10.1.2.0/24",)
    assert limits_of(config.producer_context().images) is config.images
    assert config.model_dump(mode="json")["images"]["file_root"] == "/srv/images"


def test_a_context_without_limits_decodes_under_the_defaults():
    assert limits_of(None) == ImageLimits()
    with pytest.raises(TypeError, match="must be an ImageLimits, not a dict"):
        limits_of({"max_pixels": 10})


def test_a_bad_image_limit_is_refused_at_its_position(tmp_path):
    path = _write(tmp_path, "images:\n  max_bytes: 0\n  allowed_networks: [10.1.2.0/33]\n")
    with pytest.raises(ConfigInvalid) as refused:
        load_config(path)
    assert refused.value.reason.splitlines() == [
        f"{path}:2:14: images.max_bytes: value should be greater than 0",
        f"{path}:3:22: images.allowed_networks[0]: '10.1.2.0/33' is not a network such as "
        "10.1.2.0/24",
    ]
