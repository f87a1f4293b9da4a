"""What ``artstyle predict`` was asked to classify: files, folders (recursive), globs, ``-`` for
a list on stdin, and http(s) URLs, which are fetched here with a deadline for the whole download,
a size cap, a content-type check, redirects followed by hand (at most 5, never from https to
http) and every hop's address checked (``artstyle._addresses``): no loopback, private,
link-local, multicast or reserved address, nor an IPv6 one that carries such an IPv4 address,
unless the user allows it, since services embed ``artstyle.load().predict(url)`` with URLs from
their users.
Standard library only, so the predictor stays small."""

from __future__ import annotations

import contextlib
import glob
import http.client
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from typing import Iterable, Iterator, TextIO

from .. import __version__
from .._addresses import refusal, resolve
from ..errors import ImageLoadError
from ..images import is_image_file, walk_images

URL_SCHEMES = ("http://", "https://")
# What folders and globs contribute besides images (a video is then recognised by its content).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov"})
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_DOWNLOAD = 20 * 1024 * 1024
MAX_REDIRECTS = 5
REDIRECT_CODES = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024
# Servers that do not know better label images as octet-stream; the decoder still checks them.
ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


def is_url(value) -> bool:
    return isinstance(value, str) and value.lower().startswith(URL_SCHEMES)


def images_in_folder(folder: str) -> list[str]:
    """Every image and video file below ``folder`` (folder links followed, as the scan does),
    sorted so that runs are reproducible."""
    return sorted(walk_images(folder, accept=is_media_file))


def is_video_file(path) -> bool:
    """A visible file named as a video."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def is_media_file(path) -> bool:
    return is_image_file(path) or is_video_file(path)


def expand_one(arg: str) -> list[str]:
    """One argument -> the inputs it stands for. A path that does not exist and matches no glob
    is returned as is, so that it is reported as a failed input rather than silently dropped."""
    if is_url(arg):
        return [arg]
    if os.path.isdir(arg):
        return images_in_folder(arg)
    if os.path.lexists(arg) or not glob.has_magic(arg):
        return [arg]
    matches = sorted(glob.glob(arg, recursive=True))
    if not matches:
        return [arg]
    expanded = []
    for match in matches:
        if os.path.isdir(match):
            expanded += images_in_folder(match)
        elif is_media_file(match):
            expanded.append(match)
    return expanded


def read_list(stream: TextIO) -> Iterator[str]:
    """Non-blank lines of a list of paths or URLs (``-`` on the command line)."""
    for line in stream:
        line = line.strip()
        if line:
            yield line


def expand_inputs(args: Iterable[str], stdin: TextIO | None = None) -> list[str]:
    """Paths and URLs in the order given; folders expand recursively to their image and video files."""
    inputs = []
    for arg in args:
        if arg == "-":
            for line in read_list(stdin or sys.stdin):
                inputs += expand_one(line)
        else:
            inputs += expand_one(arg)
    return inputs


class Deadline:
    """One clock for a whole download. A socket timeout only bounds each read, so a server that
    trickles a byte at a time could hold a request for ever; at the deadline a timer shuts the
    connection down, which ends any read in progress."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self.connection: http.client.HTTPConnection | None = None
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
        return max(left, 0.0)

    def expire(self) -> None:
        self.expired = True
        sock = self.connection.sock if self.connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()


def resolve_public(url: str, host: str, port: int, allow_private: bool | Iterable[str], deadline: Deadline) -> str:
    """The address to connect to, after checking every address the name resolves to (within
    the download's deadline): an image URL must not reach this machine or its network (SSRF)
    unless the user allows it."""
    try:
        addresses = resolve(host, port, timeout=deadline.remaining())
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageLoadError(url, f"cannot reach: {getattr(exc, 'strerror', None) or exc}") from None
    for ip in addresses:
        reason = refusal(ip, allow_private)
        if reason:
            shown = host if host.strip("[]") == str(ip) else f"{host} ({ip})"
            raise ImageLoadError(url, f"refused: {shown} is a {reason} address; "
                                      "pass --allow-private-urls (allow_private_urls=True) to fetch it")
    return str(addresses[0])


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever the name resolves to next
    (a second DNS answer could point elsewhere)."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address, self.tls = address, ssl.create_default_context()

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)  # certificate checked for the name


def fetch_url(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_DOWNLOAD,
              allow_private: bool | Iterable[str] = False, max_redirects: int = MAX_REDIRECTS) -> bytes:
    """The body of an http(s) URL that claims to be an image, at most ``max_bytes`` long, within
    ``timeout`` seconds for the whole download (redirects included). Loopback, private,
    link-local, multicast and reserved addresses are refused on every hop unless ``allow_private``
    (True, or a list of networks to allow).
    Every failure is an ``ImageLoadError(url, reason)`` with a one-line reason."""
    deadline = Deadline(timeout)
    try:
        with deadline:
            return download(url, deadline, max_bytes, allow_private, max_redirects)
    except ImageLoadError:
        raise
    except (socket.timeout, TimeoutError):
        raise ImageLoadError(url, f"timed out after {timeout:g}s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if deadline.expired:
            raise ImageLoadError(url, f"timed out after {timeout:g}s (whole download)") from None
        raise ImageLoadError(url, f"download failed: {exc}") from None


def open_response(url: str, current: str, deadline: Deadline, allow_private) -> http.client.HTTPResponse:
    """One request to ``current`` (a hop of ``url``), to an address checked before connecting."""
    parts = urllib.parse.urlsplit(current)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageLoadError(url, f"refused: not an http(s) URL ({current})")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve_public(url, parts.hostname, port, allow_private, deadline)
    kind = PinnedHTTPSConnection if parts.scheme == "https" else PinnedHTTPConnection
    connection = kind(parts.hostname, port, address, timeout=max(deadline.remaining(), 0.001))
    deadline.connection = connection
    try:
        connection.connect()
    except (socket.timeout, TimeoutError):
        raise
    except OSError as exc:  # refused, unreachable, TLS failure
        raise ImageLoadError(url, f"cannot reach: {exc.strerror or exc}") from None
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    connection.request("GET", target, headers={"User-Agent": f"artstyle/{__version__}", "Accept": "image/*"})
    return connection.getresponse()


def download(url: str, deadline: Deadline, max_bytes: int, allow_private, max_redirects: int) -> bytes:
    current = url
    for _ in range(max_redirects + 1):
        response = open_response(url, current, deadline, allow_private)
        try:
            location = response.getheader("Location")
            if response.status in REDIRECT_CODES and location:
                current = redirect_target(url, current, location)  # its address is checked on the next hop
                continue
            if response.status >= 400:
                raise ImageLoadError(url, f"HTTP {response.status} {response.reason}")
            check_content_type(url, response.headers.get_content_type(), response.headers.get("Content-Type"))
            return read_body(url, response, deadline, max_bytes)
        finally:
            response.close()
            deadline.connection.close()
    raise ImageLoadError(url, f"too many redirects (more than {max_redirects})")


def redirect_target(url: str, current: str, location: str) -> str:
    """Where a redirect from ``current`` leads; never from https down to plain http, where the
    request and the image could be read or changed on the way."""
    target = urllib.parse.urljoin(current, location)
    scheme = urllib.parse.urlsplit(target).scheme
    if urllib.parse.urlsplit(current).scheme == "https" and scheme != "https":
        raise ImageLoadError(url, f"refused: a redirect from https to {scheme or 'no scheme'} ({target})")
    return target


def read_body(url: str, response: http.client.HTTPResponse, deadline: Deadline, max_bytes: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ImageLoadError(url, f"too large: {int(declared):,} bytes (limit {max_bytes:,})")
    chunks, size = [], 0
    while True:
        if deadline.remaining() <= 0:
            raise TimeoutError
        # read1: at most one read from the socket, so the deadline is checked between reads.
        chunk = response.read1(min(CHUNK, max_bytes + 1 - size))
        if deadline.expired:
            raise TimeoutError
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        # Counted as it arrives: a server may omit or understate Content-Length.
        if size > max_bytes:
            raise ImageLoadError(url, f"too large: over {max_bytes:,} bytes (limit)")
    return b"".join(chunks)


def check_content_type(url: str, content_type: str, raw_header: str | None) -> None:
    # get_content_type() answers text/plain when the header is missing; only refuse a type
    # the server actually stated.
    if raw_header and not content_type.startswith(ACCEPTED_CONTENT_TYPES):
        raise ImageLoadError(url, f"not an image (server sent {content_type})")
