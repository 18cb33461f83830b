"""Recorded-shape messages that come back to a bounce address: the formats real servers write
(Exim, qmail, old Exchange, an RFC 3464 DSN, an ARF feedback report, an out-of-office reply),
filled in with the envelope sender and Message-ID of a digest we sent."""

from __future__ import annotations

import itertools

_serial = itertools.count(1)  # each message made has a Message-ID of its own

DATE = "Sat, 08 Aug 2026 07:05:12 +0000"


def _returned(rcpt: str, message_id: str, verp: str) -> str:
    return (
        f"Return-path: <{verp}>\n"
        "Received: from mx.digest.example ([192.0.2.10])\n"
        f"From: Trending Papers <papers@digest.example>\n"
        f"To: {rcpt}\n"
        "Subject: Papers for Aug 8, 2026: something new\n"
        f"Message-ID: {message_id}\n"
        f"Date: {DATE}\n"
    )


def exim(rcpt: str, message_id: str, verp: str, code: str = "550 5.1.1 No such user here") -> bytes:
    return (
        f"Return-path: <>\n"
        f"Envelope-to: {verp}\n"
        f"Delivery-date: {DATE}\n"
        "Received: from mail by mx.readers.example with local (Exim 4.96)\n"
        "\tid 1tQ7Xq-0003Ab-2K\n"
        "X-Failed-Recipients: " + rcpt + "\n"
        "Auto-Submitted: auto-replied\n"
        "From: Mail Delivery System <Mailer-Daemon@mx.readers.example>\n"
        f"To: {verp}\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        f"Message-Id: <E1tQ7Xq-{next(_serial):04d}Ab-2K@mx.readers.example>\n"
        f"Date: {DATE}\n"
        "\n"
        "This message was created automatically by mail delivery software.\n"
        "\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n"
        "\n"
        f"  {rcpt}\n"
        f"    host mx2.readers.example [198.51.100.7]\n"
        f"    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n"
        f"    {code}\n"
        "\n"
        "------ This is a copy of the message, including all the headers. ------\n"
        "\n" + _returned(rcpt, message_id, verp) + "\nHi, here are 3 new papers.\n"
    ).encode()


def qmail(rcpt: str, message_id: str, verp: str) -> bytes:
    return (
        f"Return-Path: <>\n"
        f"Delivered-To: {verp}\n"
        "Received: (qmail 7711 invoked for bounce); 8 Aug 2026 07:05:12 -0000\n"
        f"Date: {DATE}\n"
        "From: MAILER-DAEMON@mail.readers.example\n"
        f"To: {verp}\n"
        "Subject: failure notice\n"
        f"Message-ID: <20260808070512.{next(_serial)}.qmail@mail.readers.example>\n"
        "\n"
        "Hi. This is the qmail-send program at mail.readers.example.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n"
        "\n"
        f"<{rcpt}>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n"
        "\n"
        "--- Below this line is a copy of the message.\n"
        "\n" + _returned(rcpt, message_id, verp)
    ).encode()


def exchange(rcpt: str, message_id: str, verp: str) -> bytes:
    return (
        "Return-Path: <>\n"
        f"X-Original-To: {verp}\n"
        f"Delivered-To: {verp}\n"
        "From: System Administrator <postmaster@corp.readers.example>\n"
        f"To: {verp}\n"
        "Subject: Undeliverable: Papers for Aug 8, 2026\n"
        f"Date: {DATE}\n"
        f"Message-ID: <8B1C2D3E4F{next(_serial)}@EXCH01.corp.readers.example>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "Your message\n"
        "\n"
        f"  To:      {rcpt}\n"
        "  Subject: Papers for Aug 8, 2026\n"
        "  Sent:    Sat, 8 Aug 2026 07:00:00 +0000\n"
        "\n"
        "did not reach the following recipient(s):\n"
        "\n"
        f"{rcpt} on Sat, 8 Aug 2026 07:05:12 +0000\n"
        "    The recipient name is not recognized\n"
        "    The MTS-ID of the original message is: c=US;a= ;p=Corp;l=EXCH010808070512\n"
        "    MSEXCH:IMS:Corp:Site:EXCH01 0 (000C05A6) Unknown Recipient\n"
    ).encode()


def dsn(
    rcpt: str,
    message_id: str,
    verp: str,
    action: str = "delayed",
    status: str = "4.2.2",
    diagnostic: str = "452 4.2.2 Mailbox full",
    recipients: bool = True,
) -> bytes:
    fields = (
        f"Final-Recipient: rfc822; {rcpt}\n"
        f"Original-Recipient: rfc822;{rcpt}\n"
        f"Action: {action}\n"
        f"Status: {status}\n"
        "Remote-MTA: dns; mx.readers.example\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n"
        if recipients
        else ""
    )
    return (
        "Return-Path: <>\n"
        f"Delivered-To: {verp}\n"
        f"Date: {DATE}\n"
        "From: MAILER-DAEMON@relay.digest.example (Mail Delivery System)\n"
        "Subject: Delayed Mail (still being retried)\n"
        f"To: {verp}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B0UND"\n'
        f"Message-Id: <20260808070512.{next(_serial)}@relay.digest.example>\n"
        "\n"
        "--B0UND\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "This is the mail system at host relay.digest.example.\n"
        "Your message could not be delivered for 4 hours. It will be retried.\n"
        "\n"
        "--B0UND\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; relay.digest.example\n"
        "Arrival-Date: " + DATE + "\n"
        "\n" + fields + "\n"
        "--B0UND\n"
        "Content-Type: text/rfc822-headers\n"
        "\n" + _returned(rcpt, message_id, verp) + "\n"
        "--B0UND--\n"
    ).encode()


def arf(rcpt: str, message_id: str, verp: str, feedback: str = "abuse") -> bytes:
    return (
        "Return-Path: <fbl@provider.example>\n"
        "From: Feedback Loop <fbl@provider.example>\n"
        "To: abuse@digest.example\n"
        f"Date: {DATE}\n"
        "Subject: FW: Papers for Aug 8, 2026\n"
        f"Message-ID: <fbl.20260808.{next(_serial)}@provider.example>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\n'
        "\n"
        "--ARF\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "This is an email abuse report for an email message received from IP 192.0.2.10.\n"
        "\n"
        "--ARF\n"
        "Content-Type: message/feedback-report\n"
        "\n"
        f"Feedback-Type: {feedback}\n"
        "User-Agent: ProviderFBL/1.0\n"
        "Version: 1\n"
        f"Original-Mail-From: <{verp}>\n"
        f"Original-Rcpt-To: <{rcpt}>\n"
        f"Arrival-Date: {DATE}\n"
        "Source-IP: 192.0.2.10\n"
        "\n"
        "--ARF\n"
        "Content-Type: text/rfc822-headers\n"
        "\n" + _returned(rcpt, message_id, verp) + "\n"
        "--ARF--\n"
    ).encode()


def out_of_office(rcpt: str, message_id: str, verp: str) -> bytes:
    return (
        f"Return-Path: <{rcpt}>\n"
        f"Delivered-To: {verp}\n"
        f"From: {rcpt}\n"
        f"To: {verp}\n"
        "Subject: Automatic reply: Papers for Aug 8, 2026\n"
        "Auto-Submitted: auto-replied\n"
        "X-Auto-Response-Suppress: All\n"
        f"In-Reply-To: {message_id}\n"
        f"Date: {DATE}\n"
        f"Message-ID: <ooo.{next(_serial)}@readers.example>\n"
        "\n"
        "I am out of the office until August 20 with no access to email. The address\n"
        "was reported as 550 5.1.1 in an old thread, but that is not about you.\n"
    ).encode()


def exim_relayed(rcpt: str, message_id: str, verp: str, names_reader: bool = True) -> bytes:
    """Exim's wording as some relays pass it on: no X-Failed-Recipients, and Exim's own
    Auto-Submitted: auto-replied; with `names_reader` false the text names nobody."""
    failed = (
        f"  {rcpt}\n    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n"
        "    550 5.1.1 No such user here\n"
        if names_reader
        else "  (address withheld by the relay)\n"
    )
    return (
        "Return-path: <>\n"
        f"Envelope-to: {verp}\n"
        "Auto-Submitted: auto-replied\n"
        "From: Mail Delivery System <Mailer-Daemon@relay.readers.example>\n"
        f"To: {verp}\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        f"Message-Id: <E1relay-{next(_serial):04d}@relay.readers.example>\n"
        f"Date: {DATE}\n"
        "\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n"
        "\n" + failed + "\n"
    ).encode()


def exim_dsn(rcpt: str, message_id: str, verp: str, reply: str, local_file: bool = False) -> bytes:
    """Exim's bounce as a delivery report (Exim 4.83 and later): "Action" before
    "Final-Recipient", and "Status: 5.0.0" whatever the server answered; the server's reply is in
    the Diagnostic-Code and the text. With `local_file` the recipient was a local delivery (a
    file in the spool) that failed, named by its path, not by an address."""
    boundary = f"{next(_serial)}-eximdsn-1234567890"
    if local_file:
        failed = (
            "  save to /var/spool/mail/readers.example/a/ada\n"
            "    generated by ada@readers.example\n"
            "    mailbox is full: retry timeout exceeded\n"
        )
        block = "Final-Recipient: rfc822;/var/spool/mail/readers.example/a/ada\nStatus: 5.0.0\n"
    else:
        failed = (
            f"  {rcpt}\n    host mx.readers.example [198.51.100.7]\n"
            f"    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\n    {reply}\n"
        )
        block = (
            f"Final-Recipient: rfc822;{rcpt}\nStatus: 5.0.0\n"
            "Remote-MTA: dns; mx.readers.example\n"
            f"Diagnostic-Code: smtp; {reply}\n"
        )
    return (
        "Return-path: <>\n"
        f"Envelope-to: {verp}\n"
        "Auto-Submitted: auto-replied\n"
        "From: Mail Delivery System <Mailer-Daemon@out.readers.example>\n"
        f"To: {verp}\n"
        "Content-Type: multipart/report; report-type=delivery-status;\n"
        f"\tboundary={boundary}\n"
        "MIME-Version: 1.0\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        f"Message-Id: <E1dsn-{next(_serial):04d}-Ab@out.readers.example>\n"
        f"Date: {DATE}\n"
        "\n"
        f"--{boundary}\n"
        "Content-type: text/plain; charset=us-ascii\n"
        "\n"
        "This message was created automatically by mail delivery software.\n"
        "\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n"
        "\n" + failed + "\n"
        f"--{boundary}\n"
        "Content-type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; out.readers.example\n"
        "\n"
        "Action: failed\n" + block + "\n"
        f"--{boundary}\n"
        "Content-type: message/rfc822\n"
        "\n" + _returned(rcpt, message_id, verp) + "\nHi, here are 3 new papers.\n\n"
        f"--{boundary}--\n"
    ).encode()


def nested(depth: int, inner: str = "multipart/mixed") -> bytes:
    """A message of `depth` parts each inside the one before (multipart, or message/rfc822)."""
    head = (
        "From: stranger@elsewhere.example\nTo: bounces@digest.example\nSubject: hi\n"
        f"Message-Id: <nested-{next(_serial)}@elsewhere.example>\nDate: {DATE}\nMIME-Version: 1.0\n"
    )
    if inner == "message/rfc822":
        body = "Content-Type: text/plain\n\nhello\n"
        for n in range(depth):
            body = f"Content-Type: message/rfc822\n\nSubject: {n}\n{body}"
        return (head + body).encode()
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\n\n--b{n}\n' for n in range(depth)
    )
    closing = "".join(f"\n--b{n}--\n" for n in reversed(range(depth)))
    return (head + opening + "Content-Type: text/plain\n\nhello\n" + closing).encode()
