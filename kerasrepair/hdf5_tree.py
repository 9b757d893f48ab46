"""The weights tree of an HDF5 file as h5py writes one, read from its bytes in
Python: no h5py, no HDF5 library; EfficientNetB7's 2,674 objects in 0.05 s,
where h5py's walk takes 0.3 s after its import's 0.1 s.

It reads the file format h5py writes by default (and Keras with it): a
version 0 superblock, groups as symbol tables (a version 1 B-tree of symbol
table nodes, names in a local heap), version 1 object headers, datasets of a
simple or scalar dataspace, IEEE floats or integers in little-endian order,
stored contiguous or compact. Anything else, or anything it cannot make
sense of (damage), is declined (`read` returns None) and the file is read
with h5py as before, which then says what is wrong: what is read here is
what h5py reads, or nothing (the layer names, which h5py reads when they
are used, aside). Every read is bounded by the file's end and every walk by
what it has seen, so no bytes make it loop or grow.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from typing import BinaryIO

from .weights_tree import (
    BOMB_FLOOR,
    BOMB_RATIO,
    VarGroups,
    Variable,
    WeightsProblem,
    WeightsTree,
    bomb_text,
    natural_key,
    soft_link_text,
)

SIGNATURE = b"\x89HDF\r\n\x1a\n"
UNDEFINED = 0xFFFF_FFFF_FFFF_FFFF
MAX_HEADER = 1 << 20  # bytes of one object header (or continuation block) read at most
MAX_OBJECTS = 1 << 20  # objects walked at most
PAGE = 2048  # bytes read at a time

# object header message types (HDF5 File Format Specification, IV.A.2)
NIL, DATASPACE, DATATYPE, FILL, LAYOUT = 0x0, 0x1, 0x3, 0x5, 0x8
ATTRIBUTE, MTIME_OLD, CONTINUATION, SYMBOL_TABLE, MTIME = 0xC, 0xE, 0x10, 0x11, 0x12
KNOWN_MESSAGES = frozenset(
    (
        NIL,
        DATASPACE,
        DATATYPE,
        FILL,
        LAYOUT,
        ATTRIBUTE,
        MTIME_OLD,
        CONTINUATION,
        SYMBOL_TABLE,
        MTIME,
    )
)
PLAIN_FLAGS = 0x05  # message flags read here: constant, not to be shared (none is shared)
SOFT_LINK = 2  # symbol table entry cache type
FREE_NULL = 1  # the end of a local heap's free list

# IEEE floats as HDF5 describes them: size -> (precision, exponent location,
# exponent size, mantissa size, exponent bias, sign location)
IEEE = {
    2: (16, 10, 5, 10, 15, 15),
    4: (32, 23, 8, 23, 127, 31),
    8: (64, 52, 11, 52, 1023, 63),
}


class Declined(Exception):
    """A file this reader does not read: h5py reads it."""


def read(
    file: BinaryIO, entry: str, read_later: Callable[[list[str]], dict[str, str | None]]
) -> WeightsTree | None:
    """The tree of the HDF5 file `file` (seekable, closed after), its layer
    names to be read by `read_later` when first used (`VarGroups`); None
    when the file is not one this module reads."""
    with file:
        try:
            tree, named = _Reader(file).tree(entry)
        except (Declined, struct.error, IndexError, ValueError, OverflowError):  # UnicodeError too
            return None
    tree.variables.sort(key=lambda v: natural_key(v.path))
    tree.var_groups = VarGroups(tree.var_groups, named, read_later)
    return tree


class _Reader:
    def __init__(self, file: BinaryIO):
        self._file = file
        self._size = self._end = file.seek(0, os.SEEK_END)
        self._page_at, self._page = 0, b""

    def _within(self, at: int, count: int) -> None:
        if at < 0 or count < 0 or at + count > self._end:
            raise Declined("beyond the end of the file")

    def _read(self, at: int, count: int) -> bytes:
        """`count` bytes at `at`, from the page read last if it holds them:
        HDF5's metadata lies in small pieces, most next to the one before."""
        self._within(at, count)
        offset = at - self._page_at
        if offset < 0 or offset + count > len(self._page):
            self._page_at = at - at % PAGE
            self._file.seek(self._page_at)
            self._page = self._file.read(max(PAGE, at + count - self._page_at))
            offset = at - self._page_at
        data = self._page[offset : offset + count]
        if len(data) != count:
            raise Declined("a short read")
        return data

    # ------------------------------------------------------------ the walk

    def tree(self, entry: str) -> tuple[WeightsTree, list[str]]:
        root = self._superblock()
        tree = WeightsTree(format="h5", entry=entry)
        groups: dict[str, None] = {}
        named: list[str] = []  # the `vars` groups with attributes
        links: list[WeightsProblem] = []  # after the datasets' problems, as h5py's walk has them
        seen = {root}
        header = self._header(root)
        if header.symbol_table is None:
            raise Declined("a root object that is no group")
        # depth first, each group's links in the order they are stored, as
        # HDF5's visitors go (H5Ovisit, H5Lvisit): a group's whole subtree
        # before its next sibling
        stack = [iter(self._links(b"", header))]
        while stack:
            link = next(stack[-1], None)
            if link is None:
                stack.pop()
                continue
            path, address, soft = link
            if soft is not None:
                where = path.decode("utf-8", "replace")
                links.append(WeightsProblem(where, soft_link_text(soft)))
                continue
            if address in seen:
                continue  # reached by another hard link: visited there
            seen.add(address)
            if len(seen) > MAX_OBJECTS:
                raise Declined("too many objects")
            header = self._header(address)
            where = path.decode("utf-8", "replace")
            if header.symbol_table is not None:
                if where.rsplit("/", 1)[-1] == "vars":
                    groups[where] = None
                    if header.attributes:
                        named.append(where)
                stack.append(iter(self._links(path, header)))
            else:
                self._dataset(where, header, tree)
        tree.var_groups = groups
        tree.problems += links
        return tree, named

    def _superblock(self) -> int:
        head = self._read(0, 96)
        versions = (head[8], head[9], head[10], head[12])  # superblock, free space, root, shared
        if head[:8] != SIGNATURE or versions != (0, 0, 0, 0) or head[13:15] != b"\x08\x08":
            raise Declined("not a version 0 superblock with 8-byte offsets and lengths")
        leaf, internal = struct.unpack_from("<HH", head, 16)
        (driver,) = struct.unpack_from("<Q", head, 48)
        if not leaf or not internal or driver != UNDEFINED:
            raise Declined("a superblock with a driver's block, or no B-tree size")
        # HDF5 reads each node whole, as big as these make it, full or not
        self._node_entries, self._table_entries = 2 * internal, 2 * leaf
        (base,) = struct.unpack_from("<Q", head, 24)
        if base != 0:
            raise Declined("a user block")
        (end,) = struct.unpack_from("<Q", head, 40)
        if end > self._size:
            raise Declined("a truncated file")  # HDF5 says so
        self._end = end  # HDF5 reads nothing beyond the end the superblock says
        (address,) = struct.unpack_from("<Q", head, 64)  # the root group's object header
        return address

    # ------------------------------------------------------------ object headers

    def _header(self, address: int) -> _Header:
        """The messages of the version 1 object header at `address` (and of
        its continuation blocks) that this reader needs."""
        prefix = self._read(address, 16)
        if prefix[0] != 1:
            raise Declined("not a version 1 object header")
        count, size = struct.unpack_from("<H", prefix, 2)[0], struct.unpack_from("<I", prefix, 8)[0]
        header = _Header()
        blocks = [(address + 16, size)]
        seen_blocks = set()
        messages = 0
        while blocks:
            start, length = blocks.pop(0)
            if start in seen_blocks or length > MAX_HEADER or len(seen_blocks) > 64:
                raise Declined("a continuation block again, or too big")
            seen_blocks.add(start)
            block = self._read(start, length)
            at = 0
            while at + 8 <= length:
                kind, data_size, flags = struct.unpack_from("<HHB", block, at)
                data = block[at + 8 : at + 8 + data_size]
                if len(data) != data_size or data_size % 8:
                    raise Declined("a message beyond its block, or not aligned")
                at += 8 + data_size
                messages += 1
                if kind not in KNOWN_MESSAGES or flags & ~PLAIN_FLAGS:
                    raise Declined(f"message type {kind:#x} (flags {flags:#x})")
                if kind == CONTINUATION:
                    blocks.append(struct.unpack_from("<QQ", data))
                    if blocks[-1][1] == 0:
                        raise Declined("an empty continuation block")
                elif kind == ATTRIBUTE:
                    header.attributes += 1
                elif kind == MTIME and data[:1] != b"\x01":
                    raise Declined("a modification time of another version")
                elif kind == MTIME_OLD and not data[:14].isdigit():
                    raise Declined("a modification time that is not 14 digits")
                elif kind in (DATASPACE, DATATYPE, LAYOUT, FILL):
                    if header.messages.get(kind) is not None:
                        raise Declined("a message twice")
                    header.messages[kind] = data
                elif kind == SYMBOL_TABLE:
                    header.symbol_table = struct.unpack_from("<QQ", data)
            if at != length:
                raise Declined("bytes after the last message")
        if messages != count:
            raise Declined("a count of messages that is not theirs")
        return header

    # ------------------------------------------------------------ groups

    def _links(self, path: bytes, header: _Header):
        """The links of a group, in the order they are stored: (path, object
        header address, None) for a hard link, (path, None, value) for a soft one."""
        btree, heap = header.symbol_table
        names = self._heap(heap)
        previous = b""
        for entry, brackets in self._symbols(btree, len(names)):
            name_offset, address, cache = struct.unpack_from("<QQI", entry)
            name = _string(names, name_offset)
            # names stored in order, each between its keys: as HDF5 finds them
            if not name or name <= previous:
                raise Declined("link names empty, out of order or twice")
            for low, high in brackets:
                if not _string(names, low) < name <= _string(names, high):
                    raise Declined("a link name outside its B-tree keys")
            name.decode("utf-8")  # h5py's walk fails on another: it says what is wrong
            previous = name
            child = path + b"/" + name if path else name
            if cache == SOFT_LINK:
                (value_offset,) = struct.unpack_from("<I", entry, 24)
                yield child, None, _string(names, value_offset)
            elif cache in (0, 1):
                yield child, address, None
            else:
                raise Declined(f"a symbol table entry of cache type {cache}")

    def _heap(self, address: int) -> bytes:
        """The data segment of the local heap at `address` (the link names)."""
        head = self._read(address, 32)
        if head[:4] != b"HEAP" or head[4] != 0:
            raise Declined("not a local heap")
        size, free, data = struct.unpack_from("<QQQ", head, 8)
        if size > self._size:
            raise Declined("a heap bigger than its file")
        names = self._read(data, size)
        seen = set()
        while free != FREE_NULL:  # the free list, checked as HDF5 checks it on loading
            if free in seen or free + 16 > size:
                raise Declined("a local heap's free list that is damaged")
            seen.add(free)
            following, block = struct.unpack_from("<QQ", names, free)
            if following == 0 or block < 16 or free + block > size:
                raise Declined("a local heap's free block that is damaged")
            free = following
        return names

    def _symbols(self, btree: int, heap_size: int):
        """The 40-byte symbol table entries under the version 1 B-tree of
        group nodes at `btree`, in order, each with the keys (heap offsets of
        names) that bracket it at each level: HDF5 finds a link by its name
        between them. The nodes are checked as HDF5 reads them: each level
        one below its parent's, its keys in the heap, and the nodes of a
        level linked left and right to their neighbours."""
        seen = set()
        levels: dict[int, list[tuple[int, int, int]]] = {}  # level: (node, left, right)
        stack = [(iter([(btree, ())]), None)]
        while stack:
            node, brackets = next(stack[-1][0], (None, ()))
            if node is None:
                stack.pop()
                continue
            if node in seen or len(stack) > 64:
                raise Declined("a B-tree node again, or too deep")
            seen.add(node)
            head = self._read(node, 24)
            if head[:4] != b"TREE" or head[4] != 0:
                raise Declined("not a B-tree node of a group")
            level, used = head[5], struct.unpack_from("<H", head, 6)[0]
            if used > self._node_entries:
                raise Declined("a B-tree node over its size")
            self._within(node, 24 + 16 * self._node_entries + 8)  # HDF5 reads it whole
            parent = stack[-1][1]
            if parent is not None and level != parent - 1 or level and not used:
                raise Declined("a B-tree node at the wrong level, or empty above the leaves")
            left, right = struct.unpack_from("<QQ", head, 8)
            levels.setdefault(level, []).append((node, left, right))
            body = self._read(node + 24, used * 16 + 8)
            keys = struct.unpack_from(f"<{2 * used + 1}Q", body)
            if any(key >= heap_size for key in keys[::2]):
                raise Declined("a B-tree key outside its heap")
            children = [
                (keys[2 * n + 1], (*brackets, (keys[2 * n], keys[2 * n + 2]))) for n in range(used)
            ]
            if level > 0:
                stack.append((iter(children), level))
                continue
            for child, chain in children:
                if child in seen:
                    raise Declined("a symbol table node again")
                seen.add(child)
                snod = self._read(child, 8)
                if snod[:4] != b"SNOD" or snod[4] != 1:
                    raise Declined("not a symbol table node")
                (count,) = struct.unpack_from("<H", snod, 6)
                if count > self._table_entries:
                    raise Declined("a symbol table node over its size")
                self._within(child, 8 + 40 * self._table_entries)  # HDF5 reads it whole
                table = self._read(child + 8, count * 40)
                for n in range(count):
                    yield table[40 * n : 40 * n + 40], chain
        for nodes in levels.values():
            addresses = [UNDEFINED] + [node for node, _, _ in nodes] + [UNDEFINED]
            for n, (_, left, right) in enumerate(nodes):
                if left != addresses[n] or right != addresses[n + 2]:
                    raise Declined("B-tree nodes not linked to their neighbours")

    # ------------------------------------------------------------ datasets

    def _dataset(self, path: str, header: _Header, tree: WeightsTree) -> None:
        """A variable, or a shape bomb (KR910), from a dataset's messages."""
        messages = header.messages
        if header.symbol_table is not None or set(messages) - {FILL} != {
            DATASPACE,
            DATATYPE,
            LAYOUT,
        }:
            raise Declined("neither a group nor a dataset")
        shape = _shape(messages[DATASPACE])
        dtype, itemsize, signed = _dtype(messages[DATATYPE])
        if FILL in messages:
            _fill(messages[FILL], itemsize)
        stored, address = _layout(messages[LAYOUT])
        declared = math.prod(shape) * itemsize
        if address is not None and stored != declared:
            raise Declined("storage of another size than the data's")  # HDF5 refuses it
        if isinstance(address, int) and address + stored > self._end:
            raise Declined("storage beyond the end of the file")
        if declared > BOMB_FLOOR and (
            declared > BOMB_RATIO * stored or declared > self._size  # never filtered
        ):
            tree.problems.append(
                WeightsProblem(path, bomb_text(shape, dtype, declared, stored, self._size), "KR910")
            )
            return
        tree.variables.append(Variable(path=path, shape=shape, dtype=dtype, nbytes=declared))
        if path == "optimizer/vars/0" and shape == () and dtype[0] in "iu":
            if address is None:
                raise Declined("an optimizer step count never written")
            raw = address if isinstance(address, bytes) else self._read(address, itemsize)
            tree.optimizer_iterations = int.from_bytes(raw[:itemsize], "little", signed=signed)


class _Header:
    """What a reader needs of an object header."""

    def __init__(self) -> None:
        self.attributes = 0
        self.symbol_table: tuple[int, int] | None = None
        self.messages: dict[int, bytes] = {}


def _shape(data: bytes) -> tuple[int, ...]:
    version, rank, flags = data[0], data[1], data[2]
    if version == 1:
        start = 8
        if flags & 0x02:
            raise Declined("a dataspace with a permutation")
    elif version == 2:
        start = 4
        if data[3] == 2:
            return ()  # null: h5py's shape is None
        if data[3] not in (0, 1):
            raise Declined("a dataspace of unknown type")
    else:
        raise Declined(f"dataspace version {version}")
    if rank > 32:
        raise Declined("a rank over 32")
    shape = struct.unpack_from(f"<{rank}Q", data, start)
    if flags & 0x01:  # the maximum dimensions follow: none below its dimension
        maximum = struct.unpack_from(f"<{rank}Q", data, start + 8 * rank)
        if any(most < size for size, most in zip(shape, maximum, strict=True)):
            raise Declined("a dimension over its maximum")
    return shape


def _fill(data: bytes, itemsize: int) -> None:
    """A fill value message as h5py writes one (version 2), whole."""
    version, _, _, defined = data[:4]
    if version != 2 or defined not in (0, 1):
        raise Declined("a fill value message of another kind")
    if defined:
        (size,) = struct.unpack_from("<I", data, 4)
        if size not in (0, itemsize) or 8 + size > len(data):
            raise Declined("a fill value of another size than the data's")


def _dtype(data: bytes) -> tuple[str, int, bool]:
    """numpy's name of the type (as `str(dataset.dtype)`), its size, and
    whether it is a signed integer."""
    kind, version = data[0] & 0x0F, data[0] >> 4
    bits = data[1] | data[2] << 8 | data[3] << 16
    (size,) = struct.unpack_from("<I", data, 4)
    if version not in (1, 2, 3):
        raise Declined(f"datatype version {version}")
    if kind == 0:  # fixed-point
        offset, precision = struct.unpack_from("<HH", data, 8)
        if bits & ~0x08 or size not in (1, 2, 4, 8) or offset or precision != 8 * size:
            raise Declined("an integer other than numpy's, or big-endian")
        signed = bool(bits & 0x08)
        return f"{'int' if signed else 'uint'}{8 * size}", size, signed
    if kind == 1:  # floating point
        offset, precision, epos, esize, mpos, msize, bias = struct.unpack_from("<HHBBBBI", data, 8)
        layout = (precision, epos, esize, msize, bias, bits >> 8)
        if bits & 0xFF != 0x20 or offset or mpos or IEEE.get(size) != layout:
            raise Declined("a float other than IEEE's, or big-endian")
        return f"float{8 * size}", size, False
    raise Declined(f"datatype class {kind}")


def _layout(data: bytes) -> tuple[int, int | bytes | None]:
    """The bytes a dataset stores (as H5Dget_storage_size says) and where:
    an address (None: never written), or the data itself (compact)."""
    if data[0] != 3:
        raise Declined(f"layout version {data[0]}")
    if data[1] == 1:  # contiguous
        address, size = struct.unpack_from("<QQ", data, 2)
        return (0, None) if address == UNDEFINED else (size, address)
    if data[1] == 0:  # compact
        (size,) = struct.unpack_from("<H", data, 2)
        raw = data[4 : 4 + size]
        if len(raw) != size:
            raise Declined("compact data beyond its message")
        return size, raw
    raise Declined(f"layout class {data[1]}")


def _string(heap: bytes, offset: int) -> bytes:
    """The null-terminated string at `offset` of a local heap's data."""
    end = heap.find(b"\0", offset)
    if offset >= len(heap) or end < 0:
        raise Declined("a name outside its heap")
    return heap[offset:end]
