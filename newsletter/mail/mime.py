"""The digest as a MIME message, built one way: `MessageShape`.

A digest shape (`render.DigestShape`: the rendering shared by every reader with the same papers,
topics and cadence, cut where each reader's own values go) is quoted-printable encoded once; a
reader's message is then its headers, the encoded pieces, and the reader's own few values
encoded in the places the render recorded. Nothing is found by searching the text, so no
character of a title, an abstract or a name can be taken for a reader's value.

The message is `multipart/alternative` (plain text first, then HTML), both parts
quoted-printable UTF-8, with CRLF line ends exactly as it goes over SMTP. Headers are ASCII,
with RFC 2047 encoded-words for other text (and for text that only looks like an encoded-word,
so that no client decodes what a title or a name holds), folded to lines of at most 76
characters where there is a space to fold at. A non-ASCII address is written as it is
(RFC 6532): only such a message needs SMTPUTF8.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parseaddr

from ..config import Settings
from ..text import clean_name
from .render import DigestShape, Pieces, ReaderLinks, reader_values

LINE = 76  # RFC 2045's quoted-printable lines, and RFC 2047's lines holding encoded-words
_WORD_FRAME = len("=?utf-8?b??=")  # an encoded-word's characters besides its base64


@dataclass(frozen=True)
class Letterhead:
    """What every message sent with these settings has alike, encoded once: the From and List-Id
    fields, where unsubscribing goes, the key that signs the links, the fixed trailing fields."""

    signing_key: str
    base_url: str
    unsubscribe_address: str
    sender_field: str
    list_id_field: str
    trailer: tuple[str, ...]

    @classmethod
    def of(cls, settings: Settings) -> Letterhead:
        trailer = [
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Precedence: bulk",
            "Auto-Submitted: auto-generated",
        ]
        if settings.uses_development_secret:
            trailer.append("X-Newsletter-Warning: signed with the development key: preview only")
        return cls(
            signing_key=settings.signing_key,
            base_url=settings.base_url,
            unsubscribe_address=settings.unsubscribe_address,
            sender_field=_address_field("From", *parseaddr(settings.sender)),
            list_id_field=_address_field("List-Id", *list_id(settings)),
            trailer=tuple(trailer),
        )


class MessageShape:
    """A `DigestShape` with both parts quoted-printable encoded once (and its Subject field):
    each reader's message is its headers, plus the encoded pieces with the reader's own values
    encoded between them."""

    def __init__(self, shape: DigestShape):
        self.subject = shape.subject
        self._subject_field = _text_field("Subject", " ".join(shape.subject.split()))
        self._text = _encoded_pieces(shape.text)
        self._html = _encoded_pieces(shape.html)

    def message(
        self,
        letterhead: Letterhead,
        to_email: str,
        to_name: str,
        message_id: str,
        sent_at: datetime,
        links: ReaderLinks,
    ) -> bytes:
        """The whole message for one reader, as it goes over SMTP; `links`: the reader's own
        (`tokens.reader_links`)."""
        link, token = str(links.unsubscribe), links.unsubscribe_token
        values, escaped = reader_values(to_name, to_email, links)
        boundary = _boundary(message_id)
        head = [
            letterhead.sender_field,
            _address_field("To", clean_name(to_name), to_email),
            self._subject_field,
            f"Date: {format_datetime(sent_at)}",
            _text_field("Message-ID", message_id),
            letterhead.list_id_field,
            # (a token is base 36, base 32 and "-": nothing in it needs %-escaping)
            _text_field(
                "List-Unsubscribe",
                f"<{link}>, <mailto:{letterhead.unsubscribe_address}"
                f"?subject=unsubscribe%20{token}>",
            ),
            *letterhead.trailer,
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ]
        parts = "".join(
            f"--{boundary}\r\n"
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            f"{_fill(pieces, own)}\r\n"  # this CRLF belongs to the boundary
            for subtype, pieces, own in (
                ("plain", self._text, values),
                ("html", self._html, escaped),
            )
        )
        return ("\r\n".join(head) + "\r\n\r\n" + parts + f"--{boundary}--\r\n").encode("utf-8")


def list_name(settings: Settings) -> str:
    """The list's name: NEWSLETTER_FROM's display name."""
    return parseaddr(settings.sender)[0] or "Trending Papers"


def list_id(settings: Settings) -> tuple[str, str]:
    """The list's name and identifier (RFC 2919)."""
    return clean_name(list_name(settings)), f"digest.{settings.sender_domain}"


def _boundary(message_id: str) -> str:
    # Fixed by the Message-ID, a message is reproducible byte for byte; starting with "=_" the
    # boundary can never occur inside quoted-printable parts.
    return "=_" + hashlib.sha256(message_id.encode()).hexdigest()[:32]


# --- Header fields ------------------------------------------------------------------------------


def _needs_encoding(text: str) -> bool:
    return not text.isascii() or "=?" in text


def _text_field(name: str, value: str) -> str:
    """An unstructured field: ASCII as it is, anything else as encoded-words."""
    if _needs_encoding(value):
        return _fold(name, _encoded_words(value, first=LINE - len(name) - 2))
    return _fold(name, value.split(" "))


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def _address_field(name: str, display: str, address: str) -> str:
    """`display <address>` (RFC 5322 §3.4), the display name quoted or encoded as it needs."""
    if not display:
        return f"{name}: {address}"
    if _needs_encoding(display):
        words = _encoded_words(display, first=LINE - len(name) - 2)
    elif _SPECIALS.search(display):
        words = ['"' + re.sub(r'([\\"])', r"\\\1", display) + '"']
    else:
        words = display.split(" ")
    return _fold(name, [*words, f"<{address}>"])


def _fold(name: str, words: list[str]) -> str:
    """`name: word word ...`, a line break before a word that would take a line past 76
    characters (a word longer than that has a line of its own)."""
    if len(name) + 1 + sum(len(word) + 1 for word in words) <= LINE:
        return f"{name}: {' '.join(words)}"
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        if word and len(lines[-1]) + 1 + len(word) > LINE:
            lines.append(f" {word}")
        else:
            lines[-1] += f" {word}"
    return "\r\n".join(lines)


def _encoded_words(value: str, first: int) -> list[str]:
    """`value` as RFC 2047 base64 encoded-words, split between characters, the first fitting in
    `first` characters and the others in a folded line of their own (76, a space included);
    the space between two encoded-words is not part of the text."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    room = _room(first)
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > room and chunk:
            words.append("".join(chunk))
            chunk, size, room = [], 0, _room(LINE - 1)
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    return [f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words]


def _room(characters: int) -> int:
    """The UTF-8 bytes an encoded-word of at most `characters` characters can carry."""
    return (characters - _WORD_FRAME) // 4 * 3


# --- Bodies ------------------------------------------------------------------------------------

Encoded = tuple[str, ...]  # encoded text, slot name, encoded text, ...


def _encoded_pieces(pieces: Pieces) -> Encoded:
    """A shape's pieces in quoted-printable: every text piece but the last ends in a soft line
    break, so that the pieces and the values encoded between them make one valid body."""
    texts = [_line_ends(piece) for piece in pieces[::2]]
    texts[-1] = _body_end(texts[-1])
    encoded = [_qp_piece(text) for text in texts[:-1]] + [_qp(texts[-1])]
    result = list(pieces)
    result[::2] = encoded
    return tuple(result)


def _fill(encoded: Encoded, values: dict[str, str]) -> str:
    return "".join(
        _value_piece(values[piece]) if i % 2 else piece for i, piece in enumerate(encoded)
    )


# What quoted-printable leaves as it is: printable ASCII but "=" (and no space, which it encodes
# at a line's end). A reader's links are such text.
_LEFT_AS_IS = re.compile(r"(?!\.$)[!-<>-~]{1,75}")  # (a lone "." it encodes)


def _value_piece(value: str) -> str:
    """`_qp_piece` of a reader's value; a link (printable ASCII without "=", short enough for a
    line with its soft break) is its own encoding, so a message's many links cost no encoder."""
    if _LEFT_AS_IS.fullmatch(value):
        return value + "=\r\n"
    return _qp_piece(value.encode("utf-8"))


def _line_ends(text: str) -> bytes:
    """UTF-8 with every line end (CRLF, CR, LF) as LF; the encoder writes them as CRLF."""
    return text.encode("utf-8").replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _body_end(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def _qp(data: bytes) -> str:
    """Quoted-printable with CRLF line ends and lines of at most 76 characters (binascii's C
    encoder, which can let a line that ends in an encoded space, "=20", run two over)."""
    encoded = binascii.b2a_qp(data, istext=True).decode("ascii")
    if max(map(len, encoded.split("\n"))) > LINE:
        encoded = "\n".join(_refold(line) for line in encoded.split("\n"))
    return encoded.replace("\n", "\r\n")


def _refold(line: str) -> str:
    """A quoted-printable line cut into lines of at most 76 with soft breaks ("=" at the end),
    never inside an "=XX"."""
    pieces = []
    while len(line) > LINE:
        cut = LINE - 1
        while "=" in line[cut - 2 : cut]:
            cut -= 1
        pieces.append(line[:cut] + "=")
        line = line[cut:]
    return "\n".join([*pieces, line])


def _qp_piece(data: bytes) -> str:
    """Part of a quoted-printable body that more text follows: encoded, ending in a soft line
    break, so that pieces encoded apart join into one valid body of lines of at most 76."""
    encoded = _qp(data)
    if not encoded or encoded.endswith("\r\n"):
        return encoded
    head, end, last = encoded.rpartition("\r\n")  # (a piece may begin with a line break)
    last = _refold(last + "=").replace("\n", "\r\n")  # (the "=" may not fit on the line)
    return head + end + last + "\r\n"
