"""DATA for the messages this package makes, switched on by `SmtpSender` for its own connections.

aiosmtplib prepares every message for DATA with two regular-expression passes over it (line ends
made CRLF, leading periods doubled): about 0.6 ms for a 27 KB digest, as much as all the rest of
its work, in the one process that keeps the SMTP connections busy. Our messages have CRLF line
ends throughout already, so `payload` finds that out with a C-speed count and doubles the
periods with one `bytes.replace`; anything else goes the library's own way. The library's
modules are left as they are: `switch_on` replaces the DATA method of one connection's protocol
object, and only for an aiosmtplib whose DATA it was written against (5.x). The test suite
checks `payload` against the library's own functions on the same bytes.
"""

from __future__ import annotations

from importlib.metadata import version
from types import MethodType

import aiosmtplib
from aiosmtplib.errors import SMTPDataError, SMTPServerDisconnected
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus

COMPATIBLE = version("aiosmtplib").split(".")[0] == "5"


def payload(message: bytes) -> bytes | None:
    """What DATA sends for `message` (the library's normalising and period doubling, then the
    final "."), or None when a line end is not CRLF (the library's own path then)."""
    pairs = message.count(b"\r\n")
    if message.count(b"\r") != pairs or message.count(b"\n") != pairs:
        return None
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    head = b"." if message.startswith(b".") else b""
    return head + message.replace(b"\n.", b"\n..") + b".\r\n"


async def _execute_data_command(
    self: SMTPProtocol, message: bytes, timeout: float | None = None
) -> SMTPResponse:
    """aiosmtplib 5's `SMTPProtocol.execute_data_command`, with `payload` for its preparation."""
    prepared = payload(message)
    if prepared is None:
        return await SMTPProtocol.execute_data_command(self, message, timeout=timeout)
    if self._command_lock is None:
        raise SMTPServerDisconnected("Server not connected")
    async with self._command_lock:
        self._response_pending = True
        self.write(b"DATA\r\n")
        start = await self.read_response(timeout=timeout)
        if start.code != SMTPStatus.start_input:
            raise SMTPDataError(start.code, start.message)
        self._response_pending = True
        self.write(prepared)
        response = await self.read_response(timeout=timeout)
        if response.code != SMTPStatus.completed:
            raise SMTPDataError(response.code, response.message)
    return response


def switch_on(client: aiosmtplib.SMTP) -> bool:
    """Use `payload` for DATA on this connection (when this aiosmtplib is one it knows)."""
    protocol = client.protocol
    if not COMPATIBLE or protocol is None or not hasattr(protocol, "_response_pending"):
        return False
    protocol.execute_data_command = MethodType(_execute_data_command, protocol)  # type: ignore[method-assign]
    return True
