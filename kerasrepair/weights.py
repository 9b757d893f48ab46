"""The weights tree of a file object, described without reading the weight data.

`model.weights.h5` is opened with h5py from a seekable file object (the archive
hands one over the entry's bytes in place: Keras stores it uncompressed), so
listing a 1000-variable model reads only HDF5 metadata. Links that lead
elsewhere (soft and external links, external storage, virtual datasets) are
reported, never followed (KR901), and so are datasets that declare far more
data than they store (shape bombs, KR910): neither is read.

`model.weights.npz` holds pickled object arrays (Keras saves a dict per
layer); pickles are never loaded, so only its keys are listed.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import tokenize
import zipfile
from collections.abc import Callable
from typing import BinaryIO

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5l, h5o, h5t

from .errors import ArchiveError
from .hdf5_file import HeapCheckedFile, bounded_memory
from .weights_tree import (
    BOMB_FLOOR,
    BOMB_RATIO,
    OPTIMIZER,
    VarGroups,
    Variable,
    WeightsProblem,
    WeightsTree,
    bomb_text,
    bytes_text,
    name_text,
    natural_key,
    soft_link_text,
)


def legacy_tree(legacy) -> WeightsTree:
    """The weights of a legacy HDF5 model (`legacy_h5.LegacyModel`) as a tree:
    its dataset paths (`model_weights/dense/dense/kernel:0`), Keras 2's layout."""
    variables = [
        Variable(w.path, w.shape, w.dtype, math.prod(w.shape) * np.dtype(w.dtype).itemsize)
        for weights in (*legacy.layers.values(), legacy.optimizer)
        for w in weights
    ]
    iterations = None  # read only when asked: the legacy file is not kept open
    return WeightsTree(
        format="legacy-h5",
        entry="model_weights",
        variables=variables,
        optimizer_iterations=iterations,
    )


def planned_tree(plan, source: WeightsTree) -> WeightsTree:
    """The tree of the weights file `keras3_weights.write` makes from `plan`
    (a `keras3_weights.Plan` over the `source` tree), from paths alone."""
    by_path = {v.path: v for v in source.variables}
    variables = []
    for path, origin in plan.datasets:
        if hasattr(origin, "path"):
            variables.append(dataclasses.replace(by_path[origin.path], path=path))
        else:
            dtype = np.dtype(origin.dtype)
            variables.append(Variable(path, (), str(dtype), dtype.itemsize))
    names = dict(plan.names)
    groups = [g for g in plan.groups if g.rsplit("/", 1)[-1] == "vars"]
    iterations = source.optimizer_iterations
    if not any(v.path.startswith(OPTIMIZER) for v in variables):
        iterations = None
    return WeightsTree(
        format="h5",
        entry="model.weights.h5",
        variables=sorted(variables, key=lambda v: natural_key(v.path)),
        var_groups={g: names.get(g) for g in sorted(groups, key=natural_key)},
        optimizer_iterations=iterations,
    )


def read_h5(
    file: BinaryIO,
    entry: str,
    where: str,
    read_later: Callable[[list[str]], dict[str, str | None]] | None = None,
) -> WeightsTree:
    """The tree of the HDF5 weights in `file` (seekable); `where` names it in
    errors. With `read_later` (`read_names` of the same file), the layer
    names on `vars` groups are read when first used (`VarGroups`), not now."""
    tree = WeightsTree(format="h5", entry=entry)
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    # HDF5 reads its metadata in many small pieces: a page-sized read-ahead
    # saves round trips through Python without pulling in weight data.
    with io.BufferedReader(file, 4096) as raw:
        try:
            h5 = h5py.File(HeapCheckedFile(raw, where), "r")
        except OSError as e:
            raise ArchiveError(
                where,
                f"is not a readable HDF5 file ({e})",
                "the weights are damaged; re-save the model",
            ) from None
        with h5:
            named = _read_tree(h5, tree, size)
            if read_later is None:
                tree.var_groups = {**tree.var_groups, **_names(h5, named)}
    if read_later is not None:
        tree.var_groups = VarGroups(tree.var_groups, named, read_later)
    return tree


def read_names(file: BinaryIO, groups: list[str], where: str) -> dict[str, str | None]:
    """The layer names stored on the `vars` groups `groups` of the HDF5 weights
    in `file`; h5py's errors on damage are raised as they are (`Archive` says them)."""
    with io.BufferedReader(file, 4096) as raw, h5py.File(HeapCheckedFile(raw, where), "r") as h5:
        return _names(h5, groups)


def read_h5_file(path: str | os.PathLike, entry: str) -> WeightsTree:
    """The tree of an HDF5 weights file on disk, e.g. an edited scratch copy."""
    tree = WeightsTree(format="h5", entry=entry)
    with h5py.File(path, "r") as h5:
        named = _read_tree(h5, tree, os.path.getsize(path))
        tree.var_groups = {**tree.var_groups, **_names(h5, named)}
    return tree


def _names(h5: h5py.File, groups: list[str]) -> dict[str, str | None]:
    with bounded_memory(h5.id.get_filesize()):  # once for all: a limit set is a syscall
        return {group: _name_attribute(h5.id, group.encode()) for group in groups}


def _read_tree(h5: h5py.File, tree: WeightsTree, file_size: int) -> list[str]:
    """The walk; returns the `vars` groups whose layer names are not read yet."""
    named = _walk(h5, tree, file_size)
    _read_iterations(h5, tree)
    tree.variables.sort(key=lambda v: natural_key(v.path))
    return named


def _walk(h5: h5py.File, tree: WeightsTree, file_size: int) -> list[str]:
    """Record every dataset and `vars` group; report links that lead elsewhere;
    return the `vars` groups with attributes (a layer name, unread yet).

    HDF5's own visitors, through h5py's low-level API (twice as fast as
    building h5py's Group and Dataset objects): the object visitor (H5Ovisit)
    reaches objects through hard links only, each once, cycles included; the
    link visitor (H5Lvisit) lists every link reached that way, at any depth,
    without following soft or external ones. So a soft or external link is
    reported wherever it stands (the root, a layer's group, `vars`, a
    variable), and what it names is never opened: not even whether it exists.
    """
    file_id = h5.id
    groups: dict[str, None] = {}
    named: list[str] = []  # the groups with attributes: a name, maybe

    def on_object(name: bytes, info) -> None:
        path = name.decode("utf-8", "replace")
        if info.type == h5o.TYPE_DATASET:
            _add_dataset(h5d.open(file_id, name), path, tree, file_size)
        elif info.type == h5o.TYPE_GROUP and path.rsplit("/", 1)[-1] == "vars":
            groups[path] = None
            if info.num_attrs:
                named.append(path)

    def on_link(name: bytes, info) -> None:
        if info.type != h5l.TYPE_HARD:
            path = name.decode("utf-8", "replace")
            tree.problems.append(WeightsProblem(path, _link_text(file_id, name, info.type)))

    _visit(lambda visitor: h5o.visit(file_id, visitor, info=True), on_object)
    _visit(lambda visitor: file_id.links.visit(visitor, info=True), on_link)  # cached by now
    tree.var_groups = groups
    return named


def _visit(visit: Callable, callback: Callable) -> None:
    """`visit(visitor)` calling `callback` on each object or link; an exception
    the callback raises (h5py's, on damage) stops the visit and is raised
    from here: raised through HDF5's visitor, h5py turns it into SystemError."""
    failed: list[BaseException] = []

    def visitor(name: bytes, info):
        try:
            callback(name, info)
        except BaseException as e:  # noqa: BLE001 (raised below, as it was)
            failed.append(e)
            return 1  # anything but None stops the visit
        return None

    visit(visitor)
    if failed:
        raise failed[0]


def _link_text(file_id: h5py.h5f.FileID, name: bytes, kind: int) -> str:
    """What a soft, external or user-defined link names, read from the link
    itself (H5Lget_val): the link is not traversed."""
    if kind == h5l.TYPE_SOFT:
        return soft_link_text(file_id.links.get_val(name))
    if kind == h5l.TYPE_EXTERNAL:
        filename, path = file_id.links.get_val(name)
        return f"external link to '{name_text(filename)}:{name_text(path)}' (not followed)"
    return f"user-defined link of type {kind} (not followed)"


def _add_dataset(dataset: h5d.DatasetID, path: str, tree: WeightsTree, file_size: int) -> None:
    """A variable, or a problem: storage outside the file, or a shape bomb.
    Only the dataset's header is read; its storage size is asked (H5Dget_storage_size,
    no data read) only when it declares more than BOMB_FLOOR bytes."""
    plist = dataset.get_create_plist()
    if plist.get_layout() == h5d.VIRTUAL:
        sources = sorted(
            {
                f"'{name_text(plist.get_virtual_filename(i))}:{name_text(plist.get_virtual_dsetname(i))}'"
                for i in range(plist.get_virtual_count())
            }
        )
        tree.problems.append(
            WeightsProblem(path, f"virtual dataset mapping {', '.join(sources)} (not read)")
        )
        return
    if plist.get_external_count():
        files = ", ".join(
            name_text(plist.get_external(i)[0]) for i in range(plist.get_external_count())
        )
        tree.problems.append(
            WeightsProblem(path, f"data stored in external files: {files} (not read)")
        )
        return
    shape = tuple(int(n) for n in dataset.shape or ())
    dtype = dataset.dtype
    declared = math.prod(shape) * dtype.itemsize
    bomb = declared > BOMB_FLOOR and _shape_bomb(dataset, shape, declared, file_size)
    if bomb:
        tree.problems.append(WeightsProblem(path, bomb, code="KR910"))
    else:
        tree.variables.append(Variable(path=path, shape=shape, dtype=str(dtype), nbytes=declared))


def _shape_bomb(
    dataset: h5d.DatasetID, shape: tuple[int, ...], declared: int, file_size: int
) -> str | None:
    """What is wrong with a dataset that declares `declared` bytes (over
    BOMB_FLOOR) when it stores far less: beyond what any compression gives,
    or raw data that cannot fit in its file. None when it is a weight."""
    stored = dataset.get_storage_size()  # the chunks' sizes on disk: no data is read
    unfiltered = dataset.get_create_plist().get_nfilters() == 0
    if declared > BOMB_RATIO * stored or (unfiltered and declared > file_size):
        return bomb_text(shape, str(dataset.dtype), declared, stored, file_size)
    return None


def _name_attribute(file_id: h5py.h5f.FileID, group: bytes) -> str | None:
    """The layer name Keras 3.6+ stores on a `vars` group, if it is a short
    string; read under `bounded_memory`."""
    try:
        group_id = h5g.open(file_id, group)  # once: each lookup by path walks it from the root
    except KeyError:  # a group whose name is no UTF-8 (its path was decoded with U+FFFD)
        return None
    if not h5a.exists(group_id, b"name"):  # opening a missing one costs 1 ms
        return None
    attribute = h5a.open(group_id, b"name")
    dtype = attribute.dtype
    if dtype.kind not in "OSU" or attribute.shape != () or attribute.get_storage_size() > 4096:
        return None
    if attribute.get_type().get_class() != h5t.STRING:  # a damaged type crashes HDF5's read
        return None
    value = np.empty((), dtype)
    attribute.read(value)
    value = value[()]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _read_iterations(h5: h5py.File, tree: WeightsTree) -> None:
    """The optimizer's step count: its first variable, one scalar read."""
    first = next((v for v in tree.variables if v.path == "optimizer/vars/0"), None)
    if first and first.shape == () and np.dtype(first.dtype).kind in "iu":
        try:
            tree.optimizer_iterations = int(h5[first.path][()])
        except (TypeError, ValueError, OSError):  # no value (an empty dataspace), unreadable
            tree.optimizer_iterations = None


def read_npz(file: BinaryIO, entry: str, where: str) -> WeightsTree:
    """The tree of the `.npz` weights in `file`: keys, shapes and dtypes from
    the `.npy` headers; object arrays (pickles) are listed, never loaded."""
    tree = WeightsTree(format="npz", entry=entry)
    with file as raw:
        try:
            npz = zipfile.ZipFile(raw)
        except zipfile.BadZipFile as e:
            raise ArchiveError(
                where,
                f"is not a readable .npz file ({e})",
                "the weights are damaged; re-save the model",
            ) from None
        with npz:
            for info in npz.infolist():
                _add_npy_header(npz, info, tree)
    tree.variables.sort(key=lambda v: natural_key(v.path))
    return tree


def _add_npy_header(npz: zipfile.ZipFile, info: zipfile.ZipInfo, tree: WeightsTree) -> None:
    key = info.filename.removesuffix(".npy")
    with npz.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }[version]
            shape, _, dtype = read_header(member)
        # numpy parses the header as a Python literal: damage is any of these
        except (ValueError, KeyError, TypeError, SyntaxError, tokenize.TokenError, RecursionError):
            tree.problems.append(WeightsProblem(key, "not a readable .npy header"))
            return
    if dtype.hasobject:
        tree.pickled.append(key)
        return
    shape = tuple(shape)
    declared = math.prod(shape) * dtype.itemsize
    # numpy allocates what the header declares before it reads the data (the
    # .npz form of a shape bomb); a member holds it raw, or deflated (<= ~1032:1)
    if declared > BOMB_FLOOR and (
        declared > info.file_size or declared > BOMB_RATIO * info.compress_size
    ):
        tree.problems.append(
            WeightsProblem(
                key,
                f"declares {shape} {dtype} ({bytes_text(declared)}) but its .npy member "
                f"holds {bytes_text(info.file_size)} (not read)",
                code="KR910",
            )
        )
        return
    tree.variables.append(Variable(key, shape, str(dtype), declared))
