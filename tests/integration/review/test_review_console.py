"""The review console in a real browser: Debian chromium driven by Playwright, against a console
served by uvicorn over real Tansu and Redis, fed from real review topics.

Every wait is on a condition with a deadline (a task in the store, a URL, a record on a topic),
never a fixed sleep. A screenshot of the task page goes to test-artifacts/review-task.png.
"""

from __future__ import annotations

import base64
import json
import re
import time

from contracts.records import ImageRef
from tests.integration.browsers import (
    ARTIFACTS,
    browser_fixture,  # noqa: F401 (a fixture)
    claim,
    contexts_fixture,  # noqa: F401 (a fixture)
    log_in,
)
from tests.integration.consoles import (
    PNG,
    read_decisions,
    review_task,
)


def test_a_reviewer_logs_in_sees_the_blurred_task_and_decides_it_by_key(start_console, contexts):
    console = start_console()
    task = review_task()
    console.publish(task)

    page = log_in(contexts(), console, "ana")
    page.wait_for_url(f"{console.url}/")
    assert page.locator("#who").inner_text() == "ana"
    assert claim(page, console) == task.key
    assert page.locator("#post-id").inner_text() == task.post.id
    assert page.locator("#policy").inner_text() == "review-e2e v2"
    assert "looks like spam" in page.locator("#rules").inner_text()
    assert "a flyer with shapes" in page.locator("#caption").inner_text()
    assert "FOLLOW" in page.locator("#producers").inner_text()
    assert "u" in page.locator("#shortcuts").inner_text()

    image = page.locator(".media img").first
    expect_loaded(image)
    page.mouse.move(1, 1)  # not over the image: hovering reveals it
    assert "blur" in computed_filter(image)
    page.keyboard.press("g")
    assert "grayscale" in computed_filter(image) and "blur" in computed_filter(image)
    page.keyboard.press("g")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-task.png"), full_page=True)
    image.click()
    assert "blur" not in computed_filter(image)
    page.mouse.move(1, 1)

    csrf = page.locator("#decide input[name=csrf]").get_attribute("value")
    page.keyboard.press("u")
    page.wait_for_url(re.compile(r"/queue/spam\?done=uphold$"))
    (decision,) = read_decisions(console, 1)
    assert decision["key"] == task.key and decision["reviewer"] == "ana"
    assert decision["decision"] == "uphold" and decision["action"] == "block"
    assert decision["rules"] == ["spam-text"]

    again = page.request.post(
        f"{console.url}/decide", form={"key": task.key, "kind": "overturn", "csrf": csrf}
    )
    assert again.status == 409, "a second decision on the same task"
    page.goto(f"{console.url}/dashboard")
    assert re.search(r"ana\s+1", page.locator("#reviewer-stats").inner_text())
    assert re.search(r"spam-text\s+0\s+1\s+0 %", page.locator("#rule-stats").inner_text())


def test_overturn_and_escalate_publish_and_requeue(start_console, contexts):
    console = start_console()
    first, second = review_task(priority=1), review_task(priority=2)
    console.publish(first, second)

    page = log_in(contexts(), console, "ben")
    assert claim(page, console) == first.key
    page.select_option("#overturn-action", "allow")
    page.fill("#note", "a <b>harmless</b> ad")
    page.locator("#note").press("Escape")
    page.keyboard.press("o")
    page.wait_for_url(re.compile(r"done=overturn$"))
    assert page.locator("#task").get_attribute("data-task-key") == second.key  # next one claimed
    page.select_option("#escalate-to", "senior")
    page.keyboard.press("e")
    page.wait_for_url(re.compile(r"done=escalate$"))

    decisions = {d["key"]: d for d in read_decisions(console, 2)}
    assert decisions[first.key]["action"] == "allow" and decisions[first.key]["reviewer"] == "ben"
    assert decisions[first.key]["note"] == "a <b>harmless</b> ad"
    assert decisions[second.key]["escalated_to"] == "senior"

    senior = log_in(contexts(), console, "cam")
    deadline = time.monotonic() + 30
    while (key := claim(senior, console, "senior")) is None and time.monotonic() < deadline:
        senior.wait_for_load_state()
    assert key is not None and key.startswith(second.key)
    assert senior.locator("#post-id").inner_text() == second.post.id
    senior.goto(f"{console.url}/dashboard")
    assert re.search(r"spam-text\s+1\s+1\s+100 %", senior.locator("#rule-stats").inner_text())


def test_two_reviewers_never_hold_the_same_task_and_a_claim_survives_the_browser(
    start_console, contexts
):
    console = start_console()
    tasks = [review_task(priority=n) for n in range(3)]
    console.publish(*tasks)

    ana, ben = log_in(contexts(), console, "ana"), log_in(contexts(), console, "ben")
    held = {claim(ana, console), claim(ben, console)}
    assert held == {tasks[0].key, tasks[1].key}
    assert claim(ana, console) == tasks[0].key, "claiming again returns the live claim"

    ana.context.close()  # the browser goes away; the claim stays under its lease
    again = log_in(contexts(), console, "ana")
    again.goto(f"{console.url}/queue/spam")
    assert again.locator("#task").get_attribute("data-task-key") == tasks[0].key
    third = log_in(contexts(), console, "cam")
    third.goto(f"{console.url}/queue/spam")
    assert third.locator("#error-title").inner_text() == "Not allowed"


def test_an_expired_lease_returns_the_task_to_the_queue(start_console, contexts):
    console = start_console(lease_s=2.0)
    task = review_task()
    console.publish(task)

    ana, ben = log_in(contexts(), console, "ana"), log_in(contexts(), console, "ben")
    assert claim(ana, console) == task.key
    assert claim(ben, console) is None, "held by ana"
    deadline = time.monotonic() + 20
    while (key := claim(ben, console)) is None and time.monotonic() < deadline:
        ben.wait_for_load_state()
    assert key == task.key, "the task came back after ana's lease ran out"

    ana.keyboard.press("u")  # ana's page is stale; her claim is gone
    assert ana.locator("#error-title").inner_text() == "Your claim is gone"
    ben.keyboard.press("u")
    ben.wait_for_url(re.compile(r"done=uphold$"))
    (decision,) = read_decisions(console, 1)
    assert decision["reviewer"] == "ben"


def test_wrong_passwords_missing_csrf_and_anonymous_access_are_refused(start_console, contexts):
    console = start_console()
    context = contexts()
    anonymous = context.new_page()
    anonymous.goto(f"{console.url}/dashboard")
    assert anonymous.url == f"{console.url}/login"

    page = log_in(context, console, "ana", "wrong password")
    assert page.locator("#login-error").inner_text() == "wrong name or password"
    assert page.url == f"{console.url}/login"
    for _ in range(4):
        page = log_in(context, console, "ana", "still wrong")
    page = log_in(context, console, "ana")  # the right password, but too many failures first
    assert "too many failed logins" in page.locator("#login-error").inner_text()

    page = log_in(contexts(), console, "ben")
    page.wait_for_url(f"{console.url}/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "vlmod_review")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    response = page.goto(f"{console.url}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    for form in ({}, {"csrf": "forged"}):
        refused = page.request.post(f"{console.url}/queue/spam/claim", form=form, max_redirects=0)
        assert refused.status == 403
    assert page.request.post(f"{console.url}/logout", max_redirects=0).status == 403
    outsider = context.request.post(f"{console.url}/queue/spam/claim", max_redirects=0)
    assert outsider.status == 303 and outsider.headers["location"] == "/login"
    assert page.request.get(f"{console.url}/api/stats").ok
    assert context.request.get(f"{console.url}/api/stats").status == 401


def test_script_in_post_text_and_meta_stays_inert_and_literal(start_console, contexts):
    console = start_console()
    text = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    meta = {"bio": "</pre><script>window.__pwned = 3</script>", "<svg onload=alert(1)>": 1}
    svg = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>")
    images = [
        ImageRef(data=PNG, mime="image/png"),
        ImageRef(data=svg.decode(), mime="image/svg+xml"),
        ImageRef(url="javascript:window.__pwned=4"),
    ]
    task = review_task(text=text, meta=meta, images=images, reason="<script>x()</script>")
    console.publish(task)

    page = log_in(contexts(), console, "ana")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    assert claim(page, console) == task.key
    page.wait_for_load_state("load")

    assert page.evaluate("typeof window.__pwned") == "undefined"
    scripts = page.eval_on_selector_all("script", "els => els.map(e => e.getAttribute('src'))")
    assert scripts == ["/static/review.js"], "no script element came from the post"
    assert page.locator("#post-text").inner_text() == text
    assert json.loads(page.locator("#post-meta").inner_text()) == meta
    assert "<script>x()</script>" in page.locator("#rules").inner_text()
    assert page.locator(".media img").count() == 1, "only the PNG is shown"
    assert "not an http(s) URL" in page.locator("#media").inner_text()
    assert dialogs == []


def computed_filter(locator) -> str:
    return locator.evaluate("element => getComputedStyle(element).filter")


def expect_loaded(image) -> None:
    image.page.wait_for_function(
        "element => element.complete && element.naturalWidth > 0", arg=image.element_handle()
    )


class _ImageServer:
    """A plain HTTP server on loopback with one PNG, counting who fetched it."""

    def __init__(self) -> None:
        import http.server
        import threading

        png = base64.b64decode(PNG)
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.headers.get("User-Agent", ""))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pixel.png"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_no_request_leaves_the_page_for_an_image_url_before_a_reveal(start_console, contexts):
    pixel = _ImageServer()
    try:
        console = start_console(images={"allow_private_addresses": True})
        task = review_task(images=[ImageRef(url=pixel.url)])
        console.publish(task)
        page = log_in(contexts(), console, "ana")
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        assert claim(page, console) == task.key
        response = page.reload()
        page.wait_for_load_state("networkidle")

        csp = response.headers["content-security-policy"]
        assert "img-src 'self' data:;" in csp and "http:" not in csp
        assert pixel.hits == [], "nobody fetched the poster's image before the reveal"
        assert not [url for url in requests if "/image/" in url or "pixel.png" in url]

        page.keyboard.press("r")
        image = page.locator(".media img").first
        expect_loaded(image)
        assert "blur" not in computed_filter(image)
        assert [url for url in requests if "/image/" in url] == [
            f"{console.url}/image/{task.key.replace(':', '%3A')}/0"
        ]
        assert not [url for url in requests if "pixel.png" in url], "the browser never asks it"
        assert len(pixel.hits) == 1 and "Chrome" not in pixel.hits[0], "the console fetched it"
    finally:
        pixel.close()
