"""Any message at all is read as a bounce, a complaint, an auto-reply or nothing, or refused in one
line: checked against messages built from the pieces real bounces are made of, and any text."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import compat32

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.bounces.dsn import AUTO_REPLY, UNRECOGNISED, UNSUBSCRIBE, read_bounce
from newsletter.errors import BounceError
from newsletter.store.db import BOUNCE, COMPLAINT

from . import bounce_samples as samples

PIECES = [
    "From: MAILER-DAEMON@x.example\n",
    "To: bounces+1-7hw-aaaaaaaaaaaaaaaa@digest.example\n",
    "Delivered-To: bounces+\udcff@digest.example\n",
    "X-Failed-Recipients: ada@example.org, =?utf-8?q?=E2=98=83?=@x\n",
    "Auto-Submitted: auto-replied\n",
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n',
    'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\n',
    "\n--B\nContent-Type: message/delivery-status\n\n",
    "\n--B\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n",
    "\n--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <a@b>\n",
    "Final-Recipient: rfc822; ada@example.org\nAction: failed\nStatus: 5.1.1\n",
    "Final-Recipient: rfc822;\nAction: delayed\n",
    "\n--B--\n",
    "550 5.1.1 No such user here\n",
    "did not reach the following recipient\nada@example.org on x\nMSEXCH:\n",
    "Subject: =?utf-8?b?8J+Ukg==?=\n",
    "Content-Type: multipart/report; report-type*=utf-8''feedback%2Dreport; boundary=B\n",
    "Date: Fri, 31 Dec 9999 23:59:59 -2359\n",
    "Message-ID: <\u202e@x>\n",
    "\n",
    "\r\n",
    "é",
]


@hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=30)), max_size=25))
def test_any_message_is_read_or_refused_in_one_line(pieces):
    data = "".join(pieces).encode("utf-8", "surrogateescape")
    try:
        reading = read_bounce(data, "m.eml", "bounces@digest.example")
    except BounceError as error:
        assert "\n" not in str(error) and str(error).startswith("m.eml")
        return
    assert reading.kind in (BOUNCE, COMPLAINT, AUTO_REPLY, UNRECOGNISED, UNSUBSCRIBE)
    assert reading.key.startswith(("id:", "sha256:")) and len(reading.key) <= 255
    for failure in reading.failures:
        assert "@" in failure.address and failure.address == failure.address.lower()
    # The standard library parses the same bytes: a message it finds no headers in is refused.
    assert message_from_bytes(data, policy=compat32).keys()


def test_the_same_message_has_one_key_in_a_file_and_in_an_mbox():
    data = samples.exchange("ada@example.org", "<m@x>", "bounces@digest.example")
    no_id = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"Message-ID"))
    plain = read_bounce(no_id, "a", None).key
    assert plain.startswith("sha256:")
    assert (
        read_bounce(b"From MAILER-DAEMON Sat Aug  8 07:05:12 2026\n" + no_id, "b", None).key
        == plain
    )
    assert read_bounce(no_id.replace(b"\n", b"\r\n"), "c", None).key == plain


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 3000),
    st.sampled_from(["multipart/mixed", "message/rfc822", "multipart/report"]),
    st.binary(max_size=200),
)
def test_any_nesting_of_parts_is_read_or_refused_in_one_line(depth, kind, inside):
    """Anyone can mail the bounce address: parts inside parts to any depth, with any bytes at
    the bottom, are read or refused in one line, never a crash."""
    head = b"From: someone@elsewhere.example\nSubject: x\nMIME-Version: 1.0\n"
    if kind == "message/rfc822":
        body = b"Content-Type: text/plain\n\n" + inside
        for _ in range(depth):
            body = b"Content-Type: message/rfc822\n\nSubject: y\n" + body
    else:
        body = (
            b"".join(
                b'Content-Type: %s; boundary="b%d"\n\n--b%d\n' % (kind.encode(), n, n)
                for n in range(depth)
            )
            + b"Content-Type: text/plain\n\n"
            + inside
        )
    try:
        reading = read_bounce(head + body, "m.eml", "bounces@digest.example")
    except BounceError as error:
        assert "\n" not in str(error) and str(error).startswith("m.eml")
        return
    assert reading.kind in (BOUNCE, COMPLAINT, AUTO_REPLY, UNRECOGNISED, UNSUBSCRIBE)
