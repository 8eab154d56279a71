"""How a consumer's call reaches a replica pool: small calls by value over gRPC, large ones by
reference through Ray's object store.

A Serve handle sends a call by reference (a Ray actor call: arguments and result through the
object store, the answer streamed back through the router) or by value (`_by_reference=False`:
the router sends the pickled arguments to the replica's gRPC server and gets the result in the
reply). By value costs the caller about half the CPU a call and answers sooner beside busy
threads (docs/benchmarks.md), but gRPC refuses a message over 4 MiB
(`RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH`) in either direction. So a call goes by value only
while what it carries is at most `pool.replica_grpc_max_bytes` and its answer is known to be
small; a call refused for its size anyway (`RESOURCE_EXHAUSTED`) is sent again by reference,
never failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from ray.serve.handle import DeploymentHandle

log = logging.getLogger(__name__)


def too_large(error: BaseException) -> bool:
    """True for gRPC's refusal of a message over its size limit, sent or received."""
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@dataclass
class ReplicaCalls:
    """Calls one deployment, by value where the call is small enough (`max_value_bytes`)."""

    handle: DeploymentHandle
    max_value_bytes: int  # 0: every call by reference
    by_value: DeploymentHandle | None = field(init=False)

    def __post_init__(self) -> None:
        self.by_value = (
            self.handle.options(_by_reference=False) if self.max_value_bytes > 0 else None
        )

    def call(self, payload: Any, size: int | None, timeout_s: float) -> Any:
        """The deployment's answer to `payload`; `size` is what it carries in bytes, None where
        the answer may be large (then it goes by reference)."""
        if self.by_value is not None and size is not None and size <= self.max_value_bytes:
            try:
                return self.by_value.remote(payload).result(timeout_s=timeout_s)
            except Exception as error:  # only a refusal for size is sent again
                if not too_large(error):
                    raise
                log.warning("a call of %d bytes was too large for gRPC; sent by reference", size)
        return self.handle.remote(payload).result(timeout_s=timeout_s)
