"""Work done by a forked child while this process goes on (`run`): what it
answers comes back as JSON through a pipe (never pickle), and a child that
dies or never answers is an answer of None, for the caller to do the work
itself. Only the CLI forks, before it has started a thread: a library
caller's process may hold threads and locks a child would inherit."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

CHILD_SECONDS = 600  # a child ends itself after this, even in native code


class Child:
    """A forked child working for this process."""

    def __init__(self, pid: int, fd: int):
        self._pid = pid
        self._fd = fd

    def answer(self) -> Any:
        """What the child answered, once it has (None: it died, or said nothing)."""
        try:
            with os.fdopen(self._fd, "rb") as answer:
                self._fd = -1
                said = json.loads(answer.read() or b"null")
        except (OSError, ValueError):
            said = None
        self._reap()
        return said

    def cancel(self) -> None:
        """Stop the child (its answer is not needed)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0


def possible() -> bool:
    """Whether this process may fork: a platform that can, and one thread, a
    native one included (another thread's locks would be held forever in the
    child: JAX's, OpenBLAS's once numpy is imported, a Dask worker's)."""
    return hasattr(os, "fork") and _threads() == 1


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))  # Linux: every thread, Python's or not
    except OSError:
        return threading.active_count()


def run(work: Callable[[], Any], close: tuple[int, ...] = ()) -> Child:
    """A child that answers `work()` and exits, having closed the descriptors
    `close` (this process's ends of other pipes). An exception in `work` is an
    answer of None; the child never returns into the caller's code."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            signal.alarm(CHILD_SECONDS)
            for fd in (read, *close):
                os.close(fd)
            # it says nothing but its answer, and holds no pipe of the caller's
            # open (`kerasrepair fix ... | head` ends with this process)
            quiet = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(quiet, fd)
            answer = json.dumps(work()).encode()
            with os.fdopen(write, "wb") as out:
                out.write(answer)
        finally:
            os._exit(0)
    os.close(write)
    return Child(pid, read)
