"""Logging in and out of the review console, built to hold under a storm of failed logins.

- The limiter runs before any hashing, per (name, address) and per address, in bounded memory;
  an attempt counts as it arrives, so a burst is cut off before its checks are even queued.
- The address is the peer's; X-Forwarded-For counts only from `trusted_proxies`.
- Names and passwords are capped before hashing (`auth.MAX_NAME_CHARS`, `MAX_PASSWORD_CHARS`).
- At most `login_hash_concurrency` argon2 checks run at once, each off the event loop; the others
  wait without holding a worker thread (at most `login_queue_max`; more are refused at once with
  503), and give up with 503 after `login_queue_timeout_s`. Each
  check takes its hash's memory cost (64 MiB by default), so this bounds the console's memory;
  the checks run at a lower CPU priority, so pages and /healthz keep answering meanwhile.
- A login makes a new server-side session (rotation: nothing from before login survives it);
  logout deletes it, so a copied cookie is worthless afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from review.auth import (
    SESSION_COOKIE,
    CsrfRefused,
    LoginBusy,
    client_address,
    csrf_matches,
)

if TYPE_CHECKING:
    from review.console_state import Console

FormText = Annotated[str, Form()]
HASH_NICE = 10


class PasswordChecks:
    """A bound on password checks running at once; waiting ones hold no thread.

    The checks run on threads of their own at a lower CPU priority (Linux nice +10; argon2's
    lane threads inherit it), so a storm of logins slows logins, not pages and /healthz.
    """

    def __init__(self, concurrency: int, wait_s: float, max_waiting: int) -> None:
        self.concurrency, self.wait_s, self.max_waiting = concurrency, wait_s, max_waiting
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None  # made on the server's event loop
        self._threads = ThreadPoolExecutor(
            concurrency, thread_name_prefix="password-check", initializer=_lower_priority
        )

    async def check(self, console: Console, name: str, password: str) -> bool:
        """Whether the password is `name`'s, or LoginBusy when no check comes free in time.

        Past `max_waiting` waiting logins a new one is refused at once: a burst is answered
        as it arrives instead of all together when its wait runs out.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        if self.waiting >= self.max_waiting:
            raise LoginBusy("the console is busy checking logins; try again shortly")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_s)
        except TimeoutError:
            raise LoginBusy("the console is busy checking logins; try again shortly") from None
        finally:
            self.waiting -= 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, console.gate.login_ok, name, password)
        finally:
            self._slots.release()


def _lower_priority() -> None:
    # Per thread on Linux: only this check thread, and the threads it starts, yield. Elsewhere
    # the checks keep the process's priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICE)


def add_login_routes(app: FastAPI, console: Console) -> None:
    """GET and POST /login, POST /logout."""
    config = console.config
    checks = PasswordChecks(
        config.login_hash_concurrency, config.login_queue_timeout_s, config.login_queue_max
    )

    @app.get("/login")
    def login_form(request: Request) -> Response:
        session = console.session(request)
        if session is not None and session.reviewer in console.config.reviewers:
            return RedirectResponse("/", status_code=303)
        if session is not None and session.token is None:  # keep the form other tabs carry
            return console.page("login.html", request, session=session, error=None)
        session, cookie = console.signer.anonymous()  # carries the login form's CSRF token
        response = console.page("login.html", request, session=session, error=None)
        console.set_cookie(response, cookie)
        return response

    @app.post("/login")
    async def login(
        request: Request, name: FormText = "", password: FormText = "", csrf: FormText = ""
    ) -> Response:
        cookie = console.signer.read(request.cookies.get(SESSION_COOKIE))
        before = cookie.anonymous if cookie else None
        if before is None or not csrf_matches(before.csrf, csrf):
            raise CsrfRefused("the login form expired; reload it and try again")
        peer = request.client.host if request.client else None
        address = client_address(
            peer, request.headers.get("x-forwarded-for"), config.trusted_proxies
        )
        console.limiter.attempt(name, address)  # counted as failed unless it succeeds
        if not await checks.check(console, name, password):
            return console.page(
                "login.html", request, status=401, session=before, error="wrong name or password"
            )
        console.limiter.succeeded(name, address)
        session = await run_in_threadpool(console.sessions.create, name)
        response = RedirectResponse("/", status_code=303)
        assert session.token is not None
        console.set_cookie(response, console.signer.cookie_for(session.token))
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: FormText = "") -> Response:
        console.poster(request, csrf)
        session = console.session(request)
        if session is not None and session.token is not None:
            console.sessions.revoke(session.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
        return response
