"""http(s) fetching: the SSRF guard on resolver answers, redirects, limits. Loopback only."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from operators.exceptions import (
    BlockedAddress,
    ImageFetchError,
    ImageFetchTimeout,
    ImageTooLarge,
    UnsupportedImageSource,
)
from operators.fetch import check_addresses, fetch_url, forbidden_reason
from operators.images import ImageLoader
from operators.limits import ImageLimits

PNG = io.BytesIO()
Image.new("RGB", (8, 8), "green").save(PNG, "PNG")
PNG_BYTES = PNG.getvalue()


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything tries to open a TCP connection."""
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise AssertionError(f"connection attempted to {address}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def resolver_answering(*addresses):
    def resolve(host, port):
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "not a public"),
    ],
)
def test_forbidden_ranges(address, reason):
    assert reason in forbidden_reason(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address):
    assert forbidden_reason(ipaddress.ip_address(address)) is None
    assert check_addresses("example.org", [address], ImageLimits()) == address


@pytest.mark.parametrize("answer", ["10.0.0.7", "169.254.169.254", "fe80::1%eth0", "192.168.0.2"])
def test_resolver_answer_into_private_ranges_is_refused(answer, no_connections):
    loader = ImageLoader(resolver=resolver_answering(answer))
    with pytest.raises(BlockedAddress, match="refused"):
        loader.load("http://images.example.org/cat.png")
    assert no_connections == []


def test_one_bad_address_among_good_ones_is_refused(no_connections):
    loader = ImageLoader(resolver=resolver_answering("93.184.216.34", "10.0.0.1"))
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.1"):
        loader.load("https://images.example.org/cat.png")


def test_url_to_loopback_ip_is_refused(no_connections):
    with pytest.raises(BlockedAddress, match="loopback"):
        ImageLoader().load("http://127.0.0.1:8080/cat.png")
    assert no_connections == []


def test_url_to_localhost_is_refused(no_connections):
    with pytest.raises(BlockedAddress, match="loopback"):
        ImageLoader().load("http://localhost/cat.png")
    assert no_connections == []


def test_resolution_failure_is_a_fetch_error(no_connections):
    def fail(host, port):
        raise socket.gaierror("Name or service not known")

    with pytest.raises(ImageFetchError, match="cannot resolve"):
        ImageLoader(resolver=fail).load("http://nowhere.invalid/x.png")


def test_url_without_host_is_refused():
    with pytest.raises(UnsupportedImageSource):
        fetch_url("http:///x.png", ImageLimits())


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        routes = {
            "/cat.png": (200, {"Content-Type": "image/png"}, PNG_BYTES),
            "/hop": (302, {"Location": "/cat.png"}, b""),
            "/to-private": (302, {"Location": f"http://127.0.0.2:{port}/cat.png"}, b""),
            "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/missing": (404, {}, b""),
            "/huge": (200, {"Content-Length": str(50_000_000)}, b""),
        }
        if self.path == "/slow":
            time.sleep(1.5)
        status, headers, body = routes.get(self.path, (200, {}, PNG_BYTES))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            # The client may stop reading at its byte limit.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def allowed():
    """Loopback 127.0.0.1 only, the way an operator would allow an internal image service."""
    return ImageLimits(allowed_networks=("127.0.0.1/32",), fetch_timeout_s=1.0)


def test_allowed_network_fetches(server, allowed):
    assert ImageLoader(allowed).load(f"{server}/cat.png").size == (8, 8)


def test_redirect_followed_and_rechecked(server, allowed):
    assert ImageLoader(allowed).load(f"{server}/hop").size == (8, 8)


@pytest.mark.parametrize("route", ["/to-private", "/to-metadata"])
def test_redirect_into_forbidden_address_refused(server, allowed, route):
    with pytest.raises(BlockedAddress):
        ImageLoader(allowed).load(server + route)


def test_redirect_loop_stops(server, allowed):
    with pytest.raises(ImageFetchError, match="max_redirects"):
        ImageLoader(allowed).load(f"{server}/loop")


def test_http_error_status(server, allowed):
    with pytest.raises(ImageFetchError, match="404"):
        ImageLoader(allowed).load(f"{server}/missing")


def test_declared_length_over_byte_limit(server, allowed):
    with pytest.raises(ImageTooLarge, match="max_bytes"):
        ImageLoader(allowed).load(f"{server}/huge")


def test_streamed_body_over_byte_limit(server):
    limits = ImageLimits(allowed_networks=("127.0.0.1/32",), max_bytes=20)
    with pytest.raises(ImageTooLarge) as caught:
        ImageLoader(limits).load(f"{server}/cat.png")
    assert caught.value.limit == "max_bytes"


def test_fetch_timeout(server):
    limits = ImageLimits(allowed_networks=("127.0.0.1/32",), fetch_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ImageFetchTimeout) as caught:
        ImageLoader(limits).load(f"{server}/slow")
    assert caught.value.limit == "fetch_timeout_s"
    assert time.monotonic() - started < 1.2


def test_allow_private_addresses_opens_everything(server):
    assert ImageLoader(ImageLimits(allow_private_addresses=True)).load(f"{server}/cat.png")


def test_error_text_drops_object_reprs_and_addresses():
    from operators.exceptions import error_text

    error = OSError("cannot identify image file <_io.BytesIO object at 0x7f57759d3970>")
    assert error_text(error) == "cannot identify image file"
    assert error_text(ConnectionResetError()) == "ConnectionResetError"
    assert error_text(ValueError("first line\nsecond")) == "first line"
