"""The weights tree read by a child process while this one checks config.json.

Reading an archive's weights tree (`Archive.weights`) needs nothing of the
config: the walk of the HDF5 metadata (~0.05 s for EfficientNetB7's 2,674
objects by `hdf5_tree`; h5py's import, ~0.1 s, and its walk, ~0.3 s, for a
file that declines) can be done meanwhile. On a machine with
more than one core, the CLI forks a child that reads the tree while the parent
parses and validates config.json; the tree comes back as JSON through a pipe
(never pickle). Anything unexpected (the child killed, the file changed, a
platform without fork) and the parent reads the tree itself, as it always did;
an unreadable weights entry is the same one-line error either way.

The `kerasrepair` command forks the child first of all (`early`, before the
CLI's own imports), so that it reads while the parent imports the CLI. It
reads the tree of the archive the command line names
(`__main__.archive_named`) at once, then waits for the path the command sends
once its arguments are parsed (`start`): the tree read is the answer if the
paths are the same, else it reads the one sent. Only the CLI forks, before it has
started a thread or opened an archive: a library caller's process may hold
threads.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

from . import forked


class Pending:
    """A child reading an archive's weights tree: `tree()` waits for it."""

    def __init__(self, child: forked.Child):
        self._child = child

    def tree(self, identity: tuple, read_names):
        """The child's tree of the file whose `identity` (`Archive.identity`) the
        parent opened, or None when the parent must read it itself; raises the
        child's ArchiveError for weights that cannot be read. The layer names
        the child left unread are read by `read_names`, when used."""
        said = self._child.answer()
        if not isinstance(said, dict) or said.get("identity") != list(identity):
            return None  # killed, or another file stood at the path by then
        from .errors import ArchiveError
        from .weights_tree import tree_from_dict

        if "error" in said:
            raise ArchiveError(*said["error"])
        return tree_from_dict(said["tree"], read_names)

    def cancel(self) -> None:
        """Stop the child (the weights were never needed)."""
        self._child.cancel()


# the child forked by `early`, waiting for a path, and where the path is written
_waiting: tuple[forked.Child, int] | None = None


def early(likely: str | None = None, names: bool = False) -> None:
    """Fork the child now, before the CLI's imports: it imports what it reads
    with meanwhile and reads the tree of the archive at `likely`, if given, then waits for
    the path `start` sends (or for `stop`, or this process's end: it is
    stopped then, whatever it is doing). `names`: the layer names on the
    `vars` groups too, which `check` and `fix` seldom use and `inspect` shows."""
    global _waiting
    if not _wanted():
        return
    likely = os.path.abspath(likely) if likely else None
    path_read, path_write = os.pipe()
    child = forked.run(lambda: _read_sent(path_read, likely, names), close=(path_write,))
    os.close(path_read)
    _waiting = (child, path_write)
    atexit.register(stop)  # e.g. a usage error: the CLI ends without `start`


def start(path: str | os.PathLike, names: bool = False) -> None:
    """Have a child read the weights tree of the archive at `path`, for the
    Archive opened at `path` to take (`archive.READ_AHEAD`): the one `early`
    forked, or one forked now. Nothing where it would not help (one core, no
    fork) or h5py is loaded already (a process that has read HDF5, a test run,
    may hold its library's threads and locks); KERASREPAIR_PREFETCH=0 turns it
    off, =1 on even with one core. `names`: as `early` says (the child `early`
    forked reads the names if `early` was told to; this `names` is not sent)."""
    global _waiting
    from .archive import READ_AHEAD

    path = os.path.abspath(path)
    if _waiting is not None:
        child, path_write = _waiting
        _waiting = None
        with contextlib.suppress(OSError):  # a dead child answers None: read here then
            os.write(path_write, os.fsencode(path))
        os.close(path_write)
    elif _wanted() and "h5py" not in sys.modules:
        child = forked.run(lambda: _read(path, names, forget_others=True))
    else:
        return
    READ_AHEAD[path] = Pending(child)


def stop() -> None:
    """End the child `early` forked, if `start` did not use it (e.g. `check`
    of many archives, each read here)."""
    global _waiting
    if _waiting is not None:
        child, path_write = _waiting
        _waiting = None
        os.close(path_write)  # the child reads no path, and exits
        child.cancel()


def _wanted() -> bool:
    wanted = os.environ.get("KERASREPAIR_PREFETCH")  # "0": never (to compare); "1": always
    if wanted == "0" or not forked.possible():
        return False
    return (os.cpu_count() or 1) >= 2 or wanted == "1"


def _read_sent(fd: int, likely: str | None, names: bool) -> dict | None:
    """In the child `early` forked: its imports and the tree of the archive
    at `likely` (if any), then the tree of the archive whose path the parent
    writes to `fd` (and closes it after; none: None): the one read already
    when the paths are the same."""
    # numpy's BLAS starts a thread per core when imported (h5py imports it, for
    # a file `hdf5_tree` declines); this child does no algebra
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from . import archive, hdf5_tree  # noqa: F401 (imported while the parent has no path to send)

    read = _read(likely, names) if likely else None
    with os.fdopen(fd, "rb") as said:
        path = os.fsdecode(said.read())
    if not path:
        return None
    return read if path == likely else _read(path, names)


def _read(path: str, names: bool, forget_others: bool = False) -> dict | None:
    """The answer of a child: the tree of the archive at `path` (with its
    layer names, if `names`), and its identity. `forget_others`: the
    read-ahead children this process started before are not the child's to
    wait for."""
    from .archive import READ_AHEAD, open_entries
    from .errors import ArchiveError
    from .weights_tree import VarGroups, tree_to_dict

    if forget_others:
        READ_AHEAD.clear()
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
            if names and isinstance(tree.var_groups, VarGroups):
                # unreadable names are left for the parent to meet, if it reads them
                with contextlib.suppress(ArchiveError):
                    tree.var_groups.read_all()
            answer["tree"] = tree_to_dict(tree)
        return answer
