"""A real HTTP server on 127.0.0.1 playing the Daily Papers API: each date answers from a script of
replies (the last one repeats), and every request is recorded with its headers and arrival time."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes | list[Any] = b"[]"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the answer starts
    trickle: float = 0.0  # seconds between bytes of the whole answer, status line included

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Request:
    path: str
    date: str | None
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived


def item(
    arxiv_id: str,
    title: str,
    summary: str = "",
    authors: tuple[str, ...] = ("Ada Lovelace",),
    upvotes: int = 0,
    github: str | None = None,
    ai_summary: str | None = None,
) -> dict[str, Any]:
    """One entry of the list, in the shape the real API answers with (and its extra keys)."""
    paper: dict[str, Any] = {
        "id": arxiv_id,
        "authors": [
            {"_id": f"{i:024x}", "name": name, "hidden": False} for i, name in enumerate(authors)
        ],
        "publishedAt": "2026-11-24T17:59:59.000Z",
        "submittedOnDailyAt": "2026-11-25T01:02:03.000Z",
        "title": title,
        "summary": summary,
        "upvotes": upvotes,
        "discussionId": "6744a0b1c2d3e4f5a6b7c8d9",
        "ai_keywords": ["papers"],
    }
    if ai_summary is not None:
        paper["ai_summary"] = ai_summary
    if github is not None:
        paper["githubRepo"] = github
        paper["githubStars"] = 12
    return {
        "paper": paper,
        "publishedAt": "2026-11-24T17:59:59.000Z",
        "title": title,
        "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{arxiv_id}.png",
        "numComments": 1,
        "submittedBy": {"_id": "5f1158120c833276f61f1a84", "user": "akhaliq", "type": "user"},
        "isAuthorParticipating": False,
    }


class PapersApiServer:
    def __init__(self) -> None:
        self.script: dict[str, list[Reply]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                day = parse_qs(url.query).get("date", [None])[0]
                reply = server._next(url.path, day, dict(self.headers.items()))
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.payload()
                if reply.trickle:
                    return self._trickle(reply, body)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout case)

            def _trickle(self, reply: Reply, body: bytes) -> None:
                head = f"HTTP/1.1 {reply.status} OK\r\nContent-Length: {len(body)}\r\n\r\n"
                try:
                    for byte in head.encode() + body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(reply.trickle)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # (serve_forever looks for shutdown every poll_interval: 0.5 s by default, per test)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def answer(self, day: str, *replies: Reply) -> None:
        self.script[day] = list(replies)

    def _next(self, path: str, day: str | None, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Request(path, day, headers, time.monotonic()))
            if path != "/api/daily_papers" or day not in self.script:
                return Reply(404, {"error": "Not Found"})
            replies = self.script[day]
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def asked(self, day: str) -> list[Request]:
        return [request for request in self.requests if request.date == day]

    def start(self) -> PapersApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
