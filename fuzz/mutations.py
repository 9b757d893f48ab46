"""Mutations of real Keras archives, as an attacker or a damaged download makes them.

Each mutator takes an archive's bytes and a `Draw` (where its random choices come
from: hypothesis's `data` in the tests, `random.Random` in `fuzz/run.py`) and
returns the mutant's bytes and one line saying what was done to them:

- `zip_bytes`: bytes flipped, inserted, deleted or overwritten, mostly in the local
  headers, the central directory and the end record (after an optional re-compression,
  so that damaged deflate, bzip2 and LZMA streams come out too);
- `zip_fields`: the zip's fields (version needed, flags, method, sizes, CRCs,
  offsets, name lengths, extra fields, zip64 records), set to what breaks readers;
- `config`: config.json or metadata.json (a legacy `.h5`'s `model_config` attribute):
  any value replaced by any JSON type, keys dropped and added, layers swapped,
  nesting, duplicate keys, huge integers, bytes that are not UTF-8;
- `hdf5`: the weights' HDF5 objects (h5py on a copy): deleted, renamed, reshaped,
  retyped, emptied, linked elsewhere;
- `npz`: the members of `model.weights.npz`: `.npy` headers, names, data.

Nothing here reads the mutant back with Keras, pickle or marshal.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import struct
import sys
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import h5py
import numpy as np


class Draw(Protocol):
    """Where a mutator's choices come from."""

    def integer(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence[Any]) -> Any: ...

    def raw(self, max_size: int) -> bytes: ...


class RandomDraw:
    """Choices from a seeded `random.Random` (the long runs of `fuzz/run.py`)."""

    def __init__(self, seed: int):
        self.random = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def choice(self, options: Sequence[Any]) -> Any:
        return self.random.choice(list(options))

    def raw(self, max_size: int) -> bytes:
        return self.random.randbytes(self.random.randint(0, max_size))


# -- the zip as records whose fields can be set to anything

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
LOCAL_FIELDS = ("version", "flags", "method", "time", "date", "crc", "csize", "usize")
LOCAL_FIELDS += ("name_len", "extra_len")
CENTRAL_FIELDS = ("made_by", "version", "flags", "method", "time", "date", "crc", "csize")
CENTRAL_FIELDS += ("usize", "name_len", "extra_len", "comment_len", "disk", "internal")
CENTRAL_FIELDS += ("external", "offset")
END_FIELDS = ("disk", "cd_disk", "disk_entries", "entries", "cd_size", "cd_offset", "comment_len")
ZIP64_FIELDS = ("size", "made_by", "version", "disk", "cd_disk", "disk_entries", "entries")
ZIP64_FIELDS += ("cd_size", "cd_offset")
_WIDTHS = {
    "local": dict(zip(LOCAL_FIELDS, (2, 2, 2, 2, 2, 4, 4, 4, 2, 2), strict=True)),
    "central": dict(
        zip(CENTRAL_FIELDS, (2, 2, 2, 2, 2, 2, 4, 4, 4, 2, 2, 2, 2, 2, 4, 4), strict=True)
    ),
    "end": dict(zip(END_FIELDS, (2, 2, 2, 2, 4, 4, 2), strict=True)),
    "zip64": dict(zip(ZIP64_FIELDS, (8, 2, 2, 4, 4, 8, 8, 8, 8), strict=True)),
}


@dataclass
class Record:
    """A local header or a central directory record. Fields in `pinned` keep the
    value a mutation gave them; the others are recomputed when serialized."""

    fields: dict[str, int]
    name: bytes
    extra: bytes = b""
    comment: bytes = b""  # central records
    data: bytes = b""  # local records: the compressed bytes (and a data descriptor)
    local: int | None = None  # central records: the index of their local record
    pinned: set[str] = field(default_factory=set)


@dataclass
class ZipModel:
    prefix: bytes
    locals: list[Record]
    centrals: list[Record]
    end: dict[str, int]
    comment: bytes = b""
    zip64: dict[str, int] | None = None  # a zip64 end record and locator, when written
    pinned: set[str] = field(default_factory=set)  # of `end` and `zip64`: "end.cd_offset"
    contents: dict[int, bytes] = field(default_factory=dict)  # uncompressed, by local index


def parse_zip(data: bytes) -> ZipModel:
    """A well-formed zip (a fixture) as records; ValueError if it is not one."""
    at = data.rfind(b"PK\x05\x06")
    if at < 0:
        raise ValueError("no end record")
    end = dict(zip(END_FIELDS, _END.unpack_from(data, at)[1:], strict=True))
    comment = data[at + _END.size : at + _END.size + end["comment_len"]]
    centrals, locals_, offsets = [], [], []
    position = end["cd_offset"]
    for _ in range(end["entries"]):
        values = _CENTRAL.unpack_from(data, position)
        fields = dict(zip(CENTRAL_FIELDS, values[1:], strict=True))
        position += _CENTRAL.size
        name = data[position : position + fields["name_len"]]
        position += fields["name_len"]
        extra = data[position : position + fields["extra_len"]]
        position += fields["extra_len"]
        entry_comment = data[position : position + fields["comment_len"]]
        position += fields["comment_len"]
        centrals.append(Record(fields, name, extra, entry_comment, local=len(centrals)))
        offsets.append(fields["offset"])
    for offset in offsets:
        values = _LOCAL.unpack_from(data, offset)
        fields = dict(zip(LOCAL_FIELDS, values[1:], strict=True))
        start = offset + _LOCAL.size
        name = data[start : start + fields["name_len"]]
        extra = data[start + fields["name_len"] : start + fields["name_len"] + fields["extra_len"]]
        begin = start + fields["name_len"] + fields["extra_len"]
        size = centrals[len(locals_)].fields["csize"]
        stop = begin + size
        if fields["flags"] & 0x08:  # a data descriptor follows
            stop += 16 if data[stop : stop + 4] == b"PK\x07\x08" else 12
        locals_.append(Record(fields, name, extra, data=data[begin:stop]))
    prefix = data[: min(offsets)] if offsets else b""
    model = ZipModel(prefix, locals_, centrals, end, comment)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for index, info in enumerate(archive.infolist()):
            model.contents[index] = archive.read(info)
    return model


def serialize_zip(model: ZipModel) -> bytes:
    out = bytearray(model.prefix)
    local_offsets = []
    for record in model.locals:
        local_offsets.append(len(out))
        fields = _lengths(record, ("name_len", "extra_len"))
        out += _LOCAL.pack(b"PK\x03\x04", *(fields[k] & _mask("local", k) for k in LOCAL_FIELDS))
        out += record.name + record.extra + record.data
    cd_start = len(out)
    for record in model.centrals:
        fields = _lengths(record, ("name_len", "extra_len", "comment_len"))
        local = record.local
        if "offset" not in record.pinned and local is not None and local < len(local_offsets):
            fields["offset"] = local_offsets[local]
        out += _CENTRAL.pack(
            b"PK\x01\x02", *(fields[k] & _mask("central", k) for k in CENTRAL_FIELDS)
        )
        out += record.name + record.extra + record.comment
    cd_size = len(out) - cd_start
    computed = {
        "disk_entries": len(model.centrals),
        "entries": len(model.centrals),
        "cd_size": cd_size,
        "cd_offset": cd_start,
        "comment_len": len(model.comment),
    }
    if model.zip64 is not None:
        zip64_at = len(out)
        values = {**model.zip64, **computed, "size": _ZIP64_END.size - 12}
        values = {k: model.zip64[k] if f"zip64.{k}" in model.pinned else values[k] for k in values}
        out += _ZIP64_END.pack(
            b"PK\x06\x06", *(values[k] & _mask("zip64", k) for k in ZIP64_FIELDS)
        )
        out += _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, zip64_at, 1)
    end = {k: model.end[k] if f"end.{k}" in model.pinned else v for k, v in computed.items()}
    end = {**model.end, **end}
    out += _END.pack(b"PK\x05\x06", *(end[k] & _mask("end", k) for k in END_FIELDS))
    out += model.comment
    return bytes(out)


def _lengths(record: Record, names: tuple[str, ...]) -> dict[str, int]:
    fields = dict(record.fields)
    actual = {"name_len": record.name, "extra_len": record.extra, "comment_len": record.comment}
    for name in names:
        if name not in record.pinned:
            fields[name] = len(actual[name])
    return fields


def _mask(kind: str, name: str) -> int:
    return (1 << (8 * _WIDTHS[kind][name])) - 1


def interesting(width: int, current: int, draw: Draw) -> int:
    """A value for a field of `width` bytes that readers get wrong."""
    top = (1 << (8 * width)) - 1
    return draw.choice(
        [
            0,
            1,
            top,
            top - 1,
            1 << (8 * width - 1),
            (current + 1) & top,
            (current - 1) & top,
            current ^ (1 << draw.integer(0, 8 * width - 1)),
            draw.integer(0, top),
            (current * 2) & top,
        ]
    )


_NAMES = (
    b"config.json",
    b"metadata.json",
    b"model.weights.h5",
    b"model.weights.npz",
    b"../config.json",
    b"/etc/passwd",
    b"C:\\evil.json",
    b"assets\\..\\..\\x",
    b"config.json\x00.txt",
    b"CONFIG.JSON",
    b"assets/",
    b"",
    b"\xff\xfeconfig.json",
    b"conf\xc3ig.json",
    b"x" * 300,
    b"assets/vocab.txt",
)
_METHODS = (0, 1, 6, 8, 9, 12, 14, 19, 93, 95, 98, 99)
_VERSIONS = (10, 20, 45, 46, 50, 51, 61, 62, 63, 0xFF, 0x3FF)
_FLAG_BITS = (0, 1, 2, 3, 5, 6, 11, 13)


def compressed(name: str, content: bytes, method: int) -> tuple[dict[str, int], bytes]:
    """A local record's fields and data for `content` compressed with `method`,
    as zipfile writes them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = method
        archive.writestr(info, content)
    model = parse_zip(buffer.getvalue())
    record = model.locals[0]
    return record.fields, record.data


def zip_fields(data: bytes, draw: Draw) -> tuple[bytes, str]:
    """Set one to three fields of the zip's records to what breaks readers."""
    model = parse_zip(data)
    done = []
    for _ in range(draw.integer(1, 3)):
        done.append(_mutate_zip_model(model, draw))
    return serialize_zip(model), "zip fields: " + "; ".join(done)


def _mutate_zip_model(model: ZipModel, draw: Draw) -> str:
    entries = len(model.centrals)
    index = draw.integer(0, max(entries - 1, 0))
    central = model.centrals[index] if entries else None
    local = model.locals[central.local] if central and central.local is not None else None
    name = central.name.decode("utf-8", "replace") if central else "?"
    operation = draw.choice(
        [
            "field",
            "field",
            "field",
            "flag",
            "flag",
            "name",
            "extra",
            "zip64",
            "recompress",
            "comment",
            "records",
            "descriptor",
            "prefix",
        ]
    )
    if central is None:
        operation = "field"
    if operation == "field":
        kind = draw.choice(["local", "central", "end", "zip64"] if entries else ["end", "zip64"])
        if kind == "zip64":
            model.zip64 = model.zip64 or {k: 0 for k in ZIP64_FIELDS}
            if "zip64.version" not in model.pinned:
                model.zip64.update(made_by=45, version=45)
        target = {"local": local, "central": central}.get(kind)
        fields = target.fields if target is not None else model.end if kind == "end" else None
        fields = fields if fields is not None else model.zip64
        key = draw.choice(list(_WIDTHS[kind]))
        if key == "version" and draw.integer(0, 1):
            value = draw.choice(_VERSIONS)
        elif key == "method" and draw.integer(0, 1):
            value = draw.choice(_METHODS)
        else:
            value = interesting(_WIDTHS[kind][key], fields.get(key, 0), draw)
        fields[key] = value
        if target is not None:
            target.pinned.add(key)
        else:
            model.pinned.add(f"{kind}.{key}")
        return f"{kind} {key} of {name!r} = {value:#x}"
    if operation in ("flag", "name"):
        where = draw.choice(["both", "local", "central"])
        records = {"both": [local, central], "local": [local], "central": [central]}[where]
        records = [record for record in records if record is not None]
        if operation == "flag":
            bit = draw.choice(_FLAG_BITS)
            for record in records:
                record.fields["flags"] ^= 1 << bit
            return f"flag bit {bit} of {name!r} toggled in {where}"
        new, utf8 = draw.choice(_NAMES), draw.integer(0, 1)
        for record in records:
            record.name = new
            if utf8:
                record.fields["flags"] |= 0x800
        return f"name of {name!r} = {new!r} in {where}" + (" (UTF-8 flag)" if utf8 else "")
    if operation == "extra":
        record = draw.choice([r for r in (local, central) if r is not None])
        kind = draw.choice(["zip64", "zip64", "garbage", "short", "unicode"])
        if kind == "zip64":
            values = [
                draw.choice([0, 1, 0xFFFFFFFF, (1 << 64) - 1, 1 << 63, draw.integer(0, 1 << 40)])
            ]
            values += [draw.choice([0, (1 << 64) - 1, draw.integer(0, (1 << 64) - 1)])]
            values += [draw.choice([0, (1 << 64) - 1, 1 << 62, draw.integer(0, 1 << 20)])]
            count = draw.integer(1, 3)
            for key in ("usize", "csize", "offset")[:count]:
                if key in record.fields:
                    record.fields[key] = 0xFFFFFFFF
                    record.pinned.add(key)
            record.extra += struct.pack("<HH", 1, 8 * count) + b"".join(
                struct.pack("<Q", v) for v in values[:count]
            )
            return f"zip64 extra {values[:count]} on {name!r}"
        if kind == "garbage":
            record.extra += draw.raw(40)
        elif kind == "short":
            record.extra += struct.pack("<HH", draw.choice([1, 0x7075, 0x5455]), 0xFFFF) + b"\x00"
        else:
            record.extra += struct.pack("<HHBL", 0x7075, 5 + 4, 1, 0) + b"\xff\xfe/x"
        return f"{kind} extra field on {name!r}"
    if operation == "zip64":
        model.zip64 = {k: 0 for k in ZIP64_FIELDS}
        model.zip64.update(made_by=45, version=45)
        key = draw.choice(["cd_offset", "cd_size", "entries", "disk", "size"])
        value = draw.choice([(1 << 64) - 1, 1 << 63, 0, draw.integer(0, (1 << 64) - 1)])
        model.zip64[key] = value
        model.pinned.add(f"zip64.{key}")
        for end_key in ("cd_offset", "cd_size", "entries", "disk_entries"):
            if draw.integer(0, 1):
                model.end[end_key] = 0xFFFFFFFF if "entries" not in end_key else 0xFFFF
                model.pinned.add(f"end.{end_key}")
        return f"zip64 end record with {key} = {value:#x}"
    if operation == "recompress" and local is not None:
        method = draw.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
        content = model.contents.get(central.local, b"")
        fields, body = compressed(name, content, method)
        damage = draw.integer(0, 2)
        if damage and body:
            at = draw.integer(0, len(body) - 1)
            body = body[:at] + bytes([body[at] ^ (1 << draw.integer(0, 7))]) + body[at + 1 :]
        local.data = body
        for key in ("version", "flags", "method", "crc", "csize", "usize"):
            local.fields[key] = fields[key]
            central.fields[key] = fields[key]
        return f"{name!r} recompressed with method {method}" + (" and damaged" if damage else "")
    if operation == "comment":
        if draw.integer(0, 1):
            model.comment = draw.raw(64)
            if draw.integer(0, 1):
                model.end["comment_len"] = interesting(2, len(model.comment), draw)
                model.pinned.add("end.comment_len")
            return "zip comment"
        central.comment = draw.raw(64)
        return f"entry comment on {name!r}"
    if operation == "records":
        kind = draw.choice(["duplicate", "drop central", "drop local", "swap", "reorder locals"])
        if kind == "duplicate":
            model.centrals.insert(index, copy.deepcopy(central))
        elif kind == "drop central":
            del model.centrals[index]
        elif kind == "drop local" and central.local is not None:
            central.fields["offset"] = 0
            central.pinned.add("offset")
            model.locals[central.local] = Record(dict(local.fields), b"", data=b"")
        elif kind == "swap" and entries > 1:
            other = draw.integer(0, entries - 1)
            model.centrals[index].name, model.centrals[other].name = (
                model.centrals[other].name,
                model.centrals[index].name,
            )
        elif kind == "reorder locals":
            model.locals.reverse()
            for record in model.centrals:
                if record.local is not None:
                    record.local = len(model.locals) - 1 - record.local
        return f"records: {kind} of {name!r}"
    if operation == "descriptor" and local is not None:
        local.fields["flags"] |= 0x08
        central.fields["flags"] |= 0x08
        signed = draw.integer(0, 1)
        descriptor = struct.pack(
            "<LLL", central.fields["crc"], central.fields["csize"], central.fields["usize"]
        )
        if draw.integer(0, 1):
            local.fields.update(crc=0, csize=0, usize=0)
            local.pinned.update({"crc", "csize", "usize"})
        local.data += (b"PK\x07\x08" if signed else b"") + descriptor
        return f"data descriptor after {name!r}" + (" (signed)" if signed else "")
    prefix = draw.choice(
        [b"#!/bin/sh\necho hi\nexit 0\n", b"\x7fELF\x02\x01\x01" + bytes(57), b"MZ" + bytes(62)]
    )
    model.prefix = prefix + draw.raw(32)
    return f"{len(model.prefix)} bytes prepended (offsets absolute)"


# -- bytes


def recompress(data: bytes, method: int) -> bytes:
    """Every entry written again with `method` (the names, order and dates kept)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            copy_info = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy_info.compress_type = method
            target.writestr(copy_info, source.read(info))
    return buffer.getvalue()


def zip_bytes(data: bytes, draw: Draw) -> tuple[bytes, str]:
    """Flip, insert, delete or overwrite bytes, mostly where the zip's structure is."""
    done = []
    method = draw.choice([None, None, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
    if method is not None and data[:4] == b"PK\x03\x04":
        data = recompress(data, method)
        done.append(f"recompressed with method {method}")
    buffer = bytearray(data)
    for _ in range(draw.integer(1, 4)):
        done.append(mutate_bytes(buffer, draw))
    return bytes(buffer), "zip bytes: " + "; ".join(done)


def _regions(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Where the local headers, central records and end records are (by signature)."""
    regions: dict[str, list[tuple[int, int]]] = {"local": [], "central": [], "end": []}
    for kind, signature, size in (
        ("local", b"PK\x03\x04", 30),
        ("central", b"PK\x01\x02", 46),
        ("end", b"PK\x05\x06", 22),
        ("end", b"PK\x06\x06", 56),
    ):
        at = data.find(signature)
        while at >= 0:
            regions[kind].append((at, min(at + size, len(data))))
            at = data.find(signature, at + 1)
    return regions


def mutate_bytes(buffer: bytearray, draw: Draw) -> str:
    if not buffer:
        buffer += draw.raw(64)
        return "bytes added to an empty file"
    regions = [(start, end) for spans in _regions(bytes(buffer)).values() for start, end in spans]
    region = draw.choice(["structure", "structure", "anywhere"]) if regions else "anywhere"
    if region == "structure":
        start, end = draw.choice(regions)
        at = draw.integer(start, max(start, end - 1))
    else:
        at = draw.integer(0, len(buffer) - 1)
    operation = draw.choice(
        ["flip", "flip", "set", "insert", "delete", "overwrite", "truncate", "prepend", "append"]
    )
    if operation == "flip":
        buffer[at] ^= 1 << draw.integer(0, 7)
    elif operation == "set":
        buffer[at] = draw.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, draw.integer(0, 255)])
    elif operation == "insert":
        buffer[at:at] = draw.raw(16) or b"\x00"
    elif operation == "delete":
        del buffer[at : at + draw.integer(1, 16)]
    elif operation == "overwrite":
        chunk = draw.raw(16)
        buffer[at : at + len(chunk)] = chunk
    elif operation == "truncate":
        del buffer[at:]
    elif operation == "prepend":
        buffer[0:0] = draw.choice([b"#!/bin/sh\nexit 0\n", b"\x7fELF", b"MZ", b"PK\x03\x04"])
        buffer[0:0] = draw.raw(8)
    else:
        buffer += draw.raw(64)
    return f"{operation} at {at} ({region})"


# -- JSON


_KEYS = (
    "class_name",
    "config",
    "module",
    "registered_name",
    "name",
    "layers",
    "inbound_nodes",
    "args",
    "kwargs",
    "keras_history",
    "shared_object_id",
    "build_config",
    "input_shape",
    "batch_shape",
    "dtype",
    "function",
    "code",
    "fn_module",
    "input_layers",
    "output_layers",
    "compile_config",
    "optimizer",
    "loss",
    "metrics",
    "trainable",
    "units",
    "activation",
    "vocabulary",
    "keras_version",
    "date_saved",
    "__keras_tensor__",
    "__lambda__",
    "__numpy__",
    "__tuple__",
    "value",
)
_STRINGS = (
    "",
    "keras",
    "keras.layers",
    "keras.src.models.functional",
    "os",
    "builtins",
    "subprocess",
    "Dense",
    "Sequential",
    "Functional",
    "Lambda",
    "InputLayer",
    "Model",
    "__lambda__",
    "__keras_tensor__",
    "../../evil",
    "a/b",
    "nul\x00name",
    "http://example.invalid/x",
    "é",
    "\ud800",
    "x" * 5000,
    "3.0.5",
    "2.15.0",
    "99.99.99",
    "float32",
    "mixed_float16",
    "relu",
    "4wAAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMEAAAAfABTAKkBTqkAqQHaAXhyAQAAAHIBAAAA+gA=",
)


# An integer of 5,000 digits: json.dumps cannot write it, `json_text` does
_BIG = 7 * 10**29
_BIG_DIGITS = "7" * 5000


def json_value(draw: Draw, pool: Sequence[Any] = (), depth: int = 0) -> Any:
    """Any JSON value: each type, the odd numbers, names Keras and attackers use,
    a piece of the document itself, lists and objects of those."""
    kinds = ["null", "bool", "int", "big", "float", "string", "string", "list", "dict", "pool"]
    kind = draw.choice(kinds if depth < 3 else kinds[:7])
    if kind == "null":
        return None
    if kind == "bool":
        return bool(draw.integer(0, 1))
    if kind == "int":
        return draw.choice(
            [0, 1, -1, 2, 3, 2**31, -(2**31) - 1, 2**63, 2**64, draw.integer(-9, 99)]
        )
    if kind == "big":  # digits past Python's 4,300 are written by `json_text`
        return draw.choice([10**309, -(10**400), 10**4299, _BIG, -_BIG])
    if kind == "float":
        return draw.choice([0.5, -0.0, 1e308, 1e-320, float("inf"), float("-inf"), float("nan")])
    if kind == "string":
        return draw.choice(_STRINGS)
    if kind == "pool" and pool:
        return copy.deepcopy(draw.choice(pool))
    if kind == "list":
        return [json_value(draw, pool, depth + 1) for _ in range(draw.integer(0, 3))]
    return {
        draw.choice(_KEYS): json_value(draw, pool, depth + 1) for _ in range(draw.integer(0, 3))
    }


def _places(document: Any, limit: int = 20_000) -> list[tuple[Any, Any]]:
    """(container, key) of every value under `document`, breadth first."""
    places: list[tuple[Any, Any]] = []
    queue = [document]
    while queue and len(places) < limit:
        node = queue.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            places.append((node, key))
            if isinstance(child, (dict, list)):
                queue.append(child)
    return places


def mutate_json(document: Any, draw: Draw) -> tuple[Any, str]:
    """One structural change to a JSON document (a new document is returned)."""
    document = copy.deepcopy(document)
    places = _places(document)
    if not places:
        return json_value(draw), "document replaced"
    pool = [container[key] for container, key in places if isinstance(container[key], (dict, str))]
    container, key = draw.choice(places)
    operation = draw.choice(
        [
            "replace",
            "replace",
            "replace",
            "drop",
            "add",
            "swap",
            "duplicate",
            "move",
            "nest",
            "self",
        ]
    )
    if operation == "replace":
        container[key] = json_value(draw, pool[:200])
    elif operation == "drop":
        del container[key]
    elif operation == "add":
        dicts = [c[k] for c, k in places if isinstance(c[k], dict)] or [document]
        target = draw.choice(dicts)
        if isinstance(target, dict):
            target[draw.choice(_KEYS)] = json_value(draw, pool[:200])
    elif operation in ("swap", "duplicate"):
        lists = [c[k] for c, k in places if isinstance(c[k], list) and c[k]]
        if lists:
            chosen = draw.choice(lists)
            i, j = draw.integer(0, len(chosen) - 1), draw.integer(0, len(chosen) - 1)
            if operation == "swap":
                chosen[i], chosen[j] = chosen[j], chosen[i]
            else:
                chosen.insert(j, copy.deepcopy(chosen[i]))
    elif operation == "move":
        container[key] = copy.deepcopy(draw.choice(pool)) if pool else None
    elif operation == "nest":
        value = container[key]
        for _ in range(draw.choice([10, 60, 150, 199, 201, 250])):
            value = draw.choice([[value], {"config": value}])
        container[key] = value
    else:  # the model inside itself, again and again (nested Sequential models)
        inner = copy.deepcopy(document)
        for level in range(draw.choice([2, 10, 40, 60, 66])):
            outer = copy.deepcopy(document)
            config = outer.get("config") if isinstance(outer, dict) else None
            layers = config.get("layers") if isinstance(config, dict) else None
            if not isinstance(layers, list) or not layers:
                break
            if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
                inner["config"]["name"] = f"nested_{level}"
            layers[-1] = inner
            inner = outer
        document = inner
        return document, f"model nested in itself ({operation})"
    return document, f"{operation} at {_describe(container, key)}"


def _describe(container: Any, key: Any) -> str:
    return f"key {key!r} of a {type(container).__name__}"


def json_text(document: Any, draw: Draw) -> tuple[bytes, str]:
    """The document as bytes, sometimes written as no Python would write it."""
    text = json.dumps(document).replace(str(_BIG), _BIG_DIGITS)
    operation = draw.choice(
        ["plain"] * 6 + ["duplicate key", "not utf-8", "huge int", "tokens", "deep"]
    )
    if operation == "duplicate key" and text.startswith("{") and len(text) > 2:
        key = draw.choice(['"class_name"', '"config"', '"module"', '"layers"', '"name"'])
        text = "{" + key + ": " + draw.choice(['"os"', "[]", "null", "1"]) + ", " + text[1:]
    elif operation == "huge int":
        at = draw.integer(0, len(text))
        digits = "9" * draw.choice([4300, 4301, 10_000])
        text = text.replace(": 0", f": {digits}", 1) if ": 0" in text else text[:at] + digits
    elif operation == "deep":
        levels = draw.choice([199, 201, 1000, 100_000])
        text = "[" * levels + text + "]" * levels
    elif operation == "tokens":
        tokens = ["NaN", "Infinity", "-Infinity", "1e999", "\ufeff", "\x00", '"\\ud800"', "]"]
        at = draw.integer(0, len(text))
        text = text[:at] + draw.choice(tokens) + text[at:]
    raw = text.encode("utf-8", "surrogatepass")
    if operation == "not utf-8":
        at = draw.integer(0, len(raw))
        raw = raw[:at] + draw.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xff"]) + raw[at:]
    return raw, operation


@contextlib.contextmanager
def _deep_documents():
    """Room for copying and writing documents nested hundreds of levels deep (the
    mutation's, not the tool's: the limit is restored before any command runs)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def config(data: bytes, draw: Draw) -> tuple[bytes, str]:
    """config.json or metadata.json changed (a legacy `.h5`: its attributes)."""
    with _deep_documents():
        return _config(data, draw)


def _config(data: bytes, draw: Draw) -> tuple[bytes, str]:
    if data.startswith(b"\x89HDF"):
        return _h5_attributes(data, draw)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    names = [info.filename for info, _ in entries]
    target = draw.choice(["config.json"] * 4 + ["metadata.json"])
    if target not in names:
        return data, f"no {target}"
    index = names.index(target)
    document = json.loads(entries[index][1])
    done = []
    for _ in range(draw.integer(1, 3)):
        document, what = mutate_json(document, draw)
        done.append(what)
    raw, written = json_text(document, draw)
    method = draw.choice([zipfile.ZIP_STORED] * 3 + [8, 12, 14])
    entries[index] = (entries[index][0], raw)
    return _rezip(entries, {target: method}), f"{target}: {'; '.join(done)}; written {written}"


def _rezip(entries: list[tuple[zipfile.ZipInfo, bytes]], methods: dict[str, int]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, content in entries:
            new = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            new.compress_type = methods.get(info.filename, info.compress_type)
            archive.writestr(new, content)
    return buffer.getvalue()


def _h5_attributes(data: bytes, draw: Draw) -> tuple[bytes, str]:
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5:
        name = draw.choice(["model_config"] * 4 + ["training_config", "keras_version", "backend"])
        value = h5.attrs.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if name.endswith("_config") and isinstance(value, str):
            document, what = mutate_json(json.loads(value), draw)
            raw, written = json_text(document, draw)
            what += f"; written {written}"
        else:
            raw, what = json.dumps(json_value(draw)).encode(), "replaced"
        try:
            h5.attrs[name] = raw.decode("utf-8") if draw.integer(0, 1) else np.void(raw)
        except (UnicodeDecodeError, ValueError):
            h5.attrs[name] = np.bytes_(raw)
    return buffer.getvalue(), f"attribute {name}: {what}"


# -- HDF5


def hdf5(data: bytes, draw: Draw) -> tuple[bytes, str]:
    """Objects of the weights' HDF5 file changed with h5py (the whole file of a
    legacy `.h5`, `model.weights.h5` of an archive)."""
    if data.startswith(b"\x89HDF"):
        return _mutate_h5_file(data, draw)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    names = [info.filename for info, _ in entries]
    if "model.weights.h5" not in names:
        return data, "no model.weights.h5"
    index = names.index("model.weights.h5")
    weights, what = _mutate_h5_file(entries[index][1], draw)
    entries[index] = (entries[index][0], weights)
    return _rezip(entries, {}), what


def _mutate_h5_file(data: bytes, draw: Draw) -> tuple[bytes, str]:
    buffer = io.BytesIO(data)
    done = []
    with h5py.File(buffer, "r+") as h5:
        for _ in range(draw.integer(1, 3)):
            done.append(_mutate_h5(h5, draw))
    return buffer.getvalue(), "hdf5: " + "; ".join(done)


def _objects(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visit(names.append)
    return names


_DTYPES = ("f4", "f8", "f2", "i8", "u1", "b1", "c8", "S4", "V8", "<i4", ">f4")


def _mutate_h5(h5: h5py.File, draw: Draw) -> str:
    names = _objects(h5)
    optimizer = [n for n in names if "optimizer" in n]
    datasets = [n for n in names if isinstance(h5.get(n, getlink=False), h5py.Dataset)]
    path = draw.choice((optimizer if optimizer and draw.integer(0, 3) == 0 else names) or ["/"])
    parent = path.rpartition("/")[0] or "/"
    new_name = f"{parent.rstrip('/')}/{draw.choice(['0', '1', 'vars', 'layers', 'x', 'dense'])}"
    operation = draw.choice(
        [
            "delete",
            "move",
            "reshape",
            "retype",
            "empty",
            "null",
            "scalar",
            "strings",
            "group for dataset",
            "soft link",
            "external link",
            "hard link cycle",
            "external storage",
            "virtual",
            "shape bomb",
            "attribute",
            "drop attribute",
        ]
    )
    if operation in ("reshape", "retype", "empty", "null", "scalar", "strings") and datasets:
        path = draw.choice(datasets)
        old = h5[path]
        shape, dtype = old.shape, old.dtype
        del h5[path]
        if operation == "reshape":
            shape = tuple(draw.integer(0, 5) for _ in range(draw.integer(0, 4)))
        elif operation == "retype":
            dtype = np.dtype(draw.choice(_DTYPES))
        if operation == "empty":
            h5.create_dataset(path, shape=(0,), dtype=dtype)
        elif operation == "null":
            h5.create_dataset(path, data=h5py.Empty(dtype))
        elif operation == "scalar":
            h5.create_dataset(path, data=np.array(7, dtype=np.int64))
        elif operation == "strings":
            h5.create_dataset(path, data=np.array(["a", "b"], dtype=h5py.string_dtype()))
        else:
            h5.create_dataset(path, shape=shape, dtype=dtype)
        return f"{operation} {path}"
    if operation == "delete" and path != "/":
        del h5[path]
    elif operation == "move" and path != "/" and new_name not in h5:
        h5.move(path, new_name)
    elif operation == "group for dataset" and datasets:
        path = draw.choice(datasets)
        del h5[path]
        h5.create_group(path)
    elif operation in ("soft link", "external link", "hard link cycle") and new_name not in h5:
        if operation == "soft link":
            h5[new_name] = h5py.SoftLink(draw.choice(["/nowhere", "/" + path, "/"]))
        elif operation == "external link":
            h5[new_name] = h5py.ExternalLink(draw.choice(["/etc/passwd", "other.h5"]), "/x")
        else:
            h5[new_name] = h5[parent]
        path = new_name
    elif operation == "external storage" and new_name not in h5:
        h5.create_dataset(new_name, shape=(25,), dtype="f4", external=[("/etc/passwd", 0, 100)])
        path = new_name
    elif operation == "virtual" and new_name not in h5:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource("other.h5", "data", shape=(4,))
        h5.create_virtual_dataset(new_name, layout)
        path = new_name
    elif operation == "shape bomb" and new_name not in h5:
        size = draw.choice([2**31, 2**40, 2**60])
        h5.create_dataset(new_name, shape=(size,), dtype="f4", chunks=(1024,))
        path = new_name
    elif operation == "attribute":
        target = h5.get(path, h5)
        key = draw.choice(
            ["name", "layer_names", "weight_names", "keras_version", "backend", "model_config"]
        )
        value = draw.choice(
            [
                "dense",
                b"\xff\xfe",
                7,
                np.arange(3),
                np.array([b"dense", b"dense"]),
                np.array([], dtype="S1"),
                "x" * 70_000,
                np.array([b"../../x"]),
            ]
        )
        target.attrs[key] = value
        return f"attribute {key} of {path} = {str(value)[:40]!r}"
    elif operation == "drop attribute":
        target = h5.get(path, h5)
        for key in list(target.attrs)[:1]:
            del target.attrs[key]
    return f"{operation} {path}"


# -- npz


def npz(data: bytes, draw: Draw) -> tuple[bytes, str]:
    """Members of `model.weights.npz` changed: their `.npy` headers, names and data."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    names = [info.filename for info, _ in entries]
    if "model.weights.npz" not in names:
        return data, "no model.weights.npz"
    index = names.index("model.weights.npz")
    inner = entries[index][1]
    operation = draw.choice(["member", "member", "member", "zip fields", "zip bytes"])
    if operation == "zip fields":
        inner, what = zip_fields(inner, draw)
    elif operation == "zip bytes":
        inner, what = zip_bytes(inner, draw)
    else:
        inner, what = _mutate_npz_member(inner, draw)
    entries[index] = (entries[index][0], inner)
    return _rezip(entries, {}), f"npz: {what}"


def _npy(header: str, body: bytes = b"") -> bytes:
    """A `.npy` member: version 1.0, or 2.0 for a header over 64 KiB."""
    encoded = header.encode("latin1")
    if len(encoded) < 1 << 16:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(encoded)) + encoded + body
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(encoded)) + encoded + body


def _mutate_npz_member(inner: bytes, draw: Draw) -> tuple[bytes, str]:
    with zipfile.ZipFile(io.BytesIO(inner)) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    if not members:
        return inner, "no members"
    index = draw.integer(0, len(members) - 1)
    info, content = members[index]
    operation = draw.choice(
        ["header", "header", "version", "truncate", "rename", "drop", "duplicate", "garbage"]
    )
    if operation == "header":
        shape = draw.choice(
            ["()", "(3,)", "(0,)", "(2**40,)", "(-1,)", "(1099511627776, 8)", "'x'"]
        )
        descr = draw.choice(["'<f4'", "'|O'", "'<U10'", "'V8'", "'>i8'", "'xyz'", "[('a', '<f4')]"])
        order = draw.choice(["False", "True", "1"])
        header = f"{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}"
        if draw.integer(0, 3) == 0:
            header = draw.choice(["{", "__import__('os')", "{'descr': '<f4'}", "x" * 70_000])
        content = _npy(header.ljust(118) + "\n", body=content[128:])
    elif operation == "version":
        content = content[:6] + draw.choice([b"\x02\x00", b"\x03\x00", b"\x09\x09"]) + content[8:]
    elif operation == "truncate":
        content = content[: draw.integer(0, len(content))]
    elif operation == "garbage":
        content = draw.raw(200)
    if operation == "rename":
        name = draw.choice(["x", "../x.npy", "layers/dense", "a" * 300 + ".npy", "\u00e9.npy"])
        members[index] = (zipfile.ZipInfo(name, date_time=info.date_time), content)
    elif operation == "drop":
        del members[index]
    elif operation == "duplicate":
        members.insert(index, (info, content))
    else:
        members[index] = (info, content)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": meant
        for member, body in members:
            archive.writestr(member, body)
    return buffer.getvalue(), f"{operation} of {info.filename}"


MUTATORS = {
    "zip_bytes": zip_bytes,
    "zip_fields": zip_fields,
    "config": config,
    "hdf5": hdf5,
    "npz": npz,
}
