"""Turning digests into finished messages (render, MIME, DKIM) on every core.

A big run hands its digests to worker processes in chunks and gets the message bytes back in the
same order, while this process goes on writing files or talking SMTP. A small run (or
`NEWSLETTER_WORKERS=0`) renders in this process: starting workers costs more than it saves.
Workers are spawned, not forked: the parent holds threads and database connections.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime

from ..config import Settings
from ..mail.mime import Letterhead, MessageShape, list_name
from ..mail.outgoing import Outgoing
from ..mail.render import DigestContent, ReaderLinks, Renderer, greeting_name
from ..mail.signing import sign_dkim
from ..mail.tokens import mailbox_address, reader_links

POOL_THRESHOLD = 400  # fewer digests than this are rendered in-process
CHUNK = 64  # digests per task: big enough to amortise the hand-over, small enough to stream
AHEAD = 3  # chunks in flight per worker
WAIT = 0.5  # seconds to wait when there is nothing to do yet (other senders at work)

Made = tuple[Outgoing, str, bytes]  # the digest, its subject, the message bytes
InFlight = deque[tuple[list[Outgoing], Future[list[tuple[str, bytes]]]]]  # chunks at the workers


def digest_content(settings: Settings, outgoing: Outgoing) -> DigestContent:
    return DigestContent(
        day=outgoing.day,
        email=outgoing.email,
        name=outgoing.name,
        topics=outgoing.topics,
        frequency=outgoing.frequency,
        papers=outgoing.cards,
        links=links_of(settings, outgoing),
        list_name=list_name(settings),
    )


def links_of(settings: Settings, outgoing: Outgoing) -> ReaderLinks:
    """The reader's own links in this digest."""
    papers = tuple(card.paper_id for card in outgoing.cards)
    return reader_links(settings, outgoing.subscriber_id, outgoing.day, papers)


SHAPE_CACHE = 64  # digest shapes kept per process (digests come grouped by shape)


class MessageFactory:
    """Finished messages of digests. Readers with the same papers, topics and cadence share one
    rendering and one quoted-printable encoding (a `MessageShape`); each message then costs its
    headers, its own few values and its DKIM signature."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.renderer = Renderer()
        self.letterhead = Letterhead.of(settings)
        self._shapes: OrderedDict[tuple[object, ...], MessageShape] = OrderedDict()

    def shape_for(self, outgoing: Outgoing) -> MessageShape:
        """The digest's shape, made once for the readers who share it."""
        greets = bool(greeting_name(outgoing.name))
        key = (outgoing.day, outgoing.cards, outgoing.topics, outgoing.frequency, greets)
        if key in self._shapes:
            self._shapes.move_to_end(key)
            return self._shapes[key]
        shape = MessageShape(self.renderer.shape(digest_content(self.settings, outgoing)))
        self._shapes[key] = shape
        if len(self._shapes) > SHAPE_CACHE:
            self._shapes.popitem(last=False)
        return shape

    def make(self, outgoing: Outgoing, sent_at: datetime | None) -> tuple[str, bytes]:
        """(subject, message bytes) of one digest, dated `sent_at` (None: now)."""
        settings = self.settings
        when = sent_at or datetime.now(settings.tz)
        to = mailbox_address(outgoing.email)
        shape = self.shape_for(outgoing)
        links = links_of(settings, outgoing)
        raw = shape.message(self.letterhead, to, outgoing.name, outgoing.message_id, when, links)
        return shape.subject, sign_dkim(settings, raw)


# A worker process's own factory, set up once by `_start_worker`.
_factory: MessageFactory | None = None


def _start_worker(settings: Settings) -> None:
    global _factory
    _factory = MessageFactory(settings)


def _make_chunk(chunk: list[Outgoing], sent_at: datetime | None) -> list[tuple[str, bytes]]:
    if _factory is None:
        raise RuntimeError("a worker process makes messages only once started")
    return [_factory.make(outgoing, sent_at) for outgoing in chunk]


class MessageMaker:
    """Makes the messages of a stream of digest batches, in order. Use as a context manager: the
    worker processes (if any) stop on exit, dropping work not yet collected."""

    def __init__(self, settings: Settings, expected: int, sent_at: datetime | None = None):
        self.settings = settings
        self.sent_at = sent_at
        self.workers = settings.workers if expected >= POOL_THRESHOLD else 0
        self._pool: ProcessPoolExecutor | None = None
        self._factory: MessageFactory | None = None

    def __enter__(self) -> MessageMaker:
        if self.workers:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.settings,),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def make(self, outgoing: Outgoing) -> tuple[str, bytes]:
        """One message, in this process."""
        if self._factory is None:
            self._factory = MessageFactory(self.settings)
        return self._factory.make(outgoing, self.sent_at)

    def stream(self, batches: Iterable[list[Outgoing]]) -> Iterator[Made]:
        in_flight: InFlight = deque()
        for batch in batches:
            if self._pool is None:
                for outgoing in batch:
                    yield (outgoing, *self.make(outgoing))
                continue
            for chunk in _chunks(batch):
                self._submit(in_flight, chunk)
                while len(in_flight) > self.workers * AHEAD:
                    done, future = in_flight.popleft()
                    yield from _finished(done, future.result())
        while in_flight:
            chunk, future = in_flight.popleft()
            yield from _finished(chunk, future.result())

    async def astream(self, batches: AsyncIterable[list[Outgoing]]) -> AsyncIterator[Made]:
        """`stream` for an event loop: waits for workers without blocking the SMTP connections.
        An empty batch means "nothing to do yet": what is in the works is handed out first, then
        the loop gets `WAIT` seconds to itself before the next batch is asked for."""
        in_flight: InFlight = deque()

        async def ready(keep: int) -> list[Made]:
            made: list[Made] = []
            while len(in_flight) > keep:
                chunk, future = in_flight.popleft()
                made += _finished(chunk, await asyncio.wrap_future(future))
            return made

        async for batch in batches:
            if not batch:
                for made in await ready(0):
                    yield made
                await asyncio.sleep(WAIT)
            elif self._pool is None:
                for outgoing in batch:
                    yield (outgoing, *self.make(outgoing))
                    await asyncio.sleep(0)  # let the connections work between two renderings
            else:
                for chunk in _chunks(batch):
                    self._submit(in_flight, chunk)
                    for made in await ready(self.workers * AHEAD):
                        yield made
        for made in await ready(0):
            yield made

    def _submit(self, in_flight: InFlight, chunk: list[Outgoing]) -> None:
        if self._pool is None:
            raise RuntimeError("MessageMaker hands work to workers only inside its `with` block")
        in_flight.append((chunk, self._pool.submit(_make_chunk, chunk, self.sent_at)))


def _chunks(batch: list[Outgoing]) -> Iterator[list[Outgoing]]:
    for start in range(0, len(batch), CHUNK):
        yield batch[start : start + CHUNK]


def _finished(chunk: list[Outgoing], messages: list[tuple[str, bytes]]) -> Iterator[Made]:
    for outgoing, (subject, message) in zip(chunk, messages, strict=True):
        yield outgoing, subject, message
