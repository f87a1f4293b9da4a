"""The server's limits and options, in one place: read by the app, the uvicorn runner and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

# uvicorn's worker processes are started afresh: they get the settings from the environment,
# all but the API key, which other users could read there (/proc/PID/environ of a worker, `ps e`):
# the environment names a file that only this user can read instead.
ENV_VAR = "ARTSTYLE_SERVE_SETTINGS"
KEY_FILE = "api_key_file"
MB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    model: str | None = None  # exported .onnx (with its .json card); None: the shipped model
    precision: str = "auto"  # "fp32" / "int8": that version of the model (see artstyle.load)
    max_upload_mb: float = 10.0  # the whole request body, multipart framing included
    max_images: int = 32  # files in one multipart request
    # A 50 MP PNG decodes to 150 MB; with one decode per core that bounds decode memory.
    max_megapixels: float = 50.0
    request_timeout: float = 30.0  # seconds from request head to response: slow bodies get 408
    idle_timeout: float = 5.0  # seconds a connection may sit idle or spend sending a request head
    max_batch: int = 4  # images per model call when concurrent requests are batched; 1: no batching
    threads: int | None = None  # decode threads and ONNX Runtime threads (default: cores / workers)
    streams: int | None = None  # batches in the model at once, sharing the threads (default: one per thread, up to 4)
    max_connections: int = 128  # beyond this uvicorn answers 503 rather than queueing without bound
    # ?explain=true requests admitted at once (running or waiting for the explain thread); more get 503.
    max_explain_queue: int = 4
    api_key: str | None = field(default=None, repr=False)  # Bearer token for /v1/*; None: no auth

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    def limits(self) -> dict:
        """What a client may send, as /healthz publishes it (the page splits uploads by it)."""
        return {"max_upload_bytes": self.max_upload_bytes, "max_images": self.max_images,
                "max_pixels": self.max_pixels, "request_timeout_s": self.request_timeout}

    @contextlib.contextmanager
    def in_env(self) -> Iterator[None]:
        """These settings in the environment for worker processes while the block runs; the
        API key, if any, in a 0600 file of a private (0700) temporary folder, removed afterwards."""
        fields = asdict(self)
        key = fields.pop("api_key")
        with tempfile.TemporaryDirectory(prefix="artstyle-serve-") as folder:
            if key:
                fields[KEY_FILE] = write_private(Path(folder) / "api_key", key)
            os.environ[ENV_VAR] = json.dumps(fields)
            try:
                yield
            finally:
                os.environ.pop(ENV_VAR, None)

    @classmethod
    def from_env(cls) -> "ServeSettings":
        raw = os.environ.get(ENV_VAR)
        if not raw:
            return cls()
        fields = json.loads(raw)
        key_file = fields.pop(KEY_FILE, None)
        if key_file:
            fields["api_key"] = Path(key_file).read_text(encoding="utf-8")
        return cls(**fields)


def write_private(path: Path, text: str) -> str:
    """``text`` in a new file that only this user can read (created so, never widened later)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)
