"""What the tests' real servers (Postfix, Dovecot) share: whether one can run here, waiting for its
port, and stopping its process."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def unavailable(program: str, package: str, name: str) -> str | None:
    """None when `program` can be started here (installed, and we are root), else why not."""
    if not Path(program).exists():
        return f"{name} is not installed (`make test` installs Debian's {package} as root)"
    if os.geteuid() != 0:
        return f"{name}'s master must be started as root"
    return None


def wait_for_port(
    port: int, process: subprocess.Popen, name: str, log: Callable[[], str], seconds: float = 30
) -> None:
    """Until something listens on 127.0.0.1:`port`; `RuntimeError` with the server's log when the
    process ends or the time runs out first."""
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{name} did not start on port {port}: {log()[-2000:]}")
        time.sleep(0.1)


def stop(process: subprocess.Popen, terminate: bool = True) -> None:
    """Let the process end (asking it to with SIGTERM unless told otherwise), or kill it."""
    if process.poll() is None and terminate:
        process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
