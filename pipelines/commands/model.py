"""`vlmod model ...`: build and inspect model checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    except (OSError, ValueError) as error:  # make_tiny's messages name the path already
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))
