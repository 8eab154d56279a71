"""The demo and the service harness: Tansu, Redis, PostgreSQL and Ray started on this machine,
sample posts, and `vlmod demo`'s run and report. Integration tests start services through it too.

- `harness`: `running_services` (Kafka, Redis, Ray), `ManagedProcess`.
- `postgres`: `running_postgres`, `PostgresServer` (Debian's server or the embedded wheel).
- `samples`: deterministic sample posts; `run.run_demo`, `report`, `review`: the demo itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.lazy import lazy_exports

if TYPE_CHECKING:
    from demo.harness import Services, running_services
    from demo.postgres import PostgresServer, running_postgres
    from demo.run import run_demo
    from demo.samples import sample_posts

__all__ = [
    "PostgresServer",
    "Services",
    "run_demo",
    "running_postgres",
    "running_services",
    "sample_posts",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "demo.harness": ["Services", "running_services"],
        "demo.postgres": ["PostgresServer", "running_postgres"],
        "demo.run": ["run_demo"],
        "demo.samples": ["sample_posts"],
    },
)
