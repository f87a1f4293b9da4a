"""URL inputs against real local HTTP servers: the address checks on every hop (SSRF), the
redirect cap, the deadline for the whole download and the size cap."""

from __future__ import annotations

import http.server
import ipaddress
import re
import socket
import threading
import time

import pytest

from artstyle.errors import ImageLoadError
from artstyle.infer.sources import fetch_url

IMAGE = b"\xff\xd8\xff\xe0" + b"\0" * 2000  # what the server calls a JPEG (the decoder is not involved here)


class Server:
    """An HTTP server in a thread on a loopback address, with the routes these tests need:
    /img.jpg, /redirect/N (N hops, then the image), /to?url=U (one redirect to U),
    /trickle-body and /trickle-headers (a byte every 0.1 s), /chunked (no Content-Length)."""

    def __init__(self, host: str = "127.0.0.1"):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                path, _, query = self.path.partition("?")
                if path == "/img.jpg":
                    return self.reply(IMAGE)
                if path.startswith("/redirect/"):
                    hops = int(path.rsplit("/", 1)[1])
                    return self.redirect(f"/redirect/{hops - 1}" if hops > 1 else "/img.jpg")
                if path == "/to":
                    return self.redirect(query.removeprefix("url="))
                if path == "/trickle-body":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    return self.trickle(b"\xff" * 1000)
                if path == "/trickle-headers":
                    return self.trickle(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Slow: " + b"a" * 1000)
                if path == "/chunked":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for _ in range(10):
                            self.wfile.write(b"400\r\n" + b"\xff" * 1024 + b"\r\n")
                        return self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        return None  # the client stopped at its size cap: that is the point
                self.send_error(404)

            def reply(self, body: bytes):
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client refused the body (size cap): that is the point

            def redirect(self, location: str):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def trickle(self, data: bytes):
                try:
                    for i in range(len(data)):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    pass  # the client gave up: that is the point

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.server.server_port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def other_server():
    """A second server on another loopback address, to stand for a host the user allows."""
    s = Server("127.0.0.2")
    yield s
    s.close()


def test_loopback_is_refused_by_default_and_fetched_when_allowed(server):
    with pytest.raises(ImageLoadError, match=r"refused: 127\.0\.0\.1 is a loopback address.*--allow-private-urls"):
        fetch_url(server.url("/img.jpg"))
    # The check is on the resolved address, not on how the URL spells the host.
    with pytest.raises(ImageLoadError, match=r"refused: localhost \(127\.0\.0\.1\) is a loopback address"):
        fetch_url(server.url("/img.jpg", host="localhost"))
    assert fetch_url(server.url("/img.jpg"), allow_private=True) == IMAGE


@pytest.mark.parametrize("address, kind", [
    ("10.1.2.3", "private"), ("192.168.0.10", "private"), ("169.254.169.254", "link-local"),
    ("224.0.0.1", "multicast"), ("[::1]", "loopback"), ("[::ffff:127.0.0.1]", "loopback"), ("0.0.0.0", "unspecified"),
])
def test_every_kind_of_non_public_address_is_refused_before_connecting(address, kind):
    # Refused by the check itself: none of these is contacted (the cloud metadata address among them).
    with pytest.raises(ImageLoadError, match=f"is a {kind} address"):
        fetch_url(f"http://{address}:9/x.jpg", timeout=2)


def test_a_redirect_to_loopback_is_refused_on_that_hop(server, other_server):
    allowed = ["127.0.0.2/32"]  # the first server only, as a user would allow one internal image host
    assert fetch_url(other_server.url("/img.jpg"), allow_private=allowed) == IMAGE
    bounce = other_server.url("/to?url=" + server.url("/img.jpg"))
    with pytest.raises(ImageLoadError, match=r"refused: 127\.0\.0\.1 is a loopback address"):
        fetch_url(bounce, allow_private=allowed)
    assert fetch_url(bounce, allow_private=True) == IMAGE


def test_redirects_are_followed_up_to_the_cap(server):
    assert fetch_url(server.url("/redirect/5"), allow_private=True) == IMAGE
    with pytest.raises(ImageLoadError, match=r"too many redirects \(more than 5\)"):
        fetch_url(server.url("/redirect/6"), allow_private=True)
    with pytest.raises(ImageLoadError, match="not an http"):
        fetch_url(server.url("/to?url=file:///etc/passwd"), allow_private=True)


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_trickling_server_hits_the_deadline_for_the_whole_download(server, path):
    # A byte every 0.1 s never trips a per-read timeout; the whole download still ends at 1 s.
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"timed out after 1s"):
        fetch_url(server.url(path), timeout=1.0, allow_private=True)
    assert time.monotonic() - start < 2.0


def test_the_size_cap_counts_what_arrives_without_content_length(server):
    assert len(fetch_url(server.url("/chunked"), allow_private=True)) == 10 * 1024
    with pytest.raises(ImageLoadError, match="too large"):
        fetch_url(server.url("/chunked"), max_bytes=4000, allow_private=True)


@pytest.mark.parametrize("address, kind", [
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254, the cloud metadata address
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1 (stored inverted)
])
def test_ipv6_addresses_carrying_a_non_public_ipv4_are_refused(address, kind):
    with pytest.raises(ImageLoadError, match=rf"refused: {re.escape(address)} is a {kind} address"):
        fetch_url(f"http://[{address}]:9/x.jpg", timeout=2)


def test_the_address_policy_judges_the_carried_ipv4_and_lets_public_ones_through():
    from artstyle._addresses import blocked_reason, is_allowed

    def reason(address: str):
        return blocked_reason(ipaddress.ip_address(address))

    # 8.8.8.8 over 6to4, NAT64 (as DNS64 networks answer) and mapped: public, as 8.8.8.8 is.
    assert [reason(a) for a in ("2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8", "8.8.8.8")] == [None] * 4
    assert reason("2002:a01:203::1") == "private"  # 6to4 of 10.1.2.3
    # A network the user allows covers the IPv4 address an IPv6 one carries.
    assert is_allowed(ipaddress.ip_address("2002:a01:203::1"), ["10.1.2.0/24"])
    assert not is_allowed(ipaddress.ip_address("2002:a01:203::1"), ["10.9.0.0/16"])


def test_a_name_that_resolves_slowly_hits_the_deadline(monkeypatch):
    # The system resolver cannot be slowed down here; a resolver that answers after 30 s stands for it.
    real = socket.getaddrinfo

    def slow_getaddrinfo(host, *args, **kwargs):
        if host == "slow.example":
            time.sleep(30)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"timed out after 0\.5s"):
        fetch_url("http://slow.example/x.jpg", timeout=0.5)
    assert time.monotonic() - start < 1.5


def test_redirects_never_go_from_https_down_to_http():
    from artstyle.infer.sources import redirect_target

    url = "https://images.example/a.jpg"
    assert redirect_target(url, url, "/b.jpg") == "https://images.example/b.jpg"
    assert redirect_target(url, url, "https://cdn.example/b.jpg") == "https://cdn.example/b.jpg"
    for location in ("http://cdn.example/b.jpg", "HTTP://cdn.example/b.jpg", "http:/b.jpg"):
        with pytest.raises(ImageLoadError, match="refused: a redirect from https to http"):
            redirect_target(url, url, location)
    assert redirect_target("http://a.example/x", "http://a.example/x", "https://b.example/y") == "https://b.example/y"
