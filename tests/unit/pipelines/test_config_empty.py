"""An empty pipeline config is refused, not taken as all defaults."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.errors import ConfigInvalid
from pipelines.config import load_config


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# kafka:\n#   bootstrap_servers: broker:9092\n", "null\n", "~\n", "--- null\n"],
    ids=["empty", "blank-lines", "only-comments", "null", "tilde", "document-null"],
)
def test_an_empty_config_is_refused(tmp_path, text):
    config = tmp_path / "pipeline.yaml"
    config.write_text(text)
    with pytest.raises(ConfigInvalid) as refused:
        load_config(config)
    assert refused.value.reason == (
        f"{config}:1:1: the file is empty; write at least kafka.bootstrap_servers"
    )


def test_a_config_naming_the_brokers_is_enough(tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text("kafka:\n  bootstrap_servers: broker:9092\n")
    assert load_config(config).kafka.bootstrap_servers == "broker:9092"


def test_run_with_an_empty_config_is_one_line_and_never_starts_ray(tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text("# nothing yet\n")
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2, f"{result.exception!r}\n{result.output}"
    assert result.stderr.splitlines() == [
        f"error: {config}:1:1: the file is empty; write at least kafka.bootstrap_servers"
    ]
