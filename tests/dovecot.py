"""A real Dovecot IMAP server (Debian's `dovecot-imapd`) on a free loopback port, with a throwaway
configuration, one user and one Maildir in a temporary folder; STARTTLS with a certificate made
by openssl here and now.

Needs root (Dovecot's master drops to its own users) and the package, which `.ci/system-deps`
installs; `available()` says why not otherwise."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .daemons import stop, unavailable, wait_for_port
from .smtp_server import self_signed_context

DOVECOT = "/usr/sbin/dovecot"
MAIL_USER = "nobody"  # an unprivileged user every system has: it owns the Maildir


def available() -> str | None:
    return unavailable(DOVECOT, "dovecot-imapd", "Dovecot")


@dataclass(frozen=True)
class Mailbox:
    port: int
    name: str
    path: Path

    def deliver(self, name: str, data: bytes) -> None:
        """A message arriving in the folder (as an MTA delivers: tmp/, then new/)."""
        temporary = self.path / "tmp" / name
        temporary.write_bytes(data)
        os.chown(temporary, *_mail_ids())
        temporary.rename(self.path / "new" / name)


def _mail_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid


class Dovecot:
    def __init__(self, port: int, user: str, password: str):
        self.folder = Path(tempfile.mkdtemp(prefix="papers-digest-dovecot-"))
        self.folder.chmod(0o755)
        self.port, self.user, self.password = port, user, password
        self.maildir = self.folder / "mail" / user

    def __enter__(self) -> Dovecot:
        for name in ("run", "state", "mail"):
            (self.folder / name).mkdir()
        for sub in ("new", "cur", "tmp"):
            (self.maildir / sub).mkdir(parents=True)
        for path in [self.folder / "mail", self.maildir, *self.maildir.iterdir()]:
            os.chown(path, *_mail_ids())
        self_signed_context(self.folder)  # cert.pem, key.pem
        (self.folder / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        uid = os.stat(self.maildir).st_uid
        gid = os.stat(self.maildir).st_gid
        (self.folder / "dovecot.conf").write_text(
            f"""
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.folder}/cert.pem
ssl_key = <{self.folder}/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{self.folder}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.folder}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.folder}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        )
        self.master = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.folder / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.port, self.master, "Dovecot", self.log)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def mailbox(self, name: str) -> Mailbox:
        """A folder of its own (Maildir++ `.name`), so that tests can share one server."""
        folder = Mailbox(self.port, name, self.maildir / f".{name}")
        for sub in ("", "new", "cur", "tmp"):
            (folder.path / sub).mkdir(exist_ok=True)
            os.chown(folder.path / sub, *_mail_ids())
        return folder

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "master", None) is not None:
            stop(self.master)
        shutil.rmtree(self.folder, ignore_errors=True)
