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
import re
import tokenize
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

import h5py
import numpy as np
from h5py import h5a, h5d, h5l, h5o

from .edit import CopyGroup, DeleteGroup, GroupOp, SetLayerName
from .errors import ArchiveError
from .hdf5_file import HeapCheckedFile

OPTIMIZER = "optimizer/"
_OPTIMIZER_GROUPS = (OPTIMIZER, "optimizer_weights/")  # Keras 3's, a legacy HDF5 model's


@dataclass(frozen=True)
class Variable:
    path: str  # e.g. "layers/dense/vars/0"
    shape: tuple[int, ...]
    dtype: str
    nbytes: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# A dataset that declares more than BOMB_FLOOR bytes must store at least
# 1/BOMB_RATIO of it, or be a shape bomb (KR910). Below the floor a lie costs
# at most 64 MiB, and the storage size is not even asked: no cost on the
# thousands of small weights of a big model. Deflate, HDF5's one built-in
# compressor, cannot pass ~1032:1 (an all-zero float32 dataset gzip'd in one
# chunk: 1029x), so a real weight, even all zeros, stays within 2000x; beyond
# it, chunks were never written, and reading allocates what is declared
# (CVE-2026-0897). Keras 3.15 refuses beyond 4 GiB and 1000x; this is stricter
# and never fires on weights Keras wrote (contiguous, uncompressed: 1x).
BOMB_FLOOR = 64 << 20
BOMB_RATIO = 2000


@dataclass(frozen=True)
class WeightsProblem:
    path: str
    what: str
    # the rule that reports it: KR901 (a link or storage outside the file, or
    # unreadable), KR910 (declares far more data than it stores)
    code: str = "KR901"


@dataclass
class WeightsTree:
    format: str  # "h5", "npz", "none", or "legacy-h5" (a Keras 2 HDF5 model's model_weights)
    entry: str | None
    variables: list[Variable] = field(default_factory=list)
    # group path of each `vars` group -> the layer name Keras stored on it
    # (Keras 3.6+ writes a `name` attribute), or None
    var_groups: dict[str, str | None] = field(default_factory=dict)
    problems: list[WeightsProblem] = field(default_factory=list)
    optimizer_iterations: int | None = None
    # npz keys holding pickled object arrays: never unpickled, so not described
    pickled: list[str] = field(default_factory=list)
    _params_by_group: dict[str, int] | None = field(default=None, repr=False)

    @property
    def model_variables(self) -> list[Variable]:
        return [v for v in self.variables if not v.path.startswith(_OPTIMIZER_GROUPS)]

    @property
    def optimizer_variables(self) -> list[Variable]:
        return [v for v in self.variables if v.path.startswith(_OPTIMIZER_GROUPS)]

    def listing(self) -> list[str]:
        """One line per `vars` group (`path/`) and per variable (`path shape
        dtype`), in natural order: what `fix --diff` compares."""
        lines = [(path, f"{path}/") for path in self.var_groups]
        lines += [(v.path, f"{v.path} {v.shape} {v.dtype}") for v in self.variables]
        return [line for _, line in sorted(lines, key=lambda item: _natural_key(item[0]))]

    def params_under(self, group: str) -> int:
        """Number of weight values stored under a group path, e.g. `layers/dense`."""
        if self._params_by_group is None:
            totals: dict[str, int] = {}
            for variable in self.variables:
                parts = variable.path.split("/")
                for end in range(1, len(parts)):
                    prefix = "/".join(parts[:end])
                    totals[prefix] = totals.get(prefix, 0) + variable.size
            self._params_by_group = totals
        return self._params_by_group.get(group.rstrip("/"), 0)

    def unclaimed_groups(self, claimed: set[str]) -> list[str]:
        """The groups holding model weights (not the optimizer's) under none of
        the `claimed` paths (the layers' groups, `layers/dense`), sorted."""

        def under_claimed(group: str) -> bool:
            parts = group.split("/")
            return any("/".join(parts[:end]) in claimed for end in range(1, len(parts) + 1))

        return sorted(
            group
            for group in {path.removesuffix("/vars") for path in self.var_groups}
            if group != "vars"
            and not (group + "/").startswith(OPTIMIZER)
            and not under_claimed(group)
            and self.params_under(group)
        )

    def edited(self, ops: list[GroupOp]) -> WeightsTree:
        """The tree the group operations `ops` leave, computed from the paths
        alone (what `weights_edit.apply_ops` does to the file, which the writer
        checks against this)."""
        variables = {v.path: v for v in self.variables}
        groups = dict(self.var_groups)
        for op in ops:
            if isinstance(op, SetLayerName):
                key = f"{op.group}/vars"
                if groups.get(key) is not None:
                    groups[key] = op.layer_name
                continue
            source = op.path if isinstance(op, DeleteGroup) else op.source
            if not any(_under(path, source) for path in (*variables, *groups)):
                continue  # as in the file: Keras stored nothing there
            moved_variables = {p: v for p, v in variables.items() if _under(p, source)}
            moved_groups = {p: n for p, n in groups.items() if _under(p, source)}
            if not isinstance(op, CopyGroup):
                for path in moved_variables:
                    del variables[path]
                for path in moved_groups:
                    del groups[path]
            if isinstance(op, DeleteGroup):
                continue
            if any(_under(path, op.target) for path in (*variables, *groups)):
                raise ValueError(f"{op.describe()}: {op.target} exists already")
            for path, variable in moved_variables.items():
                new = op.target + path[len(source) :]
                variables[new] = dataclasses.replace(variable, path=new)
            for path, name in moved_groups.items():
                groups[op.target + path[len(source) :]] = name
        tree = WeightsTree(
            format=self.format,
            entry=self.entry,
            variables=sorted(variables.values(), key=lambda v: _natural_key(v.path)),
            var_groups=dict(sorted(groups.items(), key=lambda item: _natural_key(item[0]))),
            problems=list(self.problems),
            optimizer_iterations=self.optimizer_iterations
            if any(p.startswith(OPTIMIZER) for p in variables)
            else None,
            pickled=list(self.pickled),
        )
        return tree


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
        variables=sorted(variables, key=lambda v: _natural_key(v.path)),
        var_groups={g: names.get(g) for g in sorted(groups, key=_natural_key)},
        optimizer_iterations=iterations,
    )


def read_h5(file: BinaryIO, entry: str, where: str) -> WeightsTree:
    """The tree of the HDF5 weights in `file` (seekable); `where` names it in errors."""
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
            _read_tree(h5, tree, size)
    return tree


def read_h5_file(path: str | os.PathLike, entry: str) -> WeightsTree:
    """The tree of an HDF5 weights file on disk, e.g. an edited scratch copy."""
    tree = WeightsTree(format="h5", entry=entry)
    with h5py.File(path, "r") as h5:
        _read_tree(h5, tree, os.path.getsize(path))
    return tree


def _under(path: str, group: str) -> bool:
    return path == group or path.startswith(group + "/")


def _read_tree(h5: h5py.File, tree: WeightsTree, file_size: int) -> None:
    _walk(h5, tree, file_size)
    _read_iterations(h5, tree)
    tree.variables.sort(key=lambda v: _natural_key(v.path))


def _walk(h5: h5py.File, tree: WeightsTree, file_size: int) -> None:
    """Record every dataset and `vars` group; report links that lead elsewhere.

    HDF5's own visitors, through h5py's low-level API (twice as fast as
    building h5py's Group and Dataset objects): the object visitor (H5Ovisit)
    reaches objects through hard links only, each once, cycles included; the
    link visitor (H5Lvisit) lists every link reached that way, at any depth,
    without following soft or external ones. So a soft or external link is
    reported wherever it stands (the root, a layer's group, `vars`, a
    variable), and what it names is never opened: not even whether it exists.
    """
    file_id = h5.id

    def on_object(name: bytes, info) -> None:
        path = name.decode("utf-8", "replace")
        if info.type == h5o.TYPE_DATASET:
            _add_dataset(h5d.open(file_id, name), path, tree, file_size)
        elif info.type == h5o.TYPE_GROUP and path.rsplit("/", 1)[-1] == "vars":
            tree.var_groups[path] = _name_attribute(file_id, name) if info.num_attrs else None

    def on_link(name: bytes, info) -> None:
        if info.type != h5l.TYPE_HARD:
            path = name.decode("utf-8", "replace")
            tree.problems.append(WeightsProblem(path, _link_text(file_id, name, info.type)))

    h5o.visit(file_id, on_object, info=True)
    file_id.links.visit(on_link, info=True)  # cheap once the objects are cached


def _link_text(file_id: h5py.h5f.FileID, name: bytes, kind: int) -> str:
    """What a soft, external or user-defined link names, read from the link
    itself (H5Lget_val): the link is not traversed."""
    if kind == h5l.TYPE_SOFT:
        return f"soft link to '{_text(file_id.links.get_val(name))}' (not followed)"
    if kind == h5l.TYPE_EXTERNAL:
        filename, path = file_id.links.get_val(name)
        return f"external link to '{_text(filename)}:{_text(path)}' (not followed)"
    return f"user-defined link of type {kind} (not followed)"


def _text(value: bytes | str, limit: int = 200) -> str:
    """A name from the file, for a message: decoded, and cut if absurdly long."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text if len(text) <= limit else text[:limit] + "..."


def _add_dataset(dataset: h5d.DatasetID, path: str, tree: WeightsTree, file_size: int) -> None:
    """A variable, or a problem: storage outside the file, or a shape bomb.
    Only the dataset's header is read; its storage size is asked (H5Dget_storage_size,
    no data read) only when it declares more than BOMB_FLOOR bytes."""
    plist = dataset.get_create_plist()
    if plist.get_layout() == h5d.VIRTUAL:
        sources = sorted(
            {
                f"'{_text(plist.get_virtual_filename(i))}:{_text(plist.get_virtual_dsetname(i))}'"
                for i in range(plist.get_virtual_count())
            }
        )
        tree.problems.append(
            WeightsProblem(path, f"virtual dataset mapping {', '.join(sources)} (not read)")
        )
        return
    if plist.get_external_count():
        files = ", ".join(
            _text(plist.get_external(i)[0]) for i in range(plist.get_external_count())
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
        return (
            f"declares {shape} {dataset.dtype} ({_bytes_text(declared)}) but stores "
            f"{_bytes_text(stored)} in a file of {_bytes_text(file_size)} (not read)"
        )
    return None


def _bytes_text(count: int) -> str:
    """`4.0 TiB`, `24.5 KiB`, `17 bytes`."""
    size, unit = float(count), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{count} bytes" if unit == "bytes" else f"{size:,.1f} {unit}"


def _name_attribute(file_id: h5py.h5f.FileID, group: bytes) -> str | None:
    """The layer name Keras 3.6+ stores on a `vars` group, if it is a short string."""
    if not h5a.exists(file_id, b"name", obj_name=group):  # opening a missing one costs 1 ms
        return None
    attribute = h5a.open(file_id, b"name", obj_name=group)
    dtype = attribute.dtype
    if dtype.kind not in "OSU" or attribute.shape != () or attribute.get_storage_size() > 4096:
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
    tree.variables.sort(key=lambda v: _natural_key(v.path))
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
                f"declares {shape} {dtype} ({_bytes_text(declared)}) but its .npy member "
                f"holds {_bytes_text(info.file_size)} (not read)",
                code="KR910",
            )
        )
        return
    tree.variables.append(Variable(key, shape, str(dtype), declared))


def _natural_key(path: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]
