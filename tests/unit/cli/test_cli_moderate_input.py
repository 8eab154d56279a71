"""`vlmod moderate` refuses oversized image files and non-UTF-8 arguments in one line, exit 2."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from contracts.records import Verdict

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"


def moderate(*args: str):
    result = CliRunner().invoke(
        app, ["moderate", "--policy", str(EXAMPLES), "--model", "noop", *args]
    )
    assert "Traceback" not in result.output + result.stderr
    return result


def one_error_line(result) -> str:
    assert result.exit_code == 2, (result.exception, result.output)
    assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    return line


def test_an_image_file_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    photo = tmp_path / "photo.jpg"
    with photo.open("wb") as sparse:  # 500 MB on paper, nothing on disk
        sparse.truncate(524_288_000)
    monkeypatch.chdir(tmp_path)

    def never(self):
        raise AssertionError(f"{self} was read before its size was checked")

    monkeypatch.setattr(Path, "read_bytes", never)
    line = one_error_line(moderate("--image", "photo.jpg"))
    assert line == (
        "error: photo.jpg is 524288000 bytes, over the image limit of 10000000 (images.max_bytes)"
    )


def test_an_image_file_within_the_limit_is_still_moderated(tmp_path):
    photo = tmp_path / "small.png"
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(buffer, "PNG")
    photo.write_bytes(buffer.getvalue())
    result = moderate("--image", str(photo), "--text", "hello", "--id", "img-ok")
    assert result.exit_code == 0, result.stderr
    assert Verdict.model_validate_json(result.stdout).post_id == "img-ok"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # argv bytes b"replica \xff\xfe rolex", as Python decodes them (surrogateescape)
        (
            ["--text", "replica \udcff\udcfe rolex"],
            "error: --text is not valid UTF-8 (byte 0xff at character 8)",
        ),
        (
            ["--text", "ok", "--meta", "caption=caf\udce9"],
            "error: --meta is not valid UTF-8 (byte 0xe9 at character 11)",
        ),
        (
            ["--text", "ok", "--id", "\udc80x"],
            "error: --id is not valid UTF-8 (byte 0x80 at character 0)",
        ),
    ],
)
def test_arguments_that_are_not_utf8_are_one_error_line(args, expected):
    assert one_error_line(moderate(*args)) == expected


def test_an_empty_policy_directory_is_one_line_not_a_traceback(tmp_path):
    result = CliRunner().invoke(app, ["moderate", "--policy", str(tmp_path), "--text", "hi"])
    assert one_error_line(result) == f"error: {tmp_path}: no policy files (*.yaml, *.yml) found"


def test_a_shadow_only_policy_directory_is_refused_in_one_line(tmp_path):
    shadow = (EXAMPLES / "spam-scams-next.yaml").read_text()
    assert "mode: shadow" in shadow
    (tmp_path / "next.yaml").write_text(shadow)
    result = CliRunner().invoke(app, ["moderate", "--policy", str(tmp_path), "--text", "hi"])
    assert "no active policy (only shadow ones)" in one_error_line(result)


def test_a_text_only_post_gets_the_models_probability_for_a_whole_post_question(tmp_path):
    (tmp_path / "spam-scams.yaml").write_text((EXAMPLES / "spam-scams.yaml").read_text())
    text = "Still for sale. Pay me on the other app, it is cheaper there"
    args = ["moderate", "--policy", str(tmp_path), "--model", "tiny:smolvlm", "--text", text]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    verdict = Verdict.model_validate_json(result.stdout)
    answer = verdict.signals.answers["offsite_payment"]
    assert 0.0 < answer < 1.0, "the model's P(yes), not a fixed value"
    assert verdict.signals.answers["crypto_promo"] == 0.0, "about each image: no image, no call"
