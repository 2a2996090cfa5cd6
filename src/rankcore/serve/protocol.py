"""The HTTP/1.1 connection of ``rankcore serve``: uvicorn's httptools protocol with guards.

uvicorn alone holds a silent new connection, or one that trickles its headers, forever, takes
headers of any size and answers malformed requests in plain text. :class:`GuardedProtocol`
closes a connection that sends nothing for ``idle_timeout`` seconds, answers 408 when the
headers take longer than ``header_timeout`` (from the request's first byte) and closes one whose
body takes longer than ``body_timeout``; it answers 431 when the request line and headers pass
``max_header_bytes``, 503 to connections beyond ``max_connections``, and gives its own 400s the
service's error shape. The limits travel on the uvicorn ``Config`` (attribute ``rankcore_limits``,
set by ``rankcore.serve.main``), so worker processes get them too.
"""
from __future__ import annotations

import uuid

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardedProtocol", "DEFAULT_LIMITS", "raw_error"]

#: Public-facing defaults (overridden by the serve settings of the same names).
DEFAULT_LIMITS = {"idle_timeout": 5.0, "header_timeout": 10.0, "body_timeout": 30.0,
                  "max_header_bytes": 32 << 10, "max_connections": 1000}

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Payload Too Large",
            431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def raw_error(status: int, name: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in the service's shape, closing the connection."""
    body = orjson.dumps({"__type": name, "message": message})
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nx-amzn-requestid: %s\r\n"
            b"x-amzn-errortype: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status], str(uuid.uuid4()).encode(), name.encode(), len(body)))
    return head + body


class _HeadersTooLarge(Exception):
    pass


class GuardedProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with timeouts, a header size limit and a connection cap."""

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        limits = dict(DEFAULT_LIMITS, **getattr(config, "rankcore_limits", {}))
        self.timeout_keep_alive = limits["idle_timeout"]
        self._limits = limits
        self._timer = None
        self._header_bytes = 0   # request line and headers parsed so far
        self._pending = 0        # bytes received since the last headers or message completed
        self._in_headers = False
        self._answered = False  # an error was written here: ignore the rest of the connection

    # ----------------------------------------------------------------- timers
    def _arm(self, seconds: float, handler) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _reject(self, status: int, name: str, message: str) -> None:
        self._disarm()
        if not self._answered and not self.transport.is_closing():
            self._answered = True
            self.transport.write(raw_error(status, name, message))
        self.transport.close()

    def _header_timeout(self) -> None:
        self._reject(408, "RequestTimeoutException",
                     f"The request headers were not received within {self._limits['header_timeout']:g} s")

    def _body_timeout(self) -> None:
        self._timer = None
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.response_complete = True  # the app's answer, if any, is dropped
            self._reject(408, "RequestTimeoutException",
                         f"The request body was not received within {self._limits['body_timeout']:g} s")
        else:
            self.transport.close()

    # ----------------------------------------------------------------- connection
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self._limits["max_connections"]:
            self._reject(503, "ServiceUnavailableException", "Too many open connections; try again later")
            return
        # a connection that never sends a byte is closed like an idle keep-alive connection
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        self._pending += len(data)
        super().data_received(data)
        # httptools buffers a header until it ends: count what arrived while headers are awaited
        if self._in_headers and self._pending > self._limits["max_header_bytes"] and not self._answered:
            self._header_bytes = self._pending
            self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if self._header_bytes > self._limits["max_header_bytes"]:
            self._reject(431, "RequestHeaderFieldsTooLargeException",
                         f"The request line and headers exceed {self._limits['max_header_bytes']} bytes")
        else:
            self._reject(400, "InvalidInputException", "Malformed HTTP request")

    # ----------------------------------------------------------------- parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._in_headers = True
        self._arm(self._limits["header_timeout"], self._header_timeout)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self._limits["max_header_bytes"]:
            raise _HeadersTooLarge()  # httptools stops parsing and reports an error: send_400_response

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers, self._pending = False, 0
        self._arm(self._limits["body_timeout"], self._body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._pending = 0
        self._disarm()
        super().on_message_complete()
