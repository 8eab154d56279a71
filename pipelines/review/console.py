"""The review console: server-rendered pages over the task store, behind login and CSRF.

Every page is rendered by Jinja2 with autoescape on; post text, meta and evidence are attacker
controlled and are only ever shown escaped. A strict Content-Security-Policy allows scripts and
styles from this origin only, so the keyboard shortcuts live in `static/review.js`.

    GET  /login, POST /login, POST /logout     sessions (signed cookie, HttpOnly, SameSite=Strict)
    GET  /                                     the reviewer's queues
    GET  /queue/{queue}                        the task the reviewer holds there, if any
    POST /queue/{queue}/claim                  claim the next task under a lease
    POST /decide                               uphold | overturn | escalate | skip
    GET  /dashboard, GET /api/stats            queue depth, decisions per hour, overturn rates
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from contracts.records import Action, ImageRef
from contracts.review import DecisionKind, ReviewTask
from pipelines.exceptions import ProduceFailed, ServiceUnavailable
from pipelines.review.auth import (
    SESSION_COOKIE,
    AccessRefused,
    CsrfRefused,
    Gate,
    LoginLimiter,
    LoginRequired,
    LoginThrottled,
    Session,
    SessionSigner,
    csrf_matches,
)
from pipelines.review.decisions import (
    SKIP,
    DecisionChoice,
    DecisionDesk,
    DecisionInvalid,
    DecisionStats,
    MessageSink,
)
from pipelines.review.settings import ReviewConfig
from pipelines.review.tasks import AlreadyDecided, LeaseLost, ReviewError, TaskStore

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # image URLs are the poster's; tell them nothing
    "Cache-Control": "no-store",
}
RASTER_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif")
MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
FormText = Annotated[str, Form()]
DONE_KINDS = frozenset({*DecisionKind, SKIP})


@dataclass(frozen=True)
class ImageView:
    """One image as the task page shows it: a safe `src`, or why there is none."""

    src: str | None
    note: str


def image_view(image: ImageRef) -> ImageView:
    """Inline data as a raster `data:` URI, URLs only when http(s); anything else is not shown."""
    if image.data is not None:
        mime = image.mime if image.mime in RASTER_TYPES else sniff_raster(image.data)
        if mime is None:  # SVG and friends can carry script; show no such thing
            return ImageView(None, f"inline image of type {image.mime or 'unknown'} not shown")
        return ImageView(f"data:{mime};base64,{image.data}", f"inline {mime}")
    url = str(image.url)
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return ImageView(None, f"not an http(s) URL, not loaded: {url}")
    return ImageView(url, url)


def sniff_raster(data: str) -> str | None:
    """The raster type the first bytes of base64 `data` announce, or None."""
    try:
        head = base64.b64decode(data[:24])
    except (binascii.Error, ValueError):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in MAGIC if head.startswith(magic)), None)


def pretty(value: Any) -> str:
    """Indented JSON for evidence and meta; the template escapes it."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


class Console:
    """The console's parts: config, store, the decision desk and the auth pieces."""

    def __init__(
        self, config: ReviewConfig, store: TaskStore, desk: DecisionDesk, clock: Callable[[], float]
    ) -> None:
        self.config, self.store, self.desk, self.clock = config, store, desk, clock
        self.gate = Gate(config)
        secret = config.session_secret.get_secret_value()
        self.signer = SessionSigner(secret, max_age_s=config.session_max_age_s, clock=clock)
        self.limiter = LoginLimiter(config.login_max_failures, config.login_window_s, clock)
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
        """The request's valid session, if any."""
        return self.signer.read(request.cookies.get(SESSION_COOKIE))

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

    def task_context(self, task: ReviewTask, expires_at: float) -> dict[str, Any]:
        """What task.html shows of a claimed task."""
        queues = self.config.review_topics
        return {
            "task": task,
            "images": [image_view(image) for image in task.post.images],
            "lease_left_s": max(0, int(expires_at - self.clock())),
            "overturn_to": [a for a in Action if a != task.verdict.action],
            "escalate_to": [q for q in queues if q != task.queue],
            "signal_extra": task.verdict.signals.model_extra or {},
            "post_extra": task.post.model_extra or {},
        }


def build_console(
    config: ReviewConfig,
    store: TaskStore,
    producer: MessageSink,
    *,
    clock: Callable[[], float] = time.time,
    stats: DecisionStats | None = None,
) -> FastAPI:
    """The console app; decisions go out through `producer` (acks=all) before `store.decide`."""
    stats = stats or DecisionStats(config.redis_url, namespace=config.namespace, clock=clock)
    desk = DecisionDesk(
        store,
        producer,
        stats,
        decisions_topic=config.decisions_topic,
        review_topics=config.review_topics,
        clock=clock,
    )
    console = Console(config, store, desk, clock)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="vlmod review")
    app.state.console = console
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_security_headers(app)
    _add_error_pages(app, console)
    _add_login_routes(app, console)
    _add_review_routes(app, console)
    _add_decision_route(app, console)
    _add_dashboard_routes(app, console)
    return app


def _add_security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def secure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (CsrfRefused, 403, "Refused"),
    (AccessRefused, 403, "Not allowed"),
    (AlreadyDecided, 409, "Already decided"),
    (LeaseLost, 409, "Your claim is gone"),
    (DecisionInvalid, 400, "That decision does not make sense"),
    (ReviewError, 503, "The review store is unavailable"),
    (ProduceFailed, 503, "The decision could not be published"),
    (ServiceUnavailable, 503, "A service is unavailable"),
)


def _add_error_pages(app: FastAPI, console: Console) -> None:
    async def login_first(request: Request, error: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "log in or send a bearer token"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    async def throttled(request: Request, error: Exception) -> Response:
        reason = getattr(error, "reason", str(error))
        response = console.page("login.html", request, status=429, error=reason)
        response.headers["Retry-After"] = str(int(console.config.login_window_s))
        return response

    app.add_exception_handler(LoginRequired, login_first)
    app.add_exception_handler(LoginThrottled, throttled)
    for kind, status, title in ERROR_STATUS:
        app.add_exception_handler(kind, _error_page(console, status, title))


def _error_page(console: Console, status: int, title: str) -> Callable[..., Any]:
    async def render(request: Request, error: Exception) -> Response:
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, error)
        reason = getattr(error, "reason", str(error))
        return console.page("error.html", request, status=status, title=title, reason=reason)

    return render


def _add_login_routes(app: FastAPI, console: Console) -> None:
    @app.get("/login")
    def login_form(request: Request) -> Response:
        session = console.session(request)
        if session is not None and session.reviewer in console.config.reviewers:
            return RedirectResponse("/", status_code=303)
        if session is not None:  # keep the anonymous session other tabs' forms carry
            return console.page("login.html", request, error=None)
        session, cookie = console.signer.issue(None)  # carries the login form's CSRF token
        response = console.page("login.html", request, session=session, error=None)
        console.set_cookie(response, cookie)
        return response

    @app.post("/login")
    def login(
        request: Request, name: FormText = "", password: FormText = "", csrf: FormText = ""
    ) -> Response:
        session = console.session(request)
        if session is None or not csrf_matches(session.csrf, csrf):
            raise CsrfRefused("the login form expired; reload it and try again")
        address = request.client.host if request.client else "unknown"
        console.limiter.check(name, address)
        if not console.gate.login_ok(name, password):
            console.limiter.failed(name, address)
            return console.page("login.html", request, status=401, error="wrong name or password")
        console.limiter.succeeded(name, address)
        response = RedirectResponse("/", status_code=303)
        console.set_cookie(response, console.signer.issue(name)[1])  # new token: no fixation
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: FormText = "") -> Response:
        console.poster(request, csrf)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
        return response


def _add_review_routes(app: FastAPI, console: Console) -> None:
    @app.get("/")
    def home(request: Request) -> Response:
        reviewer = console.reviewer(request)
        stats = console.store.stats()
        queues = [(q, stats.get(q)) for q in console.config.queues_of(reviewer)]
        return console.page("home.html", request, queues=queues)

    @app.get("/queue/{queue}")
    def queue_page(request: Request, queue: str, done: str = "") -> Response:
        reviewer = console.reviewer(request)
        console.gate.check_queue(reviewer, queue)
        done = done if done in DONE_KINDS else ""  # a crafted link shows no text of its own
        claim = console.store.claimed_by(reviewer, queue)
        if claim is None:
            waiting = console.store.stats().get(queue)
            return console.page("queue.html", request, queue=queue, stats=waiting, done=done)
        context = console.task_context(claim.task, claim.expires_at)
        return console.page("task.html", request, queue=queue, done=done, **context)

    @app.post("/queue/{queue}/claim")
    def claim_next(request: Request, queue: str, csrf: FormText = "") -> Response:
        reviewer = console.poster(request, csrf)
        console.gate.check_queue(reviewer, queue)
        console.store.claim(queue, reviewer)
        return RedirectResponse(f"/queue/{queue}", status_code=303)


def _add_decision_route(app: FastAPI, console: Console) -> None:
    @app.post("/decide")
    def decide(
        request: Request,
        key: FormText = "",
        kind: FormText = "",
        action: FormText = "",
        escalate_to: FormText = "",
        note: FormText = "",
        csrf: FormText = "",
    ) -> Response:
        reviewer = console.poster(request, csrf)  # the reviewer is the session's, never a field
        task = console.store.get(key)
        if task is None:
            raise LeaseLost(f"task {key!r} is not a known task")
        console.gate.check_queue(reviewer, task.queue)
        choice = DecisionChoice.from_form(kind, action, escalate_to, note.strip())
        decision = console.desk.submit(key, reviewer, choice)
        if decision is not None:  # after a skip the same task would come straight back
            console.store.claim(task.queue, reviewer)
        return RedirectResponse(f"/queue/{task.queue}?done={choice.kind}", status_code=303)


def _add_dashboard_routes(app: FastAPI, console: Console) -> None:
    @app.get("/dashboard")
    def dashboard(request: Request) -> Response:
        console.reviewer(request)
        return console.page("dashboard.html", request, **_dashboard(console))

    @app.get("/api/stats")
    def api_stats(request: Request) -> Response:
        if console.gate.token_name(request.headers.get("authorization")) is None:
            console.reviewer(request)
        numbers = _dashboard(console)
        numbers["queues"] = {q: vars(s) for q, s in numbers["queues"].items()}
        return JSONResponse(numbers)

    @app.get("/healthz")
    def healthz() -> Response:
        return JSONResponse({"ok": True})


def _dashboard(console: Console) -> dict[str, Any]:
    overturns = console.desk.stats.overturns()
    return {
        "queues": console.store.stats(),
        "last_hour": console.desk.stats.last_hour(),
        "overturns": {
            rule: {"overturned": over, "decided": n, "rate": over / n if n else 0.0}
            for rule, (over, n) in overturns.items()
        },
    }
