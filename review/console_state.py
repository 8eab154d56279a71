"""What every console route shares: the config, the task store, the decision desk, sessions,
login throttling, and the rendering of pages (Jinja2, autoescape on: post text, meta and
evidence are attacker controlled and only ever shown escaped)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from contracts.records import Action
from contracts.review import ReviewTask
from review.auth import (
    SESSION_COOKIE,
    CsrfRefused,
    Gate,
    LoginLimiter,
    Session,
    SessionSigner,
    csrf_matches,
)
from review.decisions import DecisionDesk
from review.golden import GoldenSet
from review.sessions import SessionStore
from review.settings import ReviewConfig
from review.similar_tasks import SimilarPanel, SimilarTasks
from review.task_images import image_view
from review.task_meta import TaskMeta, TaskStage
from review.tasks import Claim, TaskStore

HERE = Path(__file__).parent
NOT_ESCALATED = frozenset({TaskStage.APPEAL, TaskStage.ADJUDICATION})


def pretty(value: Any) -> str:
    """Indented JSON for evidence and meta; the template escapes it."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


class Console:
    """The console's parts: config, store, the decision desk and the auth pieces."""

    def __init__(
        self, config: ReviewConfig, store: TaskStore, desk: DecisionDesk, clock: Callable[[], float]
    ) -> None:
        self.config, self.store, self.desk, self.clock = config, store, desk, clock
        rates = {queue: golden.rate for queue, golden in config.golden.items()}
        self.golden = GoldenSet(store, rates=rates)
        self.gate = Gate(config)
        secret = config.secret_value()
        self.signer = SessionSigner(secret, max_age_s=config.session_max_age_s, clock=clock)
        self.sessions = SessionStore(
            config.redis_url,
            namespace=config.namespace,
            max_age_s=config.session_max_age_s,
            idle_s=config.session_idle_timeout_s,
            clock=clock,
        )
        self.limiter = LoginLimiter(
            config.login_max_failures,
            config.login_window_s,
            clock,
            max_per_address=config.login_max_failures_per_address,
            max_entries=config.login_limiter_entries,
        )
        self.image_limits = config.images
        self.similar = SimilarTasks(config.redis_url, config.namespace, config.similar, store)
        self.pages = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
        )
        self.pages.filters["pretty"] = pretty

    def page(
        self,
        name: str,
        request: Request,
        *,
        status: int = 200,
        session: Session | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """Render a template; every page knows the reviewer and the CSRF token, if any."""
        session = session or self.session(request)
        known = session is not None and session.reviewer in self.config.reviewers
        base = {
            "reviewer": session.reviewer if known and session else None,
            "csrf": session.csrf if session else "",
        }
        body = self.pages.get_template(name).render({**base, **context})
        return HTMLResponse(body, status_code=status)

    def session(self, request: Request) -> Session | None:
        """The request's live session, logged in or not, if any."""
        cookie = self.signer.read(request.cookies.get(SESSION_COOKIE))
        if cookie is None or cookie.token is None:
            return cookie.anonymous if cookie else None
        return self.sessions.read(cookie.token)

    def reviewer(self, request: Request) -> str:
        """The authenticated reviewer, or LoginRequired."""
        return self.gate.reviewer_of(self.session(request))

    def poster(self, request: Request, csrf: str) -> str:
        """The authenticated reviewer of a POST whose CSRF token matches, or refuse it."""
        session = self.session(request)
        reviewer = self.gate.reviewer_of(session)
        if session is None or not csrf_matches(session.csrf, csrf):
            raise CsrfRefused("missing or wrong CSRF token; reload the page and try again")
        return reviewer

    def set_cookie(self, response: Response, cookie: str) -> None:
        """Give the browser a session cookie: HttpOnly, SameSite=Strict, Secure when asked."""
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=self.config.session_max_age_s,
            httponly=True,
            samesite="strict",
            secure=self.config.secure_cookies,
        )

    def task_context(self, claim: Claim, reviewer: str) -> dict[str, Any]:
        """What task.html shows of a claimed task: an appeal shows the decision appealed; a
        second review or a golden task looks like any other."""
        task, meta = claim.task, claim.meta
        images = [image_view(image, task.key, i) for i, image in enumerate(task.post.images)]
        appeal = meta if meta is not None and meta.stage is TaskStage.APPEAL else None
        disputed = meta if meta is not None and meta.stage is TaskStage.ADJUDICATION else None
        judged = appeal.original.action if appeal and appeal.original else task.verdict.action
        return {
            "task": task,
            "images": images,
            "lease_left_s": max(0, int(claim.expires_at - self.clock())),
            "judged_action": judged,
            "overturn_to": [a for a in Action if a != judged],
            "escalate_to": self._escalations(task, meta, reviewer),
            "appeal": appeal,
            "adjudication": disputed,
            "signal_extra": task.verdict.signals.model_extra or {},
            "post_extra": task.post.model_extra or {},
            "similar": None if appeal or disputed else self.similar_to(task, reviewer),
        }

    def similar_to(self, task: ReviewTask, reviewer: str) -> SimilarPanel:
        """The similar-posts panel of `task`, with the tasks `reviewer` may decide ticked-able."""
        works = set(self.config.queues_of(reviewer))
        return self.similar.panel(task, works.__contains__)

    def _escalations(self, task: ReviewTask, meta: TaskMeta | None, reviewer: str) -> list[str]:
        if meta is not None and meta.stage in NOT_ESCALATED:
            return []  # an appeal or an adjudication is decided where it is
        return [q for q in self.config.escalations_of(reviewer) if q != task.queue]
