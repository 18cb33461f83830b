"""The HTTP endpoint behind a digest's links (Starlette, served by uvicorn).

- `/unsubscribe/<token>`: GET shows a page naming the address with one button; POST unsubscribes
  at once and answers 200 — the RFC 8058 one-click POST (`List-Unsubscribe=One-Click`) that mail
  clients send and the button's form are the same request.
- `/more/<token>`, `/less/<token>`: a paper's feedback links. GET shows the paper and one button
  and changes nothing (link scanners open every link in a message); the button's POST records it.
- `/digest/<token>`: the digest as a web page; `/feed/<token>.atom`: the reader's Atom feed.

A token names the reader by id and the digest's date (a feedback token also the paper), signed
for its purpose (see `mail.tokens`): no URL carries the address, so the access log records none.
A link that was tampered with, made for another purpose or signed with another key gets 400 and
changes nothing; the old unsubscribe links with the address in them work until their digests are
older than the window.

The handlers are plain functions, which Starlette runs in a thread pool: a database busy with a
big run's writes never stalls the event loop. A write that finds the database locked is tried
again until `patience` runs out, and only then answered 503 with Retry-After, so the client asks
again: an unsubscribe or a click is never lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from html import escape
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .delivery.workers import digest_content
from .digests.compose import digest_for_page, feed_papers
from .mail.feed import atom_feed
from .mail.mime import list_name
from .mail.render import ReaderLinks, Renderer
from .mail.tokens import (
    FEED,
    SHARE,
    VIEW,
    read_paper_token,
    read_reader_token,
    scheduled_time,
    share_url,
    unsubscribed_by,
)
from .store.db import LESS, MORE, UNSUBSCRIBED, Database, Paper
from .store.feedback import record_feedback, verdict_on
from .store.subscribers import subscriber_by_id
from .subscribers.sync import unsubscribe

T = TypeVar("T")

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


class _Handler:
    """What every link's handler shares: the store, the settings, today's date, and writes tried
    again while the database is locked, until `patience` runs out (then a 503)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        patience: float,
        today: Callable[[], date] | None = None,
    ):
        self.db = db
        self.settings = settings
        self.patience = patience
        self._today = today

    def today(self) -> date:
        return self._today() if self._today else datetime.now(self.settings.tz).date()

    def handle(self, request: Request) -> Response:
        try:
            return self.answer(request)
        except OperationalError as error:
            if _locked(error):
                return _busy()
            raise

    def answer(self, request: Request) -> Response:
        raise NotImplementedError

    def write(self, change: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.patience
        while True:
            try:
                return change()
            except OperationalError as error:
                if not _locked(error) or time.monotonic() >= deadline:
                    raise  # answered with 503 when the lock outlasted our patience
                time.sleep(0.2)


class _Unsubscribe(_Handler):
    """The unsubscribe link: GET asks to confirm, POST (the form, or a client's RFC 8058
    one-click request) unsubscribes."""

    def answer(self, request: Request) -> Response:
        reader = self.reader(request.path_params["token"])
        if reader is None:
            return _invalid("unsubscribe")
        address, status = reader
        if request.method == "POST":
            self.write(lambda: unsubscribe(self.db, address))
            return _page(
                "Unsubscribed",
                f"<p>{escape(address)} will get no more digests. You can close this page.</p>",
            )
        return self.confirm(address, status == UNSUBSCRIBED)

    def reader(self, token: str) -> tuple[str, str] | None:
        """The address the link's token names and its status, or None."""
        with self.db.session() as session:
            subscriber = unsubscribed_by(session, self.settings.signing_key, token, self.today())
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


FEEDBACK_WORDS = {MORE: "More like this", LESS: "Fewer like this"}


class _Feedback(_Handler):
    """A paper's "More like this" (`verdict` MORE) or "Fewer like this" (LESS) link. GET shows
    the paper and one button and changes nothing (link scanners open every link of a message);
    the button's POST records it. The other verdict, later, replaces this one."""

    def __init__(self, db: Database, settings: Settings, patience: float, verdict: str):
        super().__init__(db, settings, patience)
        self.verdict = verdict

    def answer(self, request: Request) -> Response:
        named = read_paper_token(self.settings.signing_key, request.path_params["token"])
        if named is None:
            return _invalid("feedback")
        subscriber_id, day, paper_id = named
        with self.db.session() as session:
            paper = session.get(Paper, paper_id)
            subscriber = subscriber_by_id(session, subscriber_id)
            if paper is None or subscriber is None:
                return _invalid("feedback")
            title = " ".join(paper.title.split())
            said = verdict_on(session, subscriber_id, paper_id)
        words = FEEDBACK_WORDS[self.verdict]
        if request.method == "POST":

            def record() -> str:
                with self.db.session() as session:
                    return record_feedback(session, subscriber_id, paper_id, self.verdict, day)

            self.write(record)
            noted = f"Noted: {words.lower()} ‘{escape(title)}’. {_EFFECT[self.verdict]}"
            return _page("Thank you", f"<p>{noted}</p>")
        if said == self.verdict:
            noted = f"You said {words.lower()} ‘{escape(title)}’ already."
            return _page("Noted already", f"<p>{noted}</p>")
        return _page(
            f"{words}?",
            f"<p>{_QUESTION[self.verdict]} ‘<strong>{escape(title)}</strong>’?</p>"
            f'<form method="post"><button type="submit">{words}</button></form>',
        )


_QUESTION = {MORE: "Get more papers like", LESS: "Get fewer papers like"}
_EFFECT = {
    MORE: "Your next digests will rank papers close to it higher.",
    LESS: "Your next digests will rank papers close to it lower.",
}


class _DigestPage(_Handler):
    """A digest as a web page: with the reader's own buttons (feedback, unsubscribe, feed) when
    the token is the one of their email's "View in browser" link, without them when it is the
    page's link to pass on."""

    def answer(self, request: Request) -> Response:
        token, key = request.path_params["token"], self.settings.signing_key
        own = read_reader_token(key, VIEW, token)
        named = own or read_reader_token(key, SHARE, token)
        if named is None:
            return _invalid("digest")
        subscriber_id, day = named
        outgoing = digest_for_page(self.db, self.settings, subscriber_id, day)
        if outgoing is None:
            return _page("No digest", "<p>There is no digest for this link.</p>", status=404)
        content = replace(digest_content(self.settings, outgoing), web=True, own=own is not None)
        if own is not None:
            content = replace(content, share=share_url(self.settings, subscriber_id, day))
        else:
            # passed on: nothing of the reader's, their name and address included
            content = replace(content, name="", email="", links=ReaderLinks("", "", "", (), ()))
        return HTMLResponse(Renderer().render(content).html)


class _Feed(_Handler):
    """A reader's Atom feed: the papers of their digests of the last 30 days."""

    def answer(self, request: Request) -> Response:
        token = request.path_params["token"]
        named = read_reader_token(self.settings.signing_key, FEED, token)
        if named is None:
            return _invalid("feed")
        subscriber_id, _ = named
        with self.db.session() as session:
            subscriber = subscriber_by_id(session, subscriber_id)
            if subscriber is None:
                return _invalid("feed")
            topics = tuple(subscriber.topics)
        settings = self.settings
        atom = atom_feed(
            f"{settings.base_url}/feed/{token}.atom",
            list_name(settings),
            topics,
            feed_papers(self.db, subscriber_id, self.today()),
            datetime.now(settings.tz),
            lambda day: scheduled_time(settings, day),
        )
        return Response(atom, media_type="application/atom+xml; charset=utf-8")


def create_app(
    db: Database,
    settings: Settings,
    patience: float = PATIENCE,
    today: Callable[[], date] | None = None,
) -> Starlette:
    """The app; `today`: what date it is (default: the clock's, in NEWSLETTER_TIMEZONE)."""

    def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    both = ["GET", "POST"]
    unsubscribe_link = _Unsubscribe(db, settings, patience, today).handle
    return Starlette(
        routes=[
            Route("/", health),
            Route("/unsubscribe/{token}", unsubscribe_link, methods=both),
            Route("/more/{token}", _Feedback(db, settings, patience, MORE).handle, methods=both),
            Route("/less/{token}", _Feedback(db, settings, patience, LESS).handle, methods=both),
            Route("/digest/{token}", _DigestPage(db, settings, patience).handle),
            Route("/feed/{token}.atom", _Feed(db, settings, patience, today).handle),
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


def _invalid(kind: str) -> HTMLResponse:
    return _page(
        "Link not valid",
        f"<p>This {kind} link is not valid. Please use the link from your latest digest.</p>",
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
