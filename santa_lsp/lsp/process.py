"""The server process: keep stdout for the protocol, and die with the editor.

An orphaned server would keep gigabytes of model weights in memory, so besides exiting when
stdin closes, the server watches the client's process id (from `initialize`) and exits when
that process is gone.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO, NoReturn

log = logging.getLogger(__name__)

PARENT_POLL_S = 1.0


def claim_stdout() -> BinaryIO:
    """Return a private handle on the real stdout and point fd 1 (and sys.stdout) at stderr,
    so that nothing else (a stray print, a native library) can corrupt the protocol stream."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")


def is_loopback(host: str) -> bool:
    """True if `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve anywhere


def process_alive(pid: int) -> bool:
    if os.name == "nt":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _windows_process_alive(pid: int) -> bool:
    import ctypes

    synchronize, wait_timeout = 0x00100000, 0x102
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(synchronize, False, pid)
    if not handle:
        return False
    try:
        return kernel32.WaitForSingleObject(handle, 0) == wait_timeout
    finally:
        kernel32.CloseHandle(handle)


MAX_PID = 2**31 - 1  # process ids are positive C ints; os.kill(2**40, 0) raises OverflowError


def watch_parent(pid: int | None, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` (from a daemon thread) once process `pid` has exited."""
    if not pid or pid == os.getpid():
        return
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= MAX_PID:
        # 0 and negative ids name process groups (-1: every process); larger ones name nothing.
        log.warning("initialize: processId %s is not a process id; not watching it", str(pid)[:40])
        return
    if not process_alive(pid):
        # Another PID namespace (a container, a remote client): nothing to watch.
        log.info("client process %d is not visible from here; not watching it", pid)
        return

    def poll() -> None:
        while process_alive(pid):
            time.sleep(PARENT_POLL_S)
        on_gone()

    threading.Thread(target=poll, name="santa-parent-watch", daemon=True).start()


def exit_now(code: int) -> NoReturn:
    """Leave at once, whatever threads are still running (a generation, a download)."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)

