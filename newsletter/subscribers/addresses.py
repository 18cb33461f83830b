"""Addresses as the product knows them: normalised once, the same way everywhere (lists,
`unsubscribe`, `resubscribe`, tokens, bounces): Unicode NFC, the domain in Unicode, all lower-case;
anything email-validator refuses is refused."""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email

from ..errors import NewsletterError


def normalize_address(value: str) -> str:
    """An address as it is stored, compared and signed everywhere (lists, `unsubscribe`,
    `resubscribe`, tokens): NFC, the domain in Unicode (`xn--bcher-kva.example` is
    `bücher.example`), all lower-case. `NewsletterError` when it is not an address.

    email-validator checks the whole address (about 0.1 ms, most of it on the domain); a plain
    ASCII local part is checked here and its domain once per domain, which takes a 500,000-row
    list from a minute to seconds. `tests/test_subscribers.py` checks both give the same."""
    text = str(value).strip()
    local, at, domain = text.rpartition("@")
    if at and _DOT_ATOM.fullmatch(local) and len(local) <= 64 and len(text) <= 254:
        checked = _domain(domain.lower())
        if isinstance(checked, str):
            return f"{local}@{checked}".lower()
    return _validated(text)


# RFC 5322's dot-atom, as email-validator accepts it unquoted.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """The normalized domain, or None when email-validator refuses it (the caller then asks it
    about the whole address, for its message)."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def _validated(text: str) -> str:
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise NewsletterError(f"invalid address {text!r}: {error}") from None
    return checked.normalized.lower()
