"""Running the app on uvicorn: one process, or ``workers`` processes sharing the socket."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .limits import HeadTimeoutH11Protocol
from .settings import ServeSettings


def run_server(settings: ServeSettings, *, host: str, port: int, workers: int = 1,
               log_level: str = "info", access_log: bool = True) -> None:
    options = dict(
        host=host, port=port, log_level=log_level, access_log=access_log,
        http=HeadTimeoutH11Protocol, timeout_keep_alive=settings.idle_timeout,
        limit_concurrency=settings.max_connections, timeout_graceful_shutdown=5,
    )
    if workers > 1:
        # Each worker is a fresh process that builds its own app (and model session) from this.
        with settings.in_env():
            uvicorn.run("artstyle.serve.app:app_from_env", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)
