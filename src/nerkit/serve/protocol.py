"""uvicorn's h11 protocol with a header timeout: uvicorn times idle keep-alive connections, but not a
client that connects and then sends its request line and headers slowly or never (slowloris), so such
sockets would stay open until the file descriptors run out."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 43\r\n"
                    b"connection: close\r\n\r\nthe request headers did not arrive in time\n")


class GuardedH11Protocol(H11Protocol):
    """Closes a connection whose request line and headers have not all arrived `header_timeout_s` after it
    opened or after its previous response ended (a 408 first when some bytes came). The body is timed by
    the app's guard middleware; an idle keep-alive connection by uvicorn's keep-alive timeout."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._got_bytes = False

    def _arm(self) -> None:
        self._disarm()
        self._got_bytes = False
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._waiting_for_headers():
            return
        if self._got_bytes:
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._got_bytes = self._got_bytes or bool(data)
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm()  # a request is in its cycle: the headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._waiting_for_headers():
            self._arm()  # the next request on this connection gets the same time for its headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
