"""The review console: server-rendered pages over the task store, behind login and CSRF.

Every page is rendered by Jinja2 with autoescape on; post text, meta and evidence are attacker
controlled and are only ever shown escaped. A strict Content-Security-Policy allows scripts,
styles and images from this origin only (images also as `data:`), so the keyboard shortcuts live
in `static/review.js` and a post's image URLs are fetched by the console, on reveal.

    GET  /login, POST /login, POST /logout     sessions (server-side in Redis; the cookie,
                                               HttpOnly and SameSite=Strict, names one)
    GET  /                                     the reviewer's queues
    GET  /queue/{queue}                        the task the reviewer holds there, if any
    POST /queue/{queue}/claim                  claim the next task under a lease (at the queue's
                                               golden rate, a golden task instead)
    GET  /image/{key}/{index}                  a task's image, fetched by the console on reveal
    POST /decide                               uphold | overturn | escalate | skip; with ticked
                                               similar tasks (`cluster`), each of them too
    GET  /dashboard, GET /api/stats            queue depth, decisions per hour, overturn rates,
                                               second-review agreement; golden accuracy (leads)
    GET  /healthz                              liveness; never waits behind logins
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from contracts.errors import ServiceUnavailable
from contracts.review import DecisionKind, ReviewTask
from kafka_io.exceptions import ProduceFailed
from operators.exceptions import ImageError
from review.auth import (
    AccessRefused,
    CsrfRefused,
    LoginBusy,
    LoginRequired,
    LoginThrottled,
)
from review.clusters import decide_cluster
from review.console_state import HERE, Console
from review.decisions import (
    SKIP,
    DecisionChoice,
    DecisionDesk,
    DecisionInvalid,
    DecisionStats,
    MessageSink,
)
from review.http_guards import BodyLimit, SecurityHeaders
from review.login import add_login_routes
from review.settings import ReviewConfig
from review.task_images import display_jpeg
from review.tasks import AlreadyDecided, LeaseLost, ReviewError, TaskStore

log = logging.getLogger(__name__)

FormText = Annotated[str, Form()]
DONE_KINDS = frozenset({*DecisionKind, SKIP})


def build_console(
    config: ReviewConfig,
    store: TaskStore,
    writer: MessageSink,
    *,
    clock: Callable[[], float] = time.time,
    stats: DecisionStats | None = None,
) -> FastAPI:
    """The console app; a decision is decided in `store`, then published through `writer`."""
    stats = stats or DecisionStats(config.redis_url, namespace=config.namespace, clock=clock)
    desk = DecisionDesk(
        store,
        writer,
        stats,
        decisions_topic=config.decisions_topic,
        review_topics=config.topics,
        task_queues={queue: config.task_queue(queue) for queue in config.review_topics},
        second_review={queue: s.share for queue, s in config.second_review.items()},
        adjudication_queue=config.adjudication_queue,
        golden_topic=config.golden_topic,
        clock=clock,
    )
    console = Console(config, store, desk, clock)
    ended = console.sessions.revoke_all_but(config.reviewers)
    if ended:
        log.info("ended the sessions of reviewers no longer in the config: %s", ", ".join(ended))
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="vlmod review")
    app.state.console = console
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(BodyLimit, max_bytes=config.max_request_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, a 413 included
    _add_error_pages(app, console)
    add_login_routes(app, console)
    _add_review_routes(app, console)
    _add_image_route(app, console)
    _add_decision_route(app, console)
    _add_dashboard_routes(app, console)
    return app


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
        if status >= 500 and not isinstance(error, LoginBusy):  # busy: expected in a storm
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
    def queue_page(
        request: Request,
        queue: str,
        done: str = "",
        delayed: int = 0,
        cluster: int = 0,
        left: int = 0,
    ) -> Response:
        reviewer = console.reviewer(request)
        console.gate.check_queue(reviewer, queue)
        done = done if done in DONE_KINDS else ""  # a crafted link shows no text of its own
        shown: dict[str, Any] = {"queue": queue, "done": done, "delayed": bool(done and delayed)}
        shown["cluster"], shown["left"] = (max(0, cluster), max(0, left)) if done else (0, 0)
        claim = console.store.claimed_by(reviewer, queue)
        if claim is None:
            waiting = console.store.stats().get(queue)
            return console.page("queue.html", request, stats=waiting, **shown)
        context = console.task_context(claim, reviewer)
        return console.page("task.html", request, **shown, **context)

    @app.post("/queue/{queue}/claim")
    def claim_next(request: Request, queue: str, csrf: FormText = "") -> Response:
        reviewer = console.poster(request, csrf)
        console.gate.check_queue(reviewer, queue)
        console.golden.claim(queue, reviewer)
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
        cluster: Annotated[list[str] | None, Form()] = None,
    ) -> Response:
        reviewer = console.poster(request, csrf)  # the reviewer is the session's, never a field
        task = console.store.get(key)
        if task is None:
            raise LeaseLost(f"task {key!r} is not a known task")
        console.gate.check_queue(reviewer, task.queue)
        choice = DecisionChoice.from_form(kind, action, escalate_to, note.strip())
        if cluster and choice.kind != SKIP:
            return _decide_cluster(console, task, cluster, reviewer, choice)
        escalations = console.config.escalations_of(reviewer)
        submitted = console.desk.submit(key, reviewer, choice, escalations)
        if submitted is not None:  # after a skip the same task would come straight back
            console.golden.claim(task.queue, reviewer)
        delayed = "&delayed=1" if submitted is not None and not submitted.published else ""
        return RedirectResponse(f"/queue/{task.queue}?done={choice.kind}{delayed}", status_code=303)


def _decide_cluster(
    console: Console, task: ReviewTask, cluster: list[str], reviewer: str, choice: DecisionChoice
) -> Response:
    """Decide the held task and the similar ones ticked with it; say how many went."""
    works = set(console.config.queues_of(reviewer)).__contains__
    done = decide_cluster(console.desk, console.store, task, cluster, reviewer, choice, works)
    for key, why in done.refused:
        log.info("similar task %s left as it was for %s: %s", key, reviewer, why)
    console.golden.claim(task.queue, reviewer)
    delayed = "&delayed=1" if done.first is not None and not done.first.published else ""
    counts = f"&cluster={len(done.decided)}&left={len(done.refused)}"
    return RedirectResponse(
        f"/queue/{task.queue}?done={choice.kind}{delayed}{counts}", status_code=303
    )


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
        try:
            jpeg = display_jpeg(str(task.post.images[index].url), console.image_limits)
        except ImageError as error:
            return JSONResponse({"detail": f"image not shown: {error.reason}"}, status_code=502)
        return Response(jpeg, media_type="image/jpeg")


def _add_dashboard_routes(app: FastAPI, console: Console) -> None:
    @app.get("/dashboard")
    def dashboard(request: Request) -> Response:
        lead = console.config.is_lead(console.reviewer(request))
        return console.page("dashboard.html", request, lead=lead, **_dashboard(console, lead))

    @app.get("/api/stats")
    def api_stats(request: Request) -> Response:
        token = console.gate.token_name(request.headers.get("authorization"))
        qa = token is not None or console.config.is_lead(console.reviewer(request))
        numbers = _dashboard(console, qa)
        numbers["queues"] = {q: vars(s) for q, s in numbers["queues"].items()}
        return JSONResponse(numbers)

    @app.get("/healthz")
    async def healthz() -> Response:  # on the event loop: never waits for a worker thread
        return JSONResponse({"ok": True})


def _dashboard(console: Console, qa: bool) -> dict[str, Any]:
    """The dashboard's numbers; the QA ones (golden accuracy, second-review agreement) only for
    leads and monitoring tokens, since a reviewer watching them move would learn which of their
    tasks were golden or second reviews."""
    stats = console.desk.stats
    overturns = stats.overturns()
    accuracy = stats.golden_accuracy() if qa else {}
    second = stats.second_reviews() if qa else {}
    return {
        "golden": {
            reviewer: {"answered": n, "correct": right, "accuracy": right / n if n else 0.0}
            for reviewer, (n, right) in accuracy.items()
        },
        "queues": console.store.stats(),
        "unpublished": len(console.store.unpublished()),
        "last_hour": stats.last_hour(),
        "overturns": {
            rule: {"overturned": over, "decided": n, "rate": over / n if n else 0.0}
            for rule, (over, n) in overturns.items()
        },
        "second_reviews": {
            queue: {"agreed": agreed, "disagreed": disagreed}
            for queue, (agreed, disagreed) in second.items()
        },
    }
