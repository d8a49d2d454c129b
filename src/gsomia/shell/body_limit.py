"""A bound on every request body, before any of it is read (pure ASGI middleware).

A handler that reads its body (``await request.body()``) buffers all of it; without a bound
an unauthenticated client decides how much memory the node spends. In front of every route,
:class:`BodyLimit` asks the route's limit (:func:`gsomia.core.limits`) and

- refuses a ``Content-Length`` over it with 413 before reading a byte (nor asking for the
  body with ``100 Continue``);
- counts the bytes of a body streamed without one (chunked) as the handler reads them, and
  answers 413 as soon as they pass the limit: the handler never sees more than the limit
  plus one chunk of the server's.

It is pure ASGI (not ``BaseHTTPMiddleware``, which would run the app in a task of its own
and buffer streamed responses) and sits inside Starlette's error middleware, so the 413 it
answers is never turned into a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from gsomia.core.taxii import error_body

__all__ = ["BodyLimit", "Limit", "too_large"]

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


class Limit:
    """A route's bound: at most ``size`` bytes of body, refused in ``media``."""

    __slots__ = ("media", "size")

    def __init__(self, size: int, media: str = "application/json") -> None:
        self.size = size
        self.media = media


class _TooLarge(Exception):
    """Raised from ``receive`` inside the app once a streamed body passes its limit."""


def too_large(limit: Limit) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the 413 answer (TAXII error message shape)."""
    body = orjson.dumps(error_body(
        "Request too large", 413,
        f"This endpoint takes at most {limit.size} bytes of request body",
        {"max_content_length": limit.size}))
    return 413, [(b"content-type", limit.media.encode()),
                 (b"content-length", str(len(body)).encode()),
                 (b"connection", b"close")], body


class BodyLimit:
    """ASGI middleware: ``limit_of(method, path)`` names each request's bound."""

    def __init__(self, app: Any, limit_of: Callable[[str, str], Limit]) -> None:
        self.app = app
        self.limit_of = limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(str(scope.get("method", "")), str(scope.get("path", "")))
        declared = _content_length(scope)
        if declared is not None and declared > limit.size:
            await _answer(send, limit)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit.size:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:  # the handler answered before reading it all: nothing to add
                return
            await _answer(send, limit)


def _content_length(scope: Scope) -> int | None:
    """The declared length; an unreadable one counts as too large (it is not HTTP)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else 2**63
    return None


async def _answer(send: Send, limit: Limit) -> None:
    status, headers, body = too_large(limit)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
