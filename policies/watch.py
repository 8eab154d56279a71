"""Hot reload: watch a policy directory and swap in each valid change atomically.

`current()` returns an immutable PolicySet; a reload replaces the reference in one assignment,
so a caller that takes `current()` once per batch sees one consistent set for that batch.
An invalid change is refused: the problems are logged and kept in `last_error`, and the
previous set keeps serving.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from contracts.producers import ProducerRegistry
from policies.exceptions import PolicyInvalid
from policies.loader import POLICY_SUFFIXES, load_policy_dir
from policies.policy_set import PolicySet

log = logging.getLogger(__name__)


class _Changed(FileSystemEventHandler):
    """Forwards changes to YAML files to the watcher's debounced reload."""

    def __init__(self, watcher: PolicyWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [str(event.src_path), str(getattr(event, "dest_path", ""))]
        # Kubernetes updates a ConfigMap volume by swapping its `..data` symlink.
        relevant = any(p.endswith(POLICY_SUFFIXES) or "..data" in p for p in paths)
        if event.event_type not in ("opened", "closed_no_write") and relevant:
            self.watcher.schedule_reload()


class PolicyWatcher:
    """The current PolicySet of a directory, reloaded when its files change.

    Example:
        with PolicyWatcher("policies/examples") as watcher:
            decisions = watcher.current().evaluate(post, signals)
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        debounce_s: float = 0.2,
        registry: ProducerRegistry | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.registry = registry
        self.debounce_s = debounce_s
        self.last_error: PolicyInvalid | None = None
        self._current = load_policy_dir(self.directory, registry=registry)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]  # watchdog aliases

    def current(self) -> PolicySet:
        """The set to use for the next batch."""
        return self._current

    def reload(self) -> bool:
        """Load the directory now; swap on success, keep the old set and record why on failure."""
        with self._lock:
            try:
                fresh = load_policy_dir(self.directory, registry=self.registry)
            except PolicyInvalid as exc:
                self.last_error = exc
                log.error("policy change refused, previous policies keep serving:\n%s", exc)
                return False
            self._current = fresh
            self.last_error = None
        versions = ", ".join(
            f"{p.ref.id} v{p.ref.version} {p.ref.sha256[:12]}" for p in fresh.policies
        )
        log.info("policies reloaded: %s", versions)
        return True

    def schedule_reload(self) -> None:
        """Reload after `debounce_s` of quiet, so an editor's burst of writes loads once."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce_s, self.reload)
            self._timer.daemon = True
            self._timer.start()

    def start(self) -> PolicyWatcher:
        """Begin watching the directory."""
        observer = Observer()
        observer.schedule(_Changed(self), str(self.directory), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        return self

    def stop(self) -> None:
        """Stop watching; the current set stays readable."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def __enter__(self) -> PolicyWatcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
