"""Applying the group operations of an `Edit` (`edit.py`) to `model.weights.h5`.

The writer's side: a rule records operations (it never writes a file);
`edited_weights` applies them, in order, to a scratch copy of the archive's
`model.weights.h5` and hands the writer its path. The input archive is never
opened for writing. Copies are HDF5 copies inside the scratch file: the data
of the groups that are copied is read, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .archive import WEIGHTS_H5, Archive
from .edit import CopyGroup, DeleteGroup, GroupOp, SetLayerName
from .errors import ArchiveError


@contextlib.contextmanager
def edited_weights(
    archive: Archive, ops: list[GroupOp], directory: str | os.PathLike | None = None
) -> Iterator[Path]:
    """The archive's `model.weights.h5` with `ops` applied, as a scratch file
    in `directory` (default: the system's temporary directory) that exists
    only inside the `with` block."""
    entry = archive.entry(WEIGHTS_H5)
    if entry is None:
        raise ArchiveError(
            str(archive.path),
            f"has no {WEIGHTS_H5} to edit",
            "this repair needs the weights in HDF5 form",
        )
    with tempfile.TemporaryDirectory(dir=directory, prefix=".kerasrepair-") as scratch:
        path = Path(scratch) / WEIGHTS_H5
        with archive.open_seekable(entry) as source, open(path, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
        apply_ops(path, ops)
        yield path


def apply_ops(path: str | os.PathLike, ops: list[GroupOp]) -> None:
    """Apply group operations, in order, to the HDF5 file at `path` (in place).

    A source that does not exist is skipped: Keras stored nothing for that
    layer. A target that exists already is an error, never overwritten.
    """
    import h5py  # ~0.2 s to import: only when weights are edited

    with h5py.File(path, "r+") as h5:
        for op in ops:
            if isinstance(op, SetLayerName):
                variables = h5.get(f"{op.group}/vars")
                if variables is not None and "name" in variables.attrs:
                    variables.attrs["name"] = op.layer_name
                continue
            source = op.path if isinstance(op, DeleteGroup) else op.source
            if source not in h5:
                continue
            if isinstance(op, DeleteGroup):
                del h5[op.path]
                continue
            if op.target in h5:
                raise ValueError(f"{op.describe()}: {op.target} exists already")
            if isinstance(op, CopyGroup):
                h5.copy(h5[op.source], op.target)
            else:
                h5.move(op.source, op.target)
