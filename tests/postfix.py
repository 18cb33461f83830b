"""A real Postfix (Debian's `postfix` package) on a free loopback port, with a configuration and
queue of its own in a temporary folder: the MTA that readers' mail really meets. It relays the test
domains to Postfix's `discard` transport, so nothing leaves the machine.

Needs root (Postfix's master runs as root and drops to the `postfix` user) and the package, which
`.ci/system-deps` installs; `available()` says why not otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .daemons import stop, unavailable, wait_for_port

POSTFIX = "/usr/sbin/postfix"
SERVICES = """\
cleanup   unix  n  -  n  -     0  cleanup
qmgr      unix  n  -  n  300   1  qmgr
rewrite   unix  -  -  n  -     -  trivial-rewrite
bounce    unix  -  -  n  -     0  bounce
defer     unix  -  -  n  -     0  bounce
trace     unix  -  -  n  -     0  bounce
verify    unix  -  -  n  -     1  verify
flush     unix  n  -  n  1000? 0  flush
proxymap  unix  -  -  n  -     -  proxymap
showq     unix  n  -  n  -     -  showq
error     unix  -  -  n  -     -  error
retry     unix  -  -  n  -     -  error
discard   unix  -  -  n  -     -  discard
anvil     unix  -  -  n  -     1  anvil
scache    unix  -  -  n  -     1  scache
postlog   unix-dgram n -  n  -     1  postlogd
"""


def available() -> str | None:
    """None when a Postfix can be started here, else the reason it cannot."""
    return unavailable(POSTFIX, "postfix", "Postfix")


class Postfix:
    """Its folder is a new one under the system's temporary folder, readable by the `postfix`
    user (pytest's own folders are private to root), and removed when it stops."""

    def __init__(self, port: int, services: str = "", **settings: str):
        self.folder = Path(tempfile.mkdtemp(prefix="papers-digest-postfix-"))
        self.services = services  # master.cf lines beyond SERVICES
        self.folder.chmod(0o755)
        self.port = port
        self.conf = self.folder / "conf"
        self.settings = settings

    def __enter__(self) -> Postfix:
        for name in ("conf", "queue", "data"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.folder / "data", user="postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.folder / "queue"),
            "data_directory": str(self.folder / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "mx.test.example",
            "mydestination": "",
            "relay_domains": "example.org, example.com, example.net",
            "default_transport": "discard:test",
            "relay_transport": "discard:test",
            "smtpd_relay_restrictions": "permit_auth_destination, reject",
            "smtputf8_enable": "yes",
            "maillog_file": str(self.folder / "maillog"),
            "maillog_file_prefixes": str(self.folder),
            **self.settings,
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        smtpd = f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
        (self.conf / "master.cf").write_text(smtpd + SERVICES + self.services)
        # In the foreground (Postfix 3.3+), so that the test owns the process.
        self.master = subprocess.Popen(
            [POSTFIX, "-c", str(self.conf), "start-fg"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.master, "Postfix", self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True, timeout=60)
        stop(self.master, terminate=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def mailbox(self, address: str) -> Path:
        """Have Postfix's virtual(8) agent deliver `address` (and `local+anything@domain`) to a
        Maildir of its own, returned; call before starting. Mail to other addresses of its
        domain is accepted and then bounced by Postfix itself ("5.1.1 unknown user")."""
        local, _, domain = address.partition("@")
        base = self.folder / "mail"
        base.mkdir(exist_ok=True)
        shutil.chown(base, user="postfix", group="postfix")
        (self.folder / "conf").mkdir(parents=True, exist_ok=True)
        (self.folder / "conf" / "vmailbox").write_text(f"{address} {local}/\n")
        self.settings.update(
            virtual_mailbox_domains=domain,
            virtual_mailbox_base=str(base),
            virtual_mailbox_maps=f"texthash:{self.folder / 'conf' / 'vmailbox'}",
            virtual_uid_maps="static:" + str(os.stat(base).st_uid),
            virtual_gid_maps="static:" + str(os.stat(base).st_gid),
            virtual_minimum_uid="1",
            recipient_delimiter="+",
            smtpd_reject_unlisted_recipient="no",
        )
        self.services += "virtual   unix  -  n  n  -     -  virtual\n"
        return base / local

    def log(self) -> str:
        path = self.folder / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, *fragments: str, count: int = 1, seconds: float = 30) -> bool:
        """Whether the log comes to hold each fragment (the last `count` times) in time: the
        log is written by Postfix's own processes, a little after the SMTP reply."""
        deadline = time.monotonic() + seconds
        while True:
            log = self.log()
            found = all(f in log for f in fragments[:-1]) and log.count(fragments[-1]) >= count
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
