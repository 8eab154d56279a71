"""The policy engine compiled by mypyc, used where a build of the very sources present exists.

The engine's hot modules (`COMPILED`: planning, testing rules, deciding) are plain typed
Python; mypyc turns them into C extensions that plan a post in about half the time and decide it
in two thirds (docs/benchmarks.md). `vlmod policy engine --build` builds them into
`.vlmod/native/<python>-<digest>/`, where the digest covers every source the build read
(`policies/` and `contracts/`). `policies` imports the engine from there when that directory
exists for the sources as they are now, else from the sources: an edited file is never shadowed
by a stale build, it only runs slower until rebuilt.
A build that does not load (damaged, or made on another platform) warns and runs the sources.
A new build removes those of earlier sources.

`VLMOD_NATIVE` chooses: `auto` (the default: the build where there is one), `off` (always the
sources) or `require` (refuse to import `policies` without the build; CI runs with it, so the
suite tests the compiled engine).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from policies.exceptions import NativeBuildFailed

ROOT = Path(__file__).resolve().parent.parent
COMPILED = ("compiled", "decision", "patterns", "policy_set", "scope", "terms", "truncation")
HASHED = ("policies", "contracts")  # the packages the compiled modules read types from
GROUP = "vlmod_policies"  # mypyc's shared library: `vlmod_policies__mypyc`
MODES = ("auto", "off", "require")


def digest(root: Path = ROOT) -> str:
    """A digest of every source a build reads, with the Python it is built for."""
    hashed = hashlib.sha256(sys.implementation.cache_tag.encode())
    for package in HASHED:
        for path in sorted((root / package).glob("*.py")):
            hashed.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return hashed.hexdigest()[:16]


def build_dir(root: Path = ROOT) -> Path:
    """Where the build of the sources as they are now lives (or would)."""
    return root / ".vlmod" / "native" / f"{sys.implementation.cache_tag}-{digest(root)}"


def mode() -> str:
    """`VLMOD_NATIVE`, checked."""
    chosen = os.environ.get("VLMOD_NATIVE", "auto").strip().lower() or "auto"
    if chosen not in MODES:
        raise ValueError(f"VLMOD_NATIVE={chosen!r}: expected one of {', '.join(MODES)}")
    return chosen


def activate(package_path: list[str], root: Path = ROOT) -> str:
    """Put the build of these sources first on the `policies` package's path, if there is one
    and `VLMOD_NATIVE` allows it; which engine runs, in words."""
    chosen = mode()
    if chosen == "off":
        return "python (VLMOD_NATIVE=off)"
    target = build_dir(root)
    library = next(target.glob(f"{GROUP}__mypyc.*"), None) if target.is_dir() else None
    if library is None:
        if chosen == "require":
            raise ImportError(
                f"VLMOD_NATIVE=require: no compiled policy engine for these sources at {target}; "
                "build it with `vlmod policy engine --build`"
            )
        return "python (no build of these sources: vlmod policy engine --build)"
    try:
        _load(f"{GROUP}__mypyc", library)
    except ImportError as exc:  # a damaged build, or one for another platform
        if chosen == "require":
            raise ImportError(f"VLMOD_NATIVE=require: {library} does not load: {exc}") from exc
        reason = f"the compiled policy engine does not load ({exc}); running the sources"
        warnings.warn(reason, stacklevel=2)
        return f"python (the build at {target} does not load)"
    package_path.insert(0, str(target / "policies"))
    return f"mypyc ({target.relative_to(root)})"


def _load(name: str, path: Path) -> None:
    """Import the extension at `path` as `name`: the compiled modules import it by that name."""
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the compiled policy engine's library {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def build_engine(root: Path = ROOT) -> Path:
    """Compile `COMPILED` for the sources under `root`; the build directory (kept if present)."""
    target = build_dir(root)
    if target.is_dir():
        return target
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as exc:
        raise NativeBuildFailed(f"{exc}: install mypy and setuptools (the `dev` extra)") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as work:
        here = Path.cwd()
        os.chdir(root)  # mypyc names modules by their paths from the current directory
        try:
            sources = [f"policies/{name}.py" for name in COMPILED]
            extensions = mypycify(sources, target_dir=f"{work}/c", group_name=GROUP)
            command = Distribution({"ext_modules": extensions}).get_command_obj("build_ext")
            command.build_lib, command.build_temp = f"{work}/out", f"{work}/tmp"
            command.ensure_finalized()
            command.run()
        except (Exception, SystemExit) as exc:  # distutils ends a failed compile with SystemExit
            raise NativeBuildFailed(f"mypyc could not compile the policy engine: {exc}") from exc
        finally:
            os.chdir(here)
        if digest(root) != target.name.rsplit("-", 1)[1]:
            raise NativeBuildFailed("the sources changed while they were compiled; build again")
        try:
            os.replace(f"{work}/out", target)
        except OSError:
            if not target.is_dir():  # else another process built the same sources first
                raise
    _remove_stale(target)
    return target


def _remove_stale(target: Path) -> None:
    """Remove builds of earlier sources for this Python: nothing loads them any more (a
    process still running one keeps its mapped files)."""
    prefix = f"{sys.implementation.cache_tag}-"
    for other in target.parent.iterdir():
        if other.is_dir() and other.name.startswith(prefix) and other != target:
            shutil.rmtree(other, ignore_errors=True)
