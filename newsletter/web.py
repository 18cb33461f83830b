"""The HTTP endpoint behind the unsubscribe links (Starlette, served by uvicorn).

GET on a link shows a page naming the address with one button; POST unsubscribes at once and
answers 200 — the RFC 8058 one-click POST (`List-Unsubscribe=One-Click`) that mail clients send
and the button's form are the same request. The token in the link is an HMAC of the address, so a
link that was tampered with, or made for another address, gets 400 and changes nothing.
"""

from __future__ import annotations

from html import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from .config import Settings
from .db import Database
from .message import verify_token
from .subscribers import is_unsubscribed, unsubscribe

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;
line-height:1.5}}button{{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}}
button:focus{{outline:3px solid #f0b429}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status)


def create_app(db: Database, settings: Settings) -> Starlette:
    def address_of(request: Request) -> str | None:
        return verify_token(settings.signing_key, request.path_params["token"])

    async def confirm(request: Request) -> HTMLResponse:
        address = address_of(request)
        if address is None:
            return _invalid()
        if is_unsubscribed(db, address):
            return _page("Unsubscribed", f"<p>{escape(address)} is unsubscribed already.</p>")
        return _page(
            "Unsubscribe?",
            f"<p>Stop sending the trending papers digest to <strong>{escape(address)}</strong>?</p>"
            f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">Unsubscribe</button></form>',
        )

    async def one_click(request: Request) -> HTMLResponse:
        address = address_of(request)
        if address is None:
            return _invalid()
        unsubscribe(db, address)
        return _page(
            "Unsubscribed",
            f"<p>{escape(address)} will get no more digests. You can close this page.</p>",
        )

    async def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", health),
            Route("/unsubscribe/{token}", confirm, methods=["GET"]),
            Route("/unsubscribe/{token}", one_click, methods=["POST"]),
        ]
    )


def _invalid() -> HTMLResponse:
    return _page(
        "Link not valid",
        "<p>This unsubscribe link is not valid. Please use the link from your latest digest.</p>",
        status=400,
    )


def serve(db: Database, settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(db, settings), host=host, port=port, log_level="info")
