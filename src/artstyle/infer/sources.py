"""What ``artstyle predict`` was asked to classify: files, folders (recursive), globs, ``-`` for
a list on stdin, and http(s) URLs, which are fetched here with a timeout, a size cap and a
content-type check. Standard library only, so the predictor stays small."""

from __future__ import annotations

import glob
import os
import socket
import sys
import urllib.error
import urllib.request
from typing import Iterable, Iterator, TextIO

from .. import __version__
from ..errors import ImageLoadError
from ..images import is_image_file

URL_SCHEMES = ("http://", "https://")
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_DOWNLOAD = 20 * 1024 * 1024
# Servers that do not know better label images as octet-stream; the decoder still checks them.
ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


def is_url(value) -> bool:
    return isinstance(value, str) and value.lower().startswith(URL_SCHEMES)


def images_in_folder(folder: str) -> list[str]:
    """Every image file below ``folder``, sorted so that runs are reproducible."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .git, .cache, thumbnails
        found += [os.path.join(root, f) for f in files if is_image_file(f)]
    return sorted(found)


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
        elif is_image_file(match):
            expanded.append(match)
    return expanded


def read_list(stream: TextIO) -> Iterator[str]:
    """Non-blank lines of a list of paths or URLs (``-`` on the command line)."""
    for line in stream:
        line = line.strip()
        if line:
            yield line


def expand_inputs(args: Iterable[str], stdin: TextIO | None = None) -> list[str]:
    """Paths and URLs in the order given; folders expand recursively to their image files."""
    inputs = []
    for arg in args:
        if arg == "-":
            for line in read_list(stdin or sys.stdin):
                inputs += expand_one(line)
        else:
            inputs += expand_one(arg)
    return inputs


def fetch_url(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_DOWNLOAD) -> bytes:
    """The body of an http(s) URL that claims to be an image, at most ``max_bytes`` long.
    Every failure is an ``ImageLoadError(url, reason)`` with a one-line reason."""
    request = urllib.request.Request(url, headers={"User-Agent": f"artstyle/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            check_content_type(url, response.headers.get_content_type(), response.headers.get("Content-Type"))
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ImageLoadError(url, f"too large: {int(declared):,} bytes (limit {max_bytes:,})")
            # Read one byte past the cap: a server may omit or understate Content-Length.
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ImageLoadError(url, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise ImageLoadError(url, f"timed out after {timeout:g}s") from None
        raise ImageLoadError(url, f"cannot reach: {getattr(reason, 'strerror', None) or reason}") from None
    except (socket.timeout, TimeoutError):
        raise ImageLoadError(url, f"timed out after {timeout:g}s") from None
    except (OSError, ValueError) as exc:  # connection reset mid-body, malformed URL
        raise ImageLoadError(url, f"download failed: {exc}") from None
    if len(body) > max_bytes:
        raise ImageLoadError(url, f"too large: over {max_bytes:,} bytes (limit)")
    return body


def check_content_type(url: str, content_type: str, raw_header: str | None) -> None:
    # get_content_type() answers text/plain when the header is missing; only refuse a type
    # the server actually stated.
    if raw_header and not content_type.startswith(ACCEPTED_CONTENT_TYPES):
        raise ImageLoadError(url, f"not an image (server sent {content_type})")
