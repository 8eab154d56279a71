"""`vlmod model ...`: build and inspect model checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from operators.spec import ModelSpec

app = typer.Typer(help="Build and inspect model checkpoints.", no_args_is_help=True)


@app.command("make-tiny")
def make_tiny(
    directory: Annotated[
        Path | None, typer.Argument(help="Where to write the checkpoint.", show_default=False)
    ] = None,
    arch: Annotated[str, typer.Option(help="Architecture: smolvlm or llava.")] = "smolvlm",
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    shape: Annotated[
        str, typer.Option(help="tiny (CI-sized) or smolvlm-256m (real SmolVLM-256M widths).")
    ] = "tiny",
    like: Annotated[
        str | None,
        typer.Option(help="A published checkpoint id to twin: its real processor, small weights."),
    ] = None,
    list_twins: Annotated[
        bool, typer.Option("--list", help="Print the checkpoint ids --like knows, and exit.")
    ] = False,
) -> None:
    """Write a random-weight checkpoint of a real VLM architecture, fully offline."""
    from operators.tiny import ARCHES, SHAPES, checkpoint_directory
    from operators.tiny import make_tiny as build
    from operators.twins import TWINS

    if list_twins:
        typer.echo("\n".join(TWINS))
        raise typer.Exit(0)
    if directory is None:
        typer.echo("missing DIRECTORY: where to write the checkpoint", err=True)
        raise typer.Exit(2)
    if like is not None and like not in TWINS:
        typer.echo(f"unknown --like {like!r}; choose one of {', '.join(TWINS)}", err=True)
        raise typer.Exit(2)
    if arch not in ARCHES or shape not in SHAPES:
        typer.echo(
            f"choose --arch from {', '.join(ARCHES)} and --shape from {', '.join(SHAPES)}",
            err=True,
        )
        raise typer.Exit(2)
    try:
        checkpoint_directory(directory)  # a bad path fails before transformers is even imported
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # stderr keeps only a failure's one line
        path = build(directory, arch=arch, seed=seed, shape=shape, like=like)
    # make_tiny's messages name the path already; an ImportError names the package to install.
    except (OSError, ValueError, ImportError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))


@app.command("check")
def check(
    model: Annotated[str, typer.Argument(help="A checkpoint directory, hub id, or tiny:<arch>.")],
    engine: Annotated[str, typer.Option(help="The engine to check: eager or static.")] = "eager",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
) -> None:
    """Check the shared-prefix engine against plain forwards on probe posts; print JSON.

    Exit 0 when the engine agrees (within 1e-3), 1 when the model would run on the plain
    engine, 2 when it cannot be loaded or served at all.
    """
    import json
    import os

    from cli.exits import or_exit
    from pipelines.config import ModelSettings, PipelineConfig
    from pipelines.wiring import model_spec

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if engine not in ("eager", "static"):
        typer.echo(f"--engine must be eager or static, not {engine!r}", err=True)
        raise typer.Exit(2)
    settings = ModelSettings(name_or_path=model, engine=engine, device=device, dtype=dtype)
    spec = or_exit(lambda: model_spec(PipelineConfig(model=settings)))
    result = or_exit(lambda: _check(spec))
    typer.echo(json.dumps(result, indent=2))
    raise typer.Exit(0 if result["engine"] == engine else 1)


def _check(spec: ModelSpec) -> dict[str, object]:
    from operators.loading import load_vlm
    from operators.selfcheck import check_engine

    found = check_engine(load_vlm(spec))
    return {
        "model": spec.name_or_path,
        "family": found.family,
        "engine": found.engine,
        "asked": found.asked,
        "max_difference": found.max_difference,
        "probes": found.probes,
        "reason": found.reason,
    }
