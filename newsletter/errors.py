"""The one family of user-facing errors: bad input files, bad configuration, bad arguments.

The command line prints their message (one line, naming the file and line where there is one) and
exits non-zero; anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """A mistake the user can fix; the message says what and where."""


class ConfigError(NewsletterError):
    """A setting in the environment or `.env` is missing or malformed."""


class DumpError(NewsletterError):
    """A file given to ingest is not a Daily Papers dump."""


class SubscriberListError(NewsletterError):
    """One or more rows of the subscriber lists are invalid; `problems` holds one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class UnknownSubscriberError(NewsletterError):
    """An address that is not in the database was named on the command line."""


class BounceError(NewsletterError):
    """A message in the bounce mailbox that cannot be read as one (not mail, too large, a report
    naming no recipient), or a bounce mailbox that cannot be reached."""
