"""A legacy HDF5 Keras file, described without reading the weight data.

tf.keras (2.x) `model.save("m.h5")` writes the model's config and weights in
one HDF5 file:

    /                       attrs model_config (JSON), training_config (JSON),
                            keras_version, backend
    /model_weights          attrs layer_names (model.layers order), backend,
                            keras_version
    /model_weights/<layer>  attr weight_names: the layer's weights, trainable
                            ones first (`layer.trainable_weights +
                            layer.non_trainable_weights`); each a dataset at
                            /model_weights/<layer>/<weight name>, e.g.
                            /model_weights/lstm/lstm/lstm_cell/kernel:0
    /model_weights/top_level_model_weights   the model's own weights (not in
                            layer_names; empty for Functional and Sequential)
    /optimizer_weights      attr weight_names (the optimizer's variables in its
                            order), datasets at /optimizer_weights/<name>

`model.save_weights("w.h5")` writes the `model_weights` part at the root,
without a config. A name list longer than HDF5's 64 KiB attribute limit is
split into `layer_names0`, `layer_names1`, ... (as tf.keras's
`save_attributes_to_hdf5_group` does). A Keras 3 `x.weights.h5` (groups
`layers/...`, `vars`, `optimizer/...`) is recognised, not described here:
`weights.read_h5` reads that layout.

Only metadata is read, from a seekable file object: names, shapes, dtypes.
Anything unreadable or unsafe is an `ArchiveError`: links that lead elsewhere
(soft, external or user-defined links anywhere in the file: a Keras file has
none, so none is ever followed), data stored in external files or virtual
datasets, names that do not resolve to a dataset in their layer's group,
non-numeric weights and absurd sizes. Nothing is unpickled.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import h5py
import numpy as np
from h5py import h5d, h5l

from .errors import ArchiveError
from .hdf5_file import HeapCheckedFile, bounded_memory
from .weights import BOMB_FLOOR, BOMB_RATIO

MODEL = "model"
WEIGHTS = "weights"
KERAS3_WEIGHTS = "keras3-weights"

MODEL_WEIGHTS = "model_weights"
OPTIMIZER_WEIGHTS = "optimizer_weights"
TOP_LEVEL = "top_level_model_weights"

# A JSON attribute (model_config of a large model is a few MB) or a name list
# beyond this is not a Keras file's.
MAX_ATTRIBUTE_BYTES = 256 * 2**20
MAX_ATTRIBUTE_ELEMENTS = 10**6  # names in one list (a variable-length string each)
# One weight declared larger than this (1 TiB) is not a model's.
MAX_DATASET_BYTES = 2**40
# Keras 3 weights layout: any of these at the root.
KERAS3_ROOTS = ("layers", "vars", "optimizer", "_layer_checkpoint_dependencies")

RESAVE = "re-save the model with tf.keras (model.save('model.h5'))"
# What h5py (and numpy under it) raise on a damaged file: HDF5's errors are
# OSError, RuntimeError, KeyError or ValueError, whichever call meets them
H5_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError, OverflowError)


@dataclass(frozen=True)
class LegacyWeight:
    name: str  # the weight_names entry, e.g. "lstm/lstm_cell/kernel:0"
    path: str  # its dataset in the file, e.g. "model_weights/lstm/lstm/lstm_cell/kernel:0"
    shape: tuple[int, ...]
    dtype: str

    @property
    def short_name(self) -> str:
        """The variable's own name: `kernel` for "lstm/lstm_cell/kernel:0"."""
        return self.name.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class LegacyModel:
    model_config: dict | None  # parsed root attr model_config; None for a weights-only file
    training_config: dict | None
    keras_version: str | None
    backend: str | None
    layers: dict[str, tuple[LegacyWeight, ...]]  # in layer_names order
    optimizer: tuple[LegacyWeight, ...]  # optimizer_weights in weight_names order
    kind: str  # "model", "weights" or "keras3-weights"
    # the model's own weights (`top_level_model_weights`, not a layer): a
    # subclassed model's `add_weight`s; empty for Functional and Sequential
    top_level: tuple[LegacyWeight, ...] = ()


def read_legacy(file: BinaryIO, where: str) -> LegacyModel:
    """The legacy model or weights file in `file` (seekable); `where` names it
    in errors. Raises `ArchiveError` for anything unreadable or unsafe."""
    size = _size(file)
    with io.BufferedReader(file, 4096) as raw:  # see weights.read_h5
        try:
            h5 = h5py.File(HeapCheckedFile(raw, where), "r")
        except H5_ERRORS as e:
            raise ArchiveError(
                where,
                f"is not a readable HDF5 file ({e})",
                "pass a Keras .h5 file saved by model.save() or model.save_weights()",
            ) from None
        with h5:
            try:
                return _read(h5, where, size)
            except H5_ERRORS as e:
                raise ArchiveError(where, f"is a damaged HDF5 file ({e})", RESAVE) from None


def read_legacy_file(path: str | os.PathLike) -> LegacyModel:
    """`read_legacy` of a file on disk."""
    with open(path, "rb") as file:
        return read_legacy(file, os.fspath(path))


def _size(file: BinaryIO) -> int | None:
    try:
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(here)
        return end
    except (OSError, AttributeError, ValueError):
        return None


def _read(h5: h5py.File, where: str, size: int | None) -> LegacyModel:
    _refuse_links(h5, where)
    attrs = h5.attrs
    if "model_config" in attrs:
        if MODEL_WEIGHTS not in h5 or not isinstance(h5[MODEL_WEIGHTS], h5py.Group):
            raise ArchiveError(
                where,
                "has a model_config but no 'model_weights' group",
                f"the file is incomplete; {RESAVE}",
            )
        model_config = _json_attribute(h5, "model_config", where, required=True)
        training_config = _json_attribute(h5, "training_config", where, required=False)
        weights_root, prefix, kind = h5[MODEL_WEIGHTS], MODEL_WEIGHTS + "/", MODEL
    elif _has_name_list(h5, "layer_names"):
        model_config, training_config = None, None
        weights_root, prefix, kind = h5, "", WEIGHTS
    elif any(name in h5 for name in KERAS3_ROOTS):
        return LegacyModel(
            model_config=None,
            training_config=None,
            keras_version=_text_attribute(h5, "keras_version", where),
            backend=_text_attribute(h5, "backend", where),
            layers={},
            optimizer=(),
            kind=KERAS3_WEIGHTS,
        )
    else:
        raise ArchiveError(
            where,
            "is an HDF5 file but not a Keras model or weights file "
            "(no model_config, no layer_names, no Keras 3 'layers' or 'vars' group)",
            "pass a file saved by Keras's model.save() or model.save_weights()",
        )

    layers: dict[str, tuple[LegacyWeight, ...]] = {}
    for layer in _name_list(weights_root, "layer_names", where, prefix or "/"):
        if layer in layers:
            raise ArchiveError(where, f"lists layer '{layer}' twice in {prefix}layer_names", RESAVE)
        layers[layer] = _layer_weights(weights_root, prefix, layer, where, size)
    top_level: tuple[LegacyWeight, ...] = ()
    if TOP_LEVEL in weights_root and TOP_LEVEL not in layers:
        top_level = _layer_weights(weights_root, prefix, TOP_LEVEL, where, size)

    optimizer: tuple[LegacyWeight, ...] = ()
    if kind == MODEL and OPTIMIZER_WEIGHTS in h5:
        group = h5[OPTIMIZER_WEIGHTS]
        if not isinstance(group, h5py.Group):
            raise ArchiveError(where, f"'{OPTIMIZER_WEIGHTS}' is not a group", RESAVE)
        names = _name_list(group, "weight_names", where, OPTIMIZER_WEIGHTS)
        optimizer = tuple(_weight(group, OPTIMIZER_WEIGHTS + "/", n, where, size) for n in names)

    version_source = h5 if kind == WEIGHTS or "keras_version" in attrs else weights_root
    return LegacyModel(
        model_config=model_config,
        training_config=training_config,
        keras_version=_text_attribute(version_source, "keras_version", where),
        backend=_text_attribute(version_source, "backend", where),
        layers=layers,
        optimizer=optimizer,
        kind=kind,
        top_level=top_level,
    )


def _refuse_links(h5: h5py.File, where: str) -> None:
    """Every link in the file is a hard link: then no lookup below can leave
    the file or land somewhere a soft link points. (H5Lvisit lists soft and
    external links without following them.)"""
    found: list[str] = []

    def on_link(name: bytes, info) -> int | None:
        if info.type != h5l.TYPE_HARD:
            found.append(name.decode("utf-8", "replace"))
            return 1  # stop at the first
        return None

    h5.id.links.visit(on_link, info=True)
    if found:
        path = found[0]
        link = h5.get(path, getlink=True)  # describes the link, does not follow it
        if isinstance(link, h5py.SoftLink):
            what = f"a soft link to '{link.path}'"
        elif isinstance(link, h5py.ExternalLink):
            what = f"an external link to '{link.filename}:{link.path}'"
        else:
            what = "a user-defined link"
        raise ArchiveError(
            f"{where}:{path}",
            f"is {what} (not followed: a Keras file has no links)",
            f"the file was altered after saving; {RESAVE}",
        )


TEXT_CLASSES = (h5py.h5t.STRING, h5py.h5t.FLOAT, h5py.h5t.INTEGER, h5py.h5t.ENUM)


def _attribute(obj: h5py.HLObject, name: str, where: str) -> Any:
    attr_id = h5py.h5a.open(obj.id, name.encode())
    try:
        stored = attr_id.get_storage_size()
    except RuntimeError:  # an empty attribute (an empty name list) stores nothing
        stored = 0
    elements = math.prod(attr_id.shape or ())
    if stored > MAX_ATTRIBUTE_BYTES or elements > MAX_ATTRIBUTE_ELEMENTS:
        raise ArchiveError(
            f"{where}:{obj.name}",
            f"attribute '{name}' is {stored} bytes in {elements} elements, "
            f"beyond a Keras file's (not read)",
            RESAVE,
        )
    # strings, and the empty float64 list; never a variable-length sequence
    # (kind "O" too), whose conversion crashes HDF5 when its type is damaged
    if attr_id.dtype.kind not in "OSUfiub" or attr_id.get_type().get_class() not in TEXT_CLASSES:
        raise ArchiveError(
            f"{where}:{obj.name}",
            f"attribute '{name}' has type {attr_id.dtype}, not text",
            RESAVE,
        )
    try:
        with bounded_memory(obj.file.id.get_filesize()):
            return obj.attrs[name]
    except (OSError, TypeError, ValueError, MemoryError) as e:
        raise ArchiveError(
            f"{where}:{obj.name}", f"attribute '{name}' cannot be read ({e})", RESAVE
        ) from None


def _text(value: Any) -> str | None:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


def _text_attribute(obj: h5py.HLObject, name: str, where: str) -> str | None:
    if name not in obj.attrs:
        return None
    return _text(_attribute(obj, name, where))


def _json_attribute(h5: h5py.File, name: str, where: str, required: bool) -> dict | None:
    if name not in h5.attrs:
        return None
    text = _text(_attribute(h5, name, where))
    if text is None:
        raise ArchiveError(f"{where}:/", f"attribute '{name}' is not text", RESAVE)
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ArchiveError(
            f"{where}:/", f"attribute '{name}' is not valid JSON ({e})", RESAVE
        ) from None
    except RecursionError:
        raise ArchiveError(
            f"{where}:/", f"attribute '{name}' nests too deep to be a Keras config", RESAVE
        ) from None
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise ArchiveError(
            f"{where}:/",
            f"attribute '{name}' is JSON {type(value).__name__}, not an object",
            RESAVE,
        )
    return value


def _has_name_list(group: h5py.Group, name: str) -> bool:
    return name in group.attrs or f"{name}0" in group.attrs


def _name_list(
    group: h5py.Group, name: str, where: str, path: str, required: bool = True
) -> list[str]:
    """A list attribute as tf.keras's `load_attributes_from_hdf5_group` reads
    it: `name`, or its chunks `name0`, `name1`, ... An empty list is stored
    as an empty float64 array; a missing one reads as empty unless `required`."""
    if name in group.attrs:
        chunks = [_attribute(group, name, where)]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(_attribute(group, f"{name}{len(chunks)}", where))
    if not chunks and required:
        raise ArchiveError(f"{where}:{path}", f"has no '{name}' attribute", RESAVE)
    names: list[str] = []
    for chunk in chunks:
        values = np.asarray(chunk)
        if values.size == 0:
            continue
        for value in values.reshape(-1):
            text = _text(value)
            if text is None:
                raise ArchiveError(
                    f"{where}:{path}", f"'{name}' holds {value!r}, not a name", RESAVE
                )
            names.append(text)
    return names


def _check_name(name: str, where: str, path: str, list_name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ArchiveError(
            f"{where}:{path}",
            f"'{list_name}' holds the name {name!r}, which is not a path inside the group",
            RESAVE,
        )


def _layer_weights(
    root: h5py.Group, prefix: str, layer: str, where: str, size: int | None
) -> tuple[LegacyWeight, ...]:
    _check_name(layer, where, prefix or "/", "layer_names")
    group = root.get(layer)
    if not isinstance(group, h5py.Group):
        raise ArchiveError(
            f"{where}:{prefix}{layer}",
            "is named in layer_names but there is no such group"
            if group is None
            else "is named in layer_names but is not a group",
            f"the weights are incomplete; {RESAVE}",
        )
    names = _name_list(group, "weight_names", where, prefix + layer, required=False)
    return tuple(_weight(group, f"{prefix}{layer}/", name, where, size) for name in names)


def _weight(
    group: h5py.Group, prefix: str, name: str, where: str, size: int | None
) -> LegacyWeight:
    _check_name(name, where, prefix.rstrip("/"), "weight_names")
    path = prefix + name
    dataset = group.get(name)
    if not isinstance(dataset, h5py.Dataset):
        raise ArchiveError(
            f"{where}:{path}",
            "is named in weight_names but there is no such dataset"
            if dataset is None
            else "is named in weight_names but is not a dataset",
            f"the weights are incomplete; {RESAVE}",
        )
    dataset_id = dataset.id
    plist = dataset_id.get_create_plist()
    if plist.get_layout() == h5d.VIRTUAL:
        raise ArchiveError(
            f"{where}:{path}",
            "is a virtual dataset (its data lives in other datasets or files; not read)",
            RESAVE,
        )
    if plist.get_external_count():
        files = ", ".join(
            plist.get_external(i)[0].decode("utf-8", "replace")
            for i in range(plist.get_external_count())
        )
        raise ArchiveError(
            f"{where}:{path}",
            f"stores its data in external files ({files}; not read)",
            RESAVE,
        )
    if dataset_id.shape is None:
        raise ArchiveError(
            f"{where}:{path}", "holds no value (an empty dataspace), not a weight", RESAVE
        )
    dtype = dataset_id.dtype
    if dtype.kind not in "biufc" or dtype.subdtype is not None:
        raise ArchiveError(f"{where}:{path}", f"has type {dtype}, not a numeric weight", RESAVE)
    shape = tuple(int(n) for n in dataset_id.shape or ())
    nbytes = math.prod(shape) * dtype.itemsize
    filtered = plist.get_nfilters() > 0
    if nbytes > BOMB_FLOOR and nbytes > BOMB_RATIO * dataset_id.get_storage_size():
        raise ArchiveError(
            f"{where}:{path}",
            f"declares {nbytes} bytes of data (shape {shape}) but stores "
            f"{dataset_id.get_storage_size()}: a shape bomb, which loading would allocate "
            "(KR910; not read)",
            RESAVE,
        )
    if nbytes > MAX_DATASET_BYTES or (size is not None and not filtered and nbytes > size):
        raise ArchiveError(
            f"{where}:{path}",
            f"declares {nbytes} bytes of data (shape {shape}) in a file of {size} bytes",
            f"the file is damaged or truncated; {RESAVE}",
        )
    return LegacyWeight(name=name, path=path, shape=shape, dtype=str(dtype))
