"""A real aiosmtpd server on loopback whose handler can misbehave on purpose: answer 4xx or 5xx
at RCPT or DATA for chosen addresses, drop the connection mid-DATA, or be slow."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class FaultyHandler:
    delay: float = 0.0  # seconds to wait before answering DATA
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # address -> replies, in order
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)  # address -> times to drop mid-DATA
    always_rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply every time
    ehlo_reply: str | None = None  # refuse the EHLO (and HELO) name with this reply
    mail_reply: str | None = None  # refuse MAIL FROM with this reply
    size_limit: int | None = None  # refuse MAIL FROM with a larger SIZE=, as Postfix does (552)
    greeted: list[str] = field(default_factory=list)  # the names clients greeted with
    mail_options: list[list[str]] = field(default_factory=list)  # MAIL FROM's options, in order
    received: list[tuple[str, bytes]] = field(default_factory=list)
    senders: dict[str, str] = field(default_factory=dict)  # recipient -> envelope sender
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.greeted.append(hostname)
        if self.ehlo_reply:
            return [self.ehlo_reply]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        self.greeted.append(hostname)
        return self.ehlo_reply or f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        sizes = [int(o[5:]) for o in mail_options if o.upper().startswith("SIZE=")]
        if self.size_limit is not None and sizes and sizes[0] > self.size_limit:
            return "552 5.3.4 Message size exceeds fixed limit"
        self.mail_options.append(list(mail_options))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.always_rcpt:
            return self.always_rcpt[address]
        if self.rcpt_replies.get(address):
            return self.rcpt_replies[address].pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        (address,) = envelope.rcpt_tos
        if self.drops.get(address):
            self.drops[address] -= 1
            server.transport.close()
            return "250 never heard"
        if self.data_replies.get(address):
            return self.data_replies[address].pop(0)
        with self.lock:
            self.received.append((address, envelope.original_content or envelope.content))
            self.senders[address] = envelope.mail_from
        return "250 2.0.0 Ok: queued"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(address for address, _ in self.received)


class SmtpServer:
    def __init__(self, handler: FaultyHandler, **options):
        self.handler = handler
        self.port = free_port()
        self.controller = Controller(handler, hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def self_signed_context(folder: Path) -> ssl.SSLContext:
    """A server TLS context with a certificate made here and now by openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
