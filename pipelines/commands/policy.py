"""`vlmod policy ...`: check and test policy files."""

import typer

app = typer.Typer(help="Check and test policy files.", no_args_is_help=True)
