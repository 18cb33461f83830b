"""The HTTP endpoint behind the unsubscribe links (Starlette, served by uvicorn).

GET on a link shows a page naming the address with one button; POST unsubscribes at once and
answers 200 — the RFC 8058 one-click POST (`List-Unsubscribe=One-Click`) that mail clients send
and the button's form are the same request. The token in the link names the reader by id and the
digest's date, signed (see `mail.tokens`): no URL carries the address, so the access log records
none. A link that was tampered with, made for another purpose or signed with another key gets 400
and changes nothing; the old links with the address in them work until their digests are older
than the window.

The handlers are plain functions, which Starlette runs in a thread pool: a database busy with a
big run's writes never stalls the event loop. A write that finds the database locked is tried
again until `patience` runs out, and only then answered 503 with Retry-After, so the client asks
again: an unsubscribe is never lost.
"""

from __future__ import annotations

import time
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .mail.tokens import unsubscribed_by
from .store.db import UNSUBSCRIBED, Database
from .subscribers.sync import unsubscribe

if TYPE_CHECKING:
    import uvicorn

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;
line-height:1.5}}button{{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}}
button:focus{{outline:3px solid #f0b429}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""

# Every answer: not cached (it names an address), not sniffed, no referrer leaking the token, and
# never in a frame (a page could overlay the button and have it clicked: clickjacking).
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]
PATIENCE = 20.0  # seconds a write waits for a locked database before answering 503
RETRY_AFTER = 30  # seconds a client is asked to wait after a 503


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status)


class _SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, add_headers if scope["type"] == "http" else send)


def _locked(error: OperationalError) -> bool:
    text = str(error.orig).lower()
    return "locked" in text or "busy" in text


class _Unsubscribe:
    """The unsubscribe link: GET asks to confirm, POST (the form, or a client's RFC 8058
    one-click request) unsubscribes. A database busy for longer than `patience` is a 503."""

    def __init__(self, db: Database, settings: Settings, patience: float):
        self.db = db
        self.settings = settings
        self.patience = patience

    def handle(self, request: Request) -> Response:
        try:
            reader = self.reader(request.path_params["token"])
            if reader is None:
                return _invalid()
            address, status = reader
            if request.method == "POST":
                return self.one_click(address)
            return self.confirm(address, status == UNSUBSCRIBED)
        except OperationalError as error:
            if _locked(error):
                return _busy()
            raise

    def reader(self, token: str) -> tuple[str, str] | None:
        """The address the link's token names and its status, or None."""
        today = datetime.now(self.settings.tz).date()
        with self.db.session() as session:
            subscriber = unsubscribed_by(session, self.settings.signing_key, token, today)
            return (subscriber.email, subscriber.status) if subscriber is not None else None

    def confirm(self, address: str, unsubscribed: bool) -> Response:
        if unsubscribed:
            return _page("Unsubscribed", f"<p>{escape(address)} is unsubscribed already.</p>")
        return _page(
            "Unsubscribe?",
            f"<p>Stop sending the trending papers digest to <strong>{escape(address)}</strong>?</p>"
            f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">Unsubscribe</button></form>',
        )

    def one_click(self, address: str) -> Response:
        deadline = time.monotonic() + self.patience
        while True:
            try:
                unsubscribe(self.db, address)
                break
            except OperationalError as error:
                if not _locked(error) or time.monotonic() >= deadline:
                    raise  # answered with 503 when the lock outlasted our patience
                time.sleep(0.2)
        return _page(
            "Unsubscribed",
            f"<p>{escape(address)} will get no more digests. You can close this page.</p>",
        )


def create_app(db: Database, settings: Settings, patience: float = PATIENCE) -> Starlette:
    def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", health),
            Route(
                "/unsubscribe/{token}",
                _Unsubscribe(db, settings, patience).handle,
                methods=["GET", "POST"],
            ),
        ],
        middleware=[Middleware(_SecurityHeaders)],
    )


def _busy() -> Response:
    response = _page(
        "Please try again",
        "<p>We could not record this just now. Please try again in a minute.</p>",
        status=503,
    )
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def _invalid() -> HTMLResponse:
    return _page(
        "Link not valid",
        "<p>This unsubscribe link is not valid. Please use the link from your latest digest.</p>",
        status=400,
    )


def server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """The unsubscribe endpoint as a uvicorn server, not yet running."""
    import uvicorn

    # Short waits for a lock, tried again until PATIENCE: a thread is never held for long.
    db = Database(settings.database_url, busy_timeout=2.0)
    return uvicorn.Server(
        uvicorn.Config(create_app(db, settings), host=host, port=port, log_level="info")
    )


def serve(settings: Settings, host: str, port: int) -> None:
    server(settings, host, port).run()
