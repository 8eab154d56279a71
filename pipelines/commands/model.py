"""`vlmod model ...`: build and inspect model checkpoints."""

import typer

app = typer.Typer(help="Build and inspect model checkpoints.", no_args_is_help=True)
