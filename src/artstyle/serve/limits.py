"""Protection against oversized, slow and stalled clients, below the routes.

- ``DeclaredSizeLimit``: a body whose Content-Length is over the cap gets the JSON 413 at once,
  unread. FastAPI's own ``max_body_size`` (set on the routes) counts the bytes of bodies that
  declare no length, or understate it, as they arrive; it answers an over-declared body only
  with a plain-text 413, hence this check in front of it.
- ``RequestTimeout``: a deadline from request head to response; a client that stops sending
  its body gets 408 and its slot back.
- ``HeadTimeoutH11Protocol``: uvicorn has no deadline for the request head (a client that
  connects and sends nothing, or half a request line, holds its connection forever; uvicorn
  issue #157), so its keep-alive timer is armed from the moment a connection opens and is
  disarmed only by a complete request head, not by any byte.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


def error_body(status: int, detail: str, code: str | None = None) -> dict:
    """Every error this server sends has this shape: a machine-readable code and a sentence."""
    return {"error": code or ERROR_CODES.get(status, f"http_{status}"), "detail": detail}


ERROR_CODES = {
    400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "unprocessable_image",
    500: "internal_error", 503: "unavailable",
}


class DeclaredSizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = declared_length(scope) if scope["type"] == "http" else None
        if declared is None or declared <= self.max_bytes:
            await self.app(scope, receive, send)
            return
        detail = too_large_detail(self.max_bytes, declared)
        await JSONResponse(error_body(413, detail), status_code=413)(scope, receive, send)


def declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value and value.isdigit() else None


def too_large_detail(limit: int, declared: int | None = None) -> str:
    size = f" ({declared:,} bytes)" if declared is not None else ""
    return f"request body too large{size}: the limit is {limit:,} bytes ({limit / 2**20:g} MB)"


class RequestTimeout:
    def __init__(self, app: ASGIApp, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"response_started": False, "body_complete": False}

        async def tracking_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                state["body_complete"] = True
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["response_started"] = True
            await send(message)

        try:
            async with asyncio.timeout(self.seconds) as deadline:
                await self.app(scope, tracking_receive, tracking_send)
        except TimeoutError:
            if not deadline.expired() or state["response_started"]:
                raise  # not our deadline, or too late to answer: uvicorn closes the connection
            await self.timeout_response(state["body_complete"])(scope, receive, send)

    def timeout_response(self, body_complete: bool) -> JSONResponse:
        if body_complete:  # the request arrived but the server was too slow with it
            return JSONResponse(error_body(503, f"the server did not answer within {self.seconds:g} s; retry later"),
                                status_code=503, headers={"Retry-After": "1"})
        return JSONResponse(error_body(408, f"the request body did not arrive within {self.seconds:g} s"),
                            status_code=408, headers={"Connection": "close"})


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol where ``timeout_keep_alive`` also bounds the wait for a request
    head: from connection open, and from the end of each response, as uvicorn already does."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        # uvicorn disarms the timer on any byte; here only a complete head does (handle_events
        # disarms it on h11.Request), so a client trickling bytes is cut off too.
        self.conn.receive_data(data)
        self.handle_events()
