"""Verdicts to an HTTP endpoint: one signed POST per verdict.

    sink = WebhookSink(WebhookSinkSettings(kind="webhook", url=..., secret_env="HOOK_SECRET"))
    refused = sink.deliver(verdicts)   # the verdicts the endpoint refused (4xx), with why

- Body: the verdict's JSON. Headers: `X-Vlmod-Signature: sha256=<hex HMAC-SHA256 of the body
  with the secret>` (the receiver recomputes it over the raw body) and `X-Vlmod-Key`, the
  verdict's idempotency key, since a verdict may be delivered again after a failed batch.
- 2xx: delivered. 5xx, 429, a timeout or a lost connection: tried again with full-jitter
  backoff, up to `max_attempts`; past that `SinkUnavailable` fails the whole batch, which is read
  again, so nothing is lost. Any other answer (4xx, a redirect) refuses that one verdict: it is
  returned to the caller, which dead-letters it with stage `sink`.
- The host is resolved once per POST and every address is checked as image fetching checks
  them (loopback, private, link-local and metadata addresses refused unless
  `allow_private_addresses`); the connection goes to the checked address.
- `actions` keeps only verdicts with those actions (all when None). The sink reads its settings
  model as configured (`sinks.settings.WebhookSinkSettings`); the secret is read from the
  environment once, when the sink is made.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from contracts.backoff import backoff_delay
from contracts.outcomes import Outcome
from contracts.records import Verdict
from operators.exceptions import BlockedAddress, error_text
from operators.fetch import Resolver, check_addresses, system_resolver
from operators.limits import ImageLimits
from sinks.base import Refusal, SinkUnavailable
from sinks.settings import WebhookSinkSettings

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Refused:
    """A verdict the endpoint refused, and its answer."""

    verdict: Verdict
    reason: str


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Vlmod-Signature` header value of `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass
class WebhookSink:
    """Posts each wanted verdict; returns the refused ones, raises when the endpoint is down."""

    settings: WebhookSinkSettings
    name: str = "webhook"
    resolver: Resolver = system_resolver
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        url = self.settings.url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a webhook needs an http(s) URL with a host, not {url!r}")
        self._parts = parts
        self._secret = self.settings.secret()

    def wanted(self, verdicts: Iterable[Verdict]) -> list[Verdict]:
        """The verdicts this sink sends (its `actions`, or all)."""
        actions = self.settings.actions
        return [v for v in verdicts if actions is None or v.action in actions]

    def write(self, outcomes: Sequence[Outcome]) -> list[Refusal]:
        """The sink protocol: each outcome's wanted verdicts; refusals name their outcome."""
        index = {active.verdict.key: n for n, o in enumerate(outcomes) for active in o.verdicts}
        verdicts = [active.verdict for outcome in outcomes for active in outcome.verdicts]
        return [
            Refusal(index[refused.verdict.key], self.name, refused.reason)
            for refused in self.deliver(verdicts)
        ]

    def close(self) -> None:
        """Nothing held between batches."""

    def deliver(self, verdicts: Sequence[Verdict]) -> list[Refused]:
        """POST every wanted verdict; the refused ones come back, a dead endpoint raises."""
        refused = []
        for verdict in self.wanted(verdicts):
            reason = self._post_with_retries(verdict)
            if reason is not None:
                refused.append(Refused(verdict, reason))
        return refused

    def _post_with_retries(self, verdict: Verdict) -> str | None:
        body = verdict.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "X-Vlmod-Signature": signature(self._secret, body),
            "X-Vlmod-Key": verdict.key,
        }
        last = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            status, last = self._post(body, headers)
            if status is not None and 200 <= status < 300:
                return None
            if status is not None and status not in RETRIED_STATUSES:
                return f"the endpoint refused verdict {verdict.key}: {last}"
            if attempt < self.settings.max_attempts:
                self.sleep(self._delay(attempt))
        raise SinkUnavailable(
            f"{self.name} at {self._where()} failed {self.settings.max_attempts} times: {last}"
        )

    def _delay(self, attempt: int) -> float:
        base, cap = self.settings.backoff_base_s, self.settings.backoff_cap_s
        return backoff_delay(attempt, base_s=base, cap_s=cap, rng=self.rng)

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        """(status, what happened); status None for a failure to reach the endpoint."""
        try:
            connection = self._connect()
        except BlockedAddress as exc:  # the same answer on every try: no retry helps
            raise SinkUnavailable(f"{self.name} at {self._where()}: {exc}") from exc
        except (OSError, ssl.SSLError) as exc:
            return None, f"cannot connect: {error_text(exc)}"
        try:
            connection.request("POST", self._path(), body=body, headers=headers)
            response = connection.getresponse()
            text = response.read(200).decode("utf-8", "replace").strip()
            return response.status, f"HTTP {response.status} {text}".strip()
        except (http.client.HTTPException, OSError, ssl.SSLError) as exc:
            return None, f"no answer: {error_text(exc)}"
        finally:
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        host = self._parts.hostname or ""
        port = self._parts.port or (443 if self._parts.scheme == "https" else 80)
        rules = ImageLimits(allow_private_addresses=self.settings.allow_private_addresses)
        address = check_addresses(host, self.resolver(host, port), rules)
        sock = socket.create_connection((address, port), timeout=self.settings.timeout_s)
        if self._parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        connection = http.client.HTTPConnection(host, port, timeout=self.settings.timeout_s)
        connection.sock = sock
        return connection

    def _path(self) -> str:
        path = self._parts.path or "/"
        return f"{path}?{self._parts.query}" if self._parts.query else path

    def _where(self) -> str:
        return f"{self._parts.scheme}://{self._parts.hostname}{self._parts.path}"
