"""`vlmod policy ...`: check and test policy files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contracts.errors import ModerationError

if TYPE_CHECKING:
    from contracts.producers import ProducerRegistry
    from policies.exceptions import Problem
    from policies.expressions import ExpressionLimits
    from policies.loader import LoadedPolicy

app = typer.Typer(help="Check and test policy files.", no_args_is_help=True)

PRODUCER_HELP = "Another signal producer, package.module:ClassName, as in the pipeline's config."
CONFIG_HELP = (
    "A pipeline config: policies may name its producers and its models (`model:`, `models:`)."
)


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="Policy files or directories of them.")],
    max_text_scans: Annotated[
        int | None,
        typer.Option(
            min=1, help="Most matches()/contains() calls one policy may make per post (256)."
        ),
    ] = None,
    producer: Annotated[list[str] | None, typer.Option(help=PRODUCER_HELP)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=CONFIG_HELP)] = None,
) -> None:
    """Validate policy files; print each problem as FILE:LINE:COL: message; exit 1 if any.

    Files of one directory are checked as the set `vlmod run` loads: one active (and one
    shadow) policy per id.
    """
    from policies.expressions import ExpressionLimits
    from policies.loader import repeated_ids
    from policies.testing import policy_inputs

    limits = ExpressionLimits(max_text_scans=max_text_scans or ExpressionLimits.max_text_scans)
    found, unusable = policy_inputs(files)
    loaded, problems = _load_each(found, limits, policy_registry(producer, config))
    problems = [*unusable, *problems, *repeated_ids(loaded)]
    for problem in problems:
        typer.echo(str(problem))
    refused = {problem.file for problem in problems}
    for entry in loaded:
        ref, policy = entry.policy.ref, entry.policy
        if policy.source not in refused:
            typer.echo(
                f"{policy.source}: ok ({ref.id} v{ref.version}, {policy.mode.value})", err=True
            )
    raise typer.Exit(1 if problems else 0)


def _load_each(
    paths: list[Path], limits: ExpressionLimits, registry: ProducerRegistry
) -> tuple[list[LoadedPolicy], list[Problem]]:
    """Each file loaded with its companion tests read, and the problems of those that fail."""
    from policies.exceptions import PolicyInvalid
    from policies.loader import companion_tests, read_policy

    loaded, problems = [], []
    for path in paths:
        try:
            entry = read_policy(path, expression_limits=limits, registry=registry)
            companion_tests(path, entry.policy.ref.id)
        except PolicyInvalid as exc:
            problems += exc.problems
            continue
        loaded.append(entry)
    return loaded, problems


@app.command()
def test(
    paths: Annotated[list[Path], typer.Argument(help="Policy files or directories of them.")],
    producer: Annotated[list[str] | None, typer.Option(help=PRODUCER_HELP)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=CONFIG_HELP)] = None,
) -> None:
    """Run the tests of each policy found and its `<stem>.tests.yaml`; exit 1 on a failure."""
    from policies.testing import run_tests

    report = run_tests(paths, policy_registry(producer, config))
    for problem in report.problems:
        typer.echo(str(problem))
    if not report.files:
        raise typer.Exit(1)
    for result in report.results:
        mark = typer.style("PASS", fg="green") if result.passed else typer.style("FAIL", fg="red")
        typer.echo(f"{mark} {result.policy}: {result.name}  ({result.file})")
        for line in result.diff:
            typer.echo(f"     {line}")
    typer.echo(f"{len(report.results) - len(report.failed)} passed, {len(report.failed)} failed")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def engine(
    build: Annotated[
        bool, typer.Option("--build", help="Compile the engine for these sources (mypyc).")
    ] = False,
) -> None:
    """Say which policy engine runs: compiled (mypyc) or the Python sources."""
    import policies
    from policies.exceptions import NativeBuildFailed
    from policies.native import build_engine

    if not build:
        typer.echo(policies.ENGINE)
        return
    try:
        target = build_engine()
    except NativeBuildFailed as exc:
        typer.echo(f"vlmod policy engine --build: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"compiled policy engine: {target}")


def policy_registry(extra: list[str] | None, config: Path | None) -> ProducerRegistry:
    """The shipped producers plus `extra` and the config's; a bad one is one line, exit 2."""
    from pipelines.config import load_config
    from pipelines.producer_registry import producer_registry

    try:
        if config is None:
            return producer_registry(extra or ())
        settings = load_config(config)
        return producer_registry([*settings.producers, *(extra or ())], settings.model_names())
    except (ModerationError, ValueError) as error:
        typer.echo(f"error: {getattr(error, 'reason', error)}", err=True)
        raise typer.Exit(2) from None
