"""The weights tree read by a child process while this one checks config.json.

Reading an archive's weights tree (`Archive.weights`) needs nothing of the
config: h5py's import (~0.1 s) and the walk of the HDF5 metadata (~0.25 s for
EfficientNetB7's 2,674 objects) are about half of `check`. On a machine with
more than one core, the CLI forks a child that reads the tree while the parent
parses and validates config.json; the tree comes back as JSON through a pipe
(never pickle). Anything unexpected (the child killed, the file changed, a
platform without fork) and the parent reads the tree itself, as it always did;
an unreadable weights entry is the same one-line error either way.

Only the CLI forks (`kerasrepair check`, `fix`), before it has started a
thread or opened the archive: a library caller's process may hold threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from .archive import READ_AHEAD, open_entries
from .errors import ArchiveError
from .weights_tree import tree_from_dict, tree_to_dict

CHILD_SECONDS = 600


class Pending:
    """A child reading an archive's weights tree: `tree()` waits for it."""

    def __init__(self, pid: int, fd: int):
        self._pid = pid
        self._fd = fd

    def tree(self, identity: tuple, read_names):
        """The child's tree of the file whose `identity` (`Archive.identity`) the
        parent opened, or None when the parent must read it itself; raises the
        child's ArchiveError for weights that cannot be read. The layer names
        the child left unread are read by `read_names`, when used."""
        try:
            with os.fdopen(self._fd, "rb") as answer:
                self._fd = -1
                said = json.loads(answer.read() or b"null")
        except (OSError, ValueError):
            said = None
        self._reap()
        if not isinstance(said, dict) or said.get("identity") != list(identity):
            return None  # killed, or another file stood at the path by then
        if "error" in said:
            raise ArchiveError(*said["error"])
        return tree_from_dict(said["tree"], read_names)

    def cancel(self) -> None:
        """Stop the child (the weights were never needed)."""
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


def start(path: str | os.PathLike) -> None:
    """Fork a child reading the weights tree of the archive at `path`, for the
    Archive opened at `path` to take (`archive.READ_AHEAD`). Nothing where it
    would not help (one core, no fork) or h5py is loaded already (a process
    that has read HDF5, a test run, may hold its library's threads and locks);
    KERASREPAIR_PREFETCH=0 turns it off, =1 on even with one core."""
    wanted = os.environ.get("KERASREPAIR_PREFETCH")  # "0": never (to compare); "1": always
    if not hasattr(os, "fork") or "h5py" in sys.modules or wanted == "0":
        return
    if (os.cpu_count() or 1) < 2 and wanted != "1":
        return
    path = Path(path)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, and never return into the CLI
        os.close(read)
        READ_AHEAD.clear()
        signal.alarm(CHILD_SECONDS)  # ends it even in native code, should HDF5 never return
        try:
            answer = json.dumps(_read(path)).encode()
            with os.fdopen(write, "wb") as out:
                out.write(answer)
        finally:
            os._exit(0)
    os.close(write)
    READ_AHEAD[os.path.abspath(path)] = Pending(pid, read)


def _read(path: Path) -> dict | None:
    try:
        archive = open_entries(path)
    except BaseException:  # noqa: BLE001 (the parent opens it too, and says why)
        return None
    if archive is None:
        return None  # a legacy HDF5 model: read as the parent opens it
    with archive:
        if archive.weights_entry is None:
            return None  # nothing to read ahead
        answer: dict = {"identity": list(archive.identity)}
        try:
            tree = archive.weights()
        except ArchiveError as e:  # the weights entry's own error: the parent's too
            answer["error"] = [e.where, e.what, e.hint]
        except BaseException:  # noqa: BLE001 (the parent reads it itself and says why)
            return None
        else:
            answer["tree"] = tree_to_dict(tree)
        return answer
