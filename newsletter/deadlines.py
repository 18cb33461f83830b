"""A deadline for a whole network exchange. Sockets time out per read, so a server that sends a
byte every few seconds never times out: the exchange runs in a thread of its own, and the caller
goes on at the deadline (the thread is left to end with its connection)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TooLate(Exception):
    """The work did not finish within its deadline."""


def within(seconds: float, work: Callable[[], T], name: str) -> T:
    """What `work()` returns, or what it raises, if it is done within `seconds`; else `TooLate`."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # handed to the caller's thread as it is
            outcome.append((False, error))

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise TooLate(name)
    done, value = outcome[0]
    if not done:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]
