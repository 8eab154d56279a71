"""The `vlmod` command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.bank import app as bank_commands
from cli.heads import app as heads_commands
from cli.model import app as model_commands
from cli.pipeline import demo, moderate, run
from cli.policy import app as policy_commands
from cli.replay import replay
from cli.report import report
from cli.review import app as review_commands

app = typer.Typer(
    help="Streaming content moderation with vision-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(policy_commands, name="policy")
app.add_typer(model_commands, name="model")
app.add_typer(bank_commands, name="bank")
app.add_typer(heads_commands, name="heads")
app.add_typer(review_commands, name="review")
for command in (demo, run, moderate, report, replay):
    app.command()(command)

SCHEMA_NAMES = (
    "post",
    "verdict",
    "dead-letter",
    "shadow",
    "review-task",
    "review-decision",
    "appeal",
    "golden-task",
    "golden-result",
    "policy",
)


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMA_NAMES)}.")],
) -> None:
    """Print the JSON Schema of a message or of the policy file format."""
    from contracts.records import SCHEMAS
    from contracts.review import REVIEW_SCHEMAS

    schemas = {**SCHEMAS, **REVIEW_SCHEMAS}

    if name == "policy":
        from pipelines.producer_registry import producer_registry
        from policies.schema import policy_file_model

        document = policy_file_model(producer_registry()).model_json_schema()
    elif name in schemas:
        document = schemas[name].model_json_schema()
    else:
        typer.echo(f"unknown schema {name!r}; choose one of: {', '.join(SCHEMA_NAMES)}", err=True)
        raise typer.Exit(2)
    document.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    typer.echo(json.dumps(document, indent=2))


def main() -> None:
    """Entry point of the `vlmod` console script."""
    app()


if __name__ == "__main__":
    main()
