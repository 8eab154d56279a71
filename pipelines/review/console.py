"""The review console: server-rendered pages over the task store, behind login and CSRF.

Every page is rendered by Jinja2 with autoescape on; post text, meta and evidence are attacker
controlled and are only ever shown escaped. A strict Content-Security-Policy allows scripts,
styles and images from this origin only (images also as `data:`), so the keyboard shortcuts live
in `static/review.js` and a post's image URLs are fetched by the console, on reveal.

    GET  /login, POST /login, POST /logout     sessions (server-side in Redis; the cookie,
                                               HttpOnly and SameSite=Strict, names one)
    GET  /                                     the reviewer's queues
    GET  /queue/{queue}                        the task the reviewer holds there, if any
    POST /queue/{queue}/claim                  claim the next task under a lease
    GET  /image/{key}/{index}                  a task's image, fetched by the console on reveal
    POST /decide                               uphold | overturn | escalate | skip
    GET  /dashboard, GET /api/stats            queue depth, decisions per hour, overturn rates
    GET  /healthz                              liveness; never waits behind logins
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from contracts.records import Action
from contracts.review import DecisionKind, ReviewTask
from pipelines.exceptions import ProduceFailed, ServiceUnavailable
from pipelines.review.auth import (
    SESSION_COOKIE,
    AccessRefused,
    CsrfRefused,
    Gate,
    LoginBusy,
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
from pipelines.review.login import add_login_routes
from pipelines.review.sessions import SessionStore
from pipelines.review.settings import ReviewConfig
from pipelines.review.task_images import image_view
from pipelines.review.tasks import AlreadyDecided, LeaseLost, ReviewError, TaskStore

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # image URLs are the poster's; tell them nothing
    "Cache-Control": "no-store",
}
FormText = Annotated[str, Form()]
DONE_KINDS = frozenset({*DecisionKind, SKIP})
DISPLAY_EDGE = 2048  # the console serves fetched images at most this wide or tall


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
        self.image_limits = config.images.limits()
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

    def task_context(self, task: ReviewTask, expires_at: float, reviewer: str) -> dict[str, Any]:
        """What task.html shows of a claimed task."""
        images = [image_view(image, task.key, i) for i, image in enumerate(task.post.images)]
        return {
            "task": task,
            "images": images,
            "lease_left_s": max(0, int(expires_at - self.clock())),
            "overturn_to": [a for a in Action if a != task.verdict.action],
            "escalate_to": [q for q in self.config.escalations_of(reviewer) if q != task.queue],
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
        review_topics=config.topics,
        task_queues={queue: config.task_queue(queue) for queue in config.review_topics},
        clock=clock,
    )
    console = Console(config, store, desk, clock)
    ended = console.sessions.revoke_all_but(config.reviewers)
    if ended:
        log.info("ended the sessions of reviewers no longer in the config: %s", ", ".join(ended))
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="vlmod review")
    app.state.console = console
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_security_headers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_request_bytes)
    _add_error_pages(app, console)
    add_login_routes(app, console)
    _add_review_routes(app, console)
    _add_image_route(app, console)
    _add_decision_route(app, console)
    _add_dashboard_routes(app, console)
    return app


def _add_security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def secure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 before any route reads them.

    The body is read here, within the limit, and handed on; nothing bigger is ever buffered,
    whether or not the client sent a Content-Length.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int
    ) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass requests within the limit on, with their body; answer 413 to the rest."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await _plain(send, 413, b"request body too large")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # after the body: a disconnect, as the server says
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


async def _plain(send: Send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (LoginBusy, 503, "Busy"),
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


def _add_review_routes(app: FastAPI, console: Console) -> None:
    @app.get("/")
    def home(request: Request) -> Response:
        reviewer = console.reviewer(request)
        stats = console.store.stats()
        queues = [(q, stats.get(q)) for q in console.config.queues_of(reviewer)]
        return console.page("home.html", request, queues=queues)

    @app.get("/queue/{queue}")
    def queue_page(request: Request, queue: str, done: str = "", delayed: int = 0) -> Response:
        reviewer = console.reviewer(request)
        console.gate.check_queue(reviewer, queue)
        done = done if done in DONE_KINDS else ""  # a crafted link shows no text of its own
        shown: dict[str, Any] = {"queue": queue, "done": done, "delayed": bool(done and delayed)}
        claim = console.store.claimed_by(reviewer, queue)
        if claim is None:
            waiting = console.store.stats().get(queue)
            return console.page("queue.html", request, stats=waiting, **shown)
        context = console.task_context(claim.task, claim.expires_at, reviewer)
        return console.page("task.html", request, **shown, **context)

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
        escalations = console.config.escalations_of(reviewer)
        submitted = console.desk.submit(key, reviewer, choice, escalations)
        if submitted is not None:  # after a skip the same task would come straight back
            console.store.claim(task.queue, reviewer)
        delayed = "&delayed=1" if submitted is not None and not submitted.published else ""
        return RedirectResponse(f"/queue/{task.queue}?done={choice.kind}{delayed}", status_code=303)


def _add_image_route(app: FastAPI, console: Console) -> None:
    @app.get("/image/{key}/{index}")
    def task_image(request: Request, key: str, index: int) -> Response:
        reviewer = console.reviewer(request)
        task = console.store.get(key)
        if task is None:
            raise LeaseLost(f"task {key!r} is not a known task")
        console.gate.check_queue(reviewer, task.queue)
        if not 0 <= index < len(task.post.images) or task.post.images[index].url is None:
            return JSONResponse({"detail": "no such image"}, status_code=404)
        return _fetched_image(console, str(task.post.images[index].url))


def _fetched_image(console: Console, url: str) -> Response:
    """The image at `url` under the pipeline's fetch rules, as a fresh JPEG or PNG."""
    import io

    from operators.exceptions import ImageError
    from operators.images import ImageLoader

    try:
        loaded = ImageLoader(console.image_limits).load(url)
    except ImageError as error:
        return JSONResponse({"detail": f"image not shown: {error.reason}"}, status_code=502)
    image = loaded.image
    image.thumbnail((DISPLAY_EDGE, DISPLAY_EDGE))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)  # a fresh file: no metadata of the poster's
    return Response(out.getvalue(), media_type="image/jpeg")


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
    async def healthz() -> Response:  # on the event loop: never waits for a worker thread
        return JSONResponse({"ok": True})


def _dashboard(console: Console) -> dict[str, Any]:
    overturns = console.desk.stats.overturns()
    return {
        "queues": console.store.stats(),
        "unpublished": len(console.store.unpublished()),
        "last_hour": console.desk.stats.last_hour(),
        "overturns": {
            rule: {"overturned": over, "decided": n, "rate": over / n if n else 0.0}
            for rule, (over, n) in overturns.items()
        },
    }
