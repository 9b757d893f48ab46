"""Editing the groups of `model.weights.h5`: copy, move, delete.

A pass records group operations in its `Edit` (it never writes a file);
`edited_weights` applies them, in order, to a scratch copy of the archive's
`model.weights.h5` and hands the writer its path. The input archive is never
opened for writing. Copies are HDF5 copies inside the scratch file: the data
of the groups that are copied is read, nothing else.

Keras names a model's weight groups after the layer's class and its place in
`model.layers` (`layers/dense`, `layers/dense_1`, ...), so adding a layer or
changing the order renumbers groups: `regroup` turns "this group's content
now comes from that group" into operations that are safe in any order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .archive import WEIGHTS_H5, Archive
from .errors import ArchiveError

# Suffix of the scratch name a group is parked under while groups swap places;
# Keras's group names (snake case and digits) never contain it.
SCRATCH_SUFFIX = ".kerasrepair-scratch"


@dataclass(frozen=True)
class CopyGroup:
    """Copy the group at `source` (and all under it) to `target`, a new path."""

    source: str
    target: str

    def describe(self) -> str:
        return f"copied {self.source} to {self.target}"


@dataclass(frozen=True)
class MoveGroup:
    """Rename the group at `source` to `target`, a new path."""

    source: str
    target: str

    def describe(self) -> str:
        return f"moved {self.source} to {self.target}"


@dataclass(frozen=True)
class DeleteGroup:
    path: str

    def describe(self) -> str:
        return f"deleted {self.path}"


@dataclass(frozen=True)
class SetLayerName:
    """Set the `name` attribute Keras 3.6+ stores on `<group>/vars` (the layer's
    name; Keras only writes it, so this keeps the file honest for readers)."""

    group: str
    layer_name: str

    def describe(self) -> str:
        return f"named {self.group} '{self.layer_name}'"


GroupOp = CopyGroup | MoveGroup | DeleteGroup | SetLayerName


def regroup(sources: Mapping[str, str]) -> list[GroupOp]:
    """Operations that give each target group the content its source group has now.

    `sources` maps target path -> source path, for the groups that change; a
    source may feed several targets (copies). A source that is not also a
    target keeps its place and content; one that is a target is parked under a
    scratch name first, so swaps and shifts (`dense_1` -> `dense_2`,
    `dense` -> `dense_1`) work in any order.
    """
    targets_of: dict[str, list[str]] = {}
    for target, source in sorted(sources.items()):
        if target != source:
            targets_of.setdefault(source, []).append(target)
    parked = sorted(source for source in targets_of if source in sources)
    ops: list[GroupOp] = [MoveGroup(source, source + SCRATCH_SUFFIX) for source in parked]
    for source, targets in sorted(targets_of.items()):
        if source in parked:
            *copies, last = targets
            origin = source + SCRATCH_SUFFIX
            ops += [CopyGroup(origin, target) for target in copies]
            ops.append(MoveGroup(origin, last))
        else:
            ops += [CopyGroup(source, target) for target in targets]
    return ops


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
