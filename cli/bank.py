"""`vlmod bank ...`: hash banks of known images, kept in Redis and read by every consumer.

    vlmod bank add known-bad flyer.jpg scan.png --redis-url redis://localhost:6379/0
    vlmod bank list --policy policies/         # also banks those policies read, Redis lacks
    vlmod bank remove known-bad 5f3c...        # one hash; no hash removes the whole bank

A change reaches running consumers within `specialists.banks.refresh_s` (1 s), no restart. A
rule reading a bank Redis lacks is a rule error (`no bank named ...`) until the bank is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from cli.exits import or_exit
from cli.options import DEFAULT_REDIS, RedisUrl, config_or_exit_2
from contracts.errors import ModerationError

if TYPE_CHECKING:
    from operators.specialists.hashbank import BankEntry, BankInfo, BankStore
    from pipelines.config import PipelineConfig
    from pipelines.recheck import Rechecked
    from policies.compiled import CompiledPolicy

app = typer.Typer(help="Hash banks: known images matched by PDQ hash.", no_args_is_help=True)

T = TypeVar("T")
PROGRESS_FROM = 20  # files; fewer hash in a blink


@app.command("add")
def add(
    bank: Annotated[str, typer.Argument(help="Bank name: lower-case letters, digits, dashes.")],
    files: Annotated[list[Path], typer.Argument(help="Image files to bank.")],
    threshold: Annotated[
        int | None, typer.Option(help="Hamming distance that counts as a match (default 31).")
    ] = None,
    redis_url: RedisUrl = DEFAULT_REDIS,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="VLMOD_CONFIG",
            help="The pipeline's YAML: recent posts with a newly banked image are published "
            "again to their topic, to be decided again (its Kafka; its redis_url, if set, "
            "overrides --redis-url).",
        ),
    ] = None,
    recheck: Annotated[
        bool, typer.Option(help="Look recent posts up for the newly banked images.")
    ] = True,
) -> None:
    """Hash image files with PDQ and add them to BANK; one bad file and nothing is added.

    Then the recent posts with a newly banked image are found (the recent-images window in
    Redis); with --config they are decided again, each verdict naming the bank's change.
    """
    from operators.specialists.hashbank import check_bank_name
    from operators.specialists.hashindex import check_threshold

    _exit_1_or(lambda: check_bank_name(bank))
    if threshold is not None:
        _exit_1_or(lambda: check_threshold(threshold))
    settings = config_or_exit_2(config)
    if settings is not None and settings.redis_url:
        redis_url = settings.redis_url
    entries = _exit_1_or(lambda: _hash_files(files))
    store = _store(redis_url)
    new = _exit_1_or(lambda: store.add_new(bank, entries, threshold=threshold))
    info = _exit_1_or(lambda: store.banks()[bank])
    known = len(entries) - len(new)
    typer.echo(
        f"bank {bank}: added {len(new)} hash(es)"
        + (f", {known} already there" if known else "")
        + f"; {info.count} in all, match within {info.threshold} bits"
    )
    if recheck and new:
        reason = f"bank {bank}@{_exit_1_or(store.version)}"
        recheck_recent(redis_url, settings, new, info.threshold, reason)


@app.command("list")
def list_banks(
    redis_url: RedisUrl = DEFAULT_REDIS,
    policy: Annotated[
        list[Path] | None,
        typer.Option(
            help="Policy file or directory (repeatable): also list the banks they read that "
            "Redis lacks, marked MISSING."
        ),
    ] = None,
) -> None:
    """Every bank with its size, match threshold and last change.

    With --policy, banks the policies read but Redis lacks are listed as MISSING (rules reading
    them are rule errors) and the exit status is 1; a policy that does not load exits 2.
    """
    read = _banks_read(policy or [])
    banks = _exit_1_or(lambda: _store(redis_url).banks())
    missing = {name: files for name, files in sorted(read.items()) if name not in banks}
    if not banks and not missing:
        typer.echo("no banks yet; add one with `vlmod bank add BANK FILE...`")
        return
    _print_table(banks, missing)
    if missing:
        names = ", ".join(missing)
        typer.echo(
            f"error: {len(missing)} bank(s) read by policies are not in Redis: {names}", err=True
        )
        raise typer.Exit(1)


@app.command("remove")
def remove(
    bank: Annotated[str, typer.Argument(help="Bank name.")],
    hashes: Annotated[
        list[str] | None, typer.Argument(help="PDQ hashes (64 hex digits); none: the whole bank.")
    ] = None,
    redis_url: RedisUrl = DEFAULT_REDIS,
) -> None:
    """Remove hashes from BANK, or the whole bank when no hash is given."""
    store = _store(redis_url)
    if bank not in _exit_1_or(store.banks):
        typer.echo(f"error: no bank named {bank!r}; `vlmod bank list` shows them", err=True)
        raise typer.Exit(1)
    removed = _exit_1_or(lambda: store.remove(bank, hashes or ()))
    what = "the bank" if not hashes else f"{len(hashes)} given hash(es)"
    typer.echo(f"bank {bank}: removed {removed} hash(es) ({what})")


def recheck_recent(
    redis_url: str,
    settings: PipelineConfig | None,
    hashes: list[str],
    threshold: int,
    reason: str,
) -> None:
    """Find the recent posts with one of `hashes`; with a pipeline config, decide them again."""
    from operators.specialists.recent_images import RecentImages
    from pipelines.recheck import recent_window, recheck

    if settings is not None and not recent_window(settings):
        typer.echo("recent posts not looked up: the pipeline keeps no recent-images window")
        return
    kafka = settings.kafka if settings is not None else None
    store = _exit_1_or(lambda: RecentImages(redis_url))
    try:
        done = _exit_1_or(lambda: recheck(store, kafka, hashes, threshold, reason))
    finally:
        store.close()
    for line in recheck_lines(done, configured=settings is not None):
        typer.echo(line, err=line.startswith("error"))
    if done.gone:
        raise typer.Exit(1)


def recheck_lines(done: Rechecked, *, configured: bool) -> list[str]:
    """What `bank add` says of its look at the recent posts."""
    ids = [entry.post_id for entry in done.matched]
    lines = []
    if done.malformed:
        lines.append(f"warning: {done.malformed} recent-images entries could not be read")
    if not ids:
        return [*lines, f"none of the {done.window} recent post(s) has a newly banked image"]
    if not configured:
        return [
            *lines,
            f"{len(ids)} recent post(s) have a newly banked image: {_some(ids)}; give --config "
            "(the pipeline's YAML) to decide them again",
        ]
    if done.published:
        lines.append(
            f"decided again ({done.reason}): {len(done.published)} recent post(s) published "
            f"again: {_some(done.published)}"
        )
    if done.gone:
        lines.append(
            f"error: {len(done.gone)} post(s) with a newly banked image are no longer in their "
            f"topic (past its retention), not decided again: {_some(done.gone)}"
        )
    return lines


def _some(ids: Sequence[str], shown: int = 10) -> str:
    more = len(ids) - shown
    return ", ".join(ids[:shown]) + (f" and {more} more" if more > 0 else "")


def _print_table(banks: Mapping[str, BankInfo], missing: Mapping[str, list[str]]) -> None:
    width = max(len(name) for name in [*banks, *missing])
    typer.echo(f"{'bank':<{width}}  hashes  threshold  updated")
    for name, info in banks.items():
        typer.echo(f"{name:<{width}}  {info.count:>6}  {info.threshold:>9}  {info.updated_at}")
    for name, files in missing.items():
        typer.echo(f"{name:<{width}}  {'-':>6}  {'-':>9}  MISSING, read by {', '.join(files)}")


def _banks_read(paths: list[Path]) -> dict[str, list[str]]:
    """Each bank the rules of the policies at `paths` read, with the files that read it."""
    from operators.specialists.producers import BankSignals

    read: dict[str, list[str]] = {}
    for policy in _policies_or_exit_2(paths):
        for ref in policy.all_needs().refs:
            bank = ref[1]
            if policy.asks[ref].producer == BankSignals.name and bank is not None:
                read.setdefault(bank, []).append(policy.source)
    return read


def _policies_or_exit_2(paths: list[Path]) -> list[CompiledPolicy]:
    """The policies at `paths` (files or directories), or exit 2 printing every problem."""
    from pipelines.producer_registry import producer_registry
    from policies.exceptions import PolicyInvalid
    from policies.loader import load_policy
    from policies.testing import policy_inputs

    if not paths:
        return []
    found, problems = policy_inputs(paths)
    registry = producer_registry()
    policies = []
    for path in found:
        try:
            policies.append(load_policy(path, registry=registry))
        except PolicyInvalid as exc:
            problems += exc.problems
    if problems:
        typer.echo("\n".join(map(str, problems)), err=True)
        raise typer.Exit(2)
    return policies


def _hash_files(files: list[Path]) -> list[BankEntry]:
    """A bank entry per file, or exit naming every file that cannot be banked and why."""
    from operators.limits import ImageLimits
    from operators.specialists.hashbank import BankEntry
    from operators.specialists.pdq import MIN_QUALITY, hash_image_bytes

    limits = ImageLimits()
    entries, problems = [], []
    for index, path in enumerate(files, 1):
        if len(files) >= PROGRESS_FROM and index % PROGRESS_FROM == 0:
            typer.echo(f"hashed {index}/{len(files)} files", err=True)
        try:
            pdq = hash_image_bytes(_read(path, limits.max_bytes), limits)
        except (OSError, ModerationError, ValueError) as error:  # per file; ImportError exits
            problems.append(f"{path}: {_reason(error)}")
            continue
        if not pdq.usable:
            problems.append(
                f"{path}: PDQ quality {pdq.quality} is under {MIN_QUALITY}: too plain to match "
                "safely (it would match unrelated images)"
            )
            continue
        entries.append(BankEntry.of(pdq, path.name))
    if problems:
        typer.echo("\n".join(f"error: {line}" for line in problems), err=True)
        typer.echo(f"nothing added: {len(problems)} of {len(files)} file(s) refused", err=True)
        raise typer.Exit(1)
    return entries


def _read(path: Path, max_bytes: int) -> bytes:
    if not path.is_file():
        raise OSError("no such file")
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path.stat().st_size} bytes is over the image limit of {max_bytes}")
    return path.read_bytes()


def _reason(error: BaseException) -> str:
    if isinstance(error, ModerationError):
        return error.reason
    return getattr(error, "strerror", None) or str(error)


def _store(redis_url: str) -> BankStore:
    from operators.specialists.hashbank import BankStore

    return _exit_1_or(lambda: BankStore(redis_url))


def _exit_1_or(make: Callable[[], T]) -> T:
    """`make()`, or exit 1 with its error as one line (Redis down, bad name, bad hash)."""
    return or_exit(make, code=1)
