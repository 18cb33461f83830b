"""The fast tier: the rules a change is most likely to break, as tables, checked in a second.

Who is charged for an SMTP error, which digests a sender may claim, which papers a reader's window
holds, when a status changes and what a bounce code means. The tests against real servers (Postfix,
Dovecot, aiosmtpd that misbehave) stay where they are; these say the same rules in one place."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import aiosmtplib
import pytest

from newsletter.bounces.rules import no_such_address
from newsletter.delivery.smtp import (
    DEFERRED_OUTCOME,
    FAILED_OUTCOME,
    RECONNECT,
    WAIT,
    MessageTooLarge,
    ServerUnreachable,
    classify,
)
from newsletter.digests.plan import earliest_candidate, is_due, window_start
from newsletter.store.db import (
    ACTIVE,
    DEFERRED,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SUSPENDED,
    UNSUBSCRIBED,
    Digest,
    Subscriber,
    utcnow,
)
from newsletter.store.outbox import claim_batch
from newsletter.store.subscribers import change_status, current_score

SERVER = "smtp.example.org:25"


@pytest.mark.parametrize(
    "error, outcome",
    [
        (aiosmtplib.SMTPRecipientRefused(550, "5.1.1 No such user", "a@x.org"), FAILED_OUTCOME),
        (aiosmtplib.SMTPRecipientRefused(450, "4.2.2 Mailbox full", "a@x.org"), DEFERRED_OUTCOME),
        (aiosmtplib.SMTPDataError(554, "5.6.0 Content refused"), FAILED_OUTCOME),
        (aiosmtplib.SMTPDataError(552, "4.2.2 Mailbox full"), DEFERRED_OUTCOME),  # RFC 5321
        # Too large: that message's problem (it waits), never the reader's nor a refusal of us.
        (aiosmtplib.SMTPDataError(552, "5.3.4 Message too big"), WAIT),
        (aiosmtplib.SMTPSenderRefused(552, "5.3.4 Size exceeds fixed limit", "me@x.org"), WAIT),
        (aiosmtplib.SMTPSenderRefused(552, "Message size exceeds fixed limit", "me@x.org"), WAIT),
        (MessageTooLarge("30,000 bytes, more than the 20,000 it takes (SIZE)"), WAIT),
        (aiosmtplib.SMTPDataError(451, "4.3.0 Try later"), DEFERRED_OUTCOME),
        (aiosmtplib.SMTPResponseException(421, "4.3.2 Shutting down"), DEFERRED_OUTCOME),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), RECONNECT),
        (ConnectionResetError("reset by peer"), RECONNECT),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported"), WAIT),
        (UnicodeEncodeError("ascii", "é", 0, 1, "no"), WAIT),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 Unknown", "a@x.org")]
            ),
            FAILED_OUTCOME,
        ),
    ],
)
def test_only_the_readers_server_speaking_of_the_reader_charges_the_reader(error, outcome):
    assert classify(error, SERVER)[0] == outcome


@pytest.mark.parametrize(
    "error, says",
    [
        (aiosmtplib.SMTPSenderRefused(550, "5.7.1 Sender denied", "me@x.org"), "MAIL FROM"),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Bad credentials"), "login"),
        (aiosmtplib.SMTPHeloError(550, "5.7.1 Bad HELO"), "NEWSLETTER_SMTP_HELO"),
        (aiosmtplib.SMTPConnectResponseError(554, "5.7.1 Go away"), "refused the connection"),
        (aiosmtplib.SMTPResponseException(530, "5.7.0 Authentication required"), "refused us"),
        (
            aiosmtplib.SMTPRecipientRefused(554, "5.7.1 Helo command rejected", "a@x.org"),
            "refused us",
        ),
        (
            aiosmtplib.SMTPRecipientRefused(554, "5.7.1 Relay access denied", "a@x.org"),
            "refused us",
        ),
        (aiosmtplib.SMTPException("STARTTLS extension not supported"), "SMTP_SECURITY"),
    ],
)
def test_a_server_refusing_us_stops_the_run_and_charges_nobody(error, says):
    with pytest.raises(ServerUnreachable) as stopped:
        classify(error, SERVER)
    assert says in str(stopped.value) and SERVER in str(stopped.value)


MONDAY, WEDNESDAY = date(2026, 3, 9), date(2026, 3, 11)


@pytest.mark.parametrize(
    "frequency, day, last, start",
    [
        ("daily", WEDNESDAY, None, WEDNESDAY),  # a first digest: that day's papers
        ("daily", WEDNESDAY, date(2026, 3, 10), WEDNESDAY),
        ("daily", WEDNESDAY, date(2026, 3, 8), date(2026, 3, 9)),  # a missed day caught up
        ("daily", WEDNESDAY, date(2026, 2, 1), date(2026, 3, 5)),  # never over 7 days back
        ("daily", WEDNESDAY, date(2026, 3, 3), date(2026, 3, 5)),
        ("daily", WEDNESDAY, date(2026, 3, 4), date(2026, 3, 5)),
        ("weekly", MONDAY, None, date(2026, 3, 3)),  # the 7 days ending that Monday
        ("weekly", MONDAY, date(2026, 3, 2), date(2026, 3, 3)),
    ],
)
def test_a_readers_window(frequency, day, last, start):
    assert window_start(frequency, day, last) == start
    assert earliest_candidate(day) <= start <= day


@pytest.mark.parametrize(
    "frequency, day, due",
    [("daily", WEDNESDAY, True), ("daily", MONDAY, True), ("weekly", MONDAY, True)]
    + [("weekly", MONDAY + timedelta(days=n), False) for n in range(1, 7)],
)
def test_who_is_due(frequency, day, due):
    assert is_due(frequency, day) is due


NOW = datetime(2026, 3, 11, 8, 0)
STARTED = NOW - timedelta(minutes=5)  # when this run began


@pytest.mark.parametrize(
    "state, updated, claimed_by, claimed_until, status, digest_date, claimed",
    [
        (PENDING, NOW, None, None, ACTIVE, WEDNESDAY, True),
        (PENDING, NOW, None, None, SUSPENDED, WEDNESDAY, False),  # an inactive reader's
        (PENDING, NOW, None, None, ACTIVE, WEDNESDAY - timedelta(days=6), True),  # left over
        (PENDING, NOW, None, None, ACTIVE, WEDNESDAY - timedelta(days=7), False),  # stale
        (PENDING, NOW, None, None, ACTIVE, WEDNESDAY + timedelta(days=1), False),  # tomorrow's
        (DEFERRED, STARTED - timedelta(hours=1), None, None, ACTIVE, WEDNESDAY, True),
        (DEFERRED, STARTED + timedelta(minutes=1), None, None, ACTIVE, WEDNESDAY, False),
        (SENDING, NOW, "other:1", utcnow() + timedelta(hours=1), ACTIVE, WEDNESDAY, False),
        (SENDING, NOW, "other:1", datetime(2000, 1, 1), ACTIVE, WEDNESDAY, True),  # lapsed
        (SENT, NOW, None, None, ACTIVE, WEDNESDAY, False),
        (FAILED, NOW, None, None, ACTIVE, WEDNESDAY, False),
    ],
)
def test_which_digests_a_sender_may_claim(
    db, state, updated, claimed_by, claimed_until, status, digest_date, claimed
):
    with db.session() as session:
        reader = Subscriber(email="ada@example.org", topics=["x"], status=status)
        session.add(reader)
        session.flush()
        digest = Digest(
            subscriber_id=reader.id,
            digest_date=digest_date,
            window_start=digest_date,
            state=state,
            message_id="<1@digest.example>",
            updated_at=updated,
            claimed_by=claimed_by,
            claimed_until=claimed_until,
        )
        session.add(digest)
    got = claim_batch(db, WEDNESDAY, "me:2", STARTED, limit=10, lease_seconds=60)
    assert (got == [digest.id]) is claimed and (got == []) is not claimed


@pytest.mark.parametrize(
    "before, to, reason, changed, after_reason",
    [
        (ACTIVE, SUSPENDED, "bounce 5.1.1", True, "bounce 5.1.1"),
        (ACTIVE, UNSUBSCRIBED, "complaint", True, "complaint"),
        (UNSUBSCRIBED, UNSUBSCRIBED, "complaint", False, "earlier"),  # the first reason stays
        (SUSPENDED, ACTIVE, None, True, None),  # active says no reason
        (ACTIVE, ACTIVE, None, False, None),
    ],
)
def test_a_status_changes_one_way_with_its_reason(before, to, reason, changed, after_reason):
    reader = Subscriber(email="a@x.org", topics=[], status=before)
    reader.status_reason = None if before == ACTIVE else "earlier"
    assert change_status(reader, to, reason, NOW) is changed
    assert (reader.status, reader.status_reason) == (to, after_reason)
    assert (reader.status_changed_at == NOW) is changed


@pytest.mark.parametrize("status", [SUSPENDED, UNSUBSCRIBED])
def test_nobody_is_suspended_or_unsubscribed_without_a_reason(status):
    with pytest.raises(ValueError):
        change_status(Subscriber(email="a@x.org", topics=[], status=ACTIVE), status, None, NOW)


@pytest.mark.parametrize(
    "code, gone",
    [("5.1.1", True), ("5.1.2", True), ("5.1.10", True), ("5.2.1", True)]
    + [("5.1.7", False), ("5.1.8", False), ("5.2.2", False), ("4.1.1", False), (None, False)],
)
def test_which_bounce_codes_mean_the_address_is_gone(code, gone):
    assert no_such_address(code) is gone


@pytest.mark.parametrize("days, left", [(0, 4.0), (30, 2.0), (60, 1.0), (90, 0.5), (-5, 4.0)])
def test_a_bounce_score_halves_every_30_days(days, left):
    assert current_score(4.0, NOW, NOW + timedelta(days=days)) == pytest.approx(left)
