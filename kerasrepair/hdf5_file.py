"""The file object h5py reads untrusted HDF5 through: it refuses a global heap
that would make HDF5 loop forever, before HDF5 parses it.

Variable-length strings live in global heap collections: Keras 2's
`model_config` and `keras_version`, the `name` Keras 3.6+ writes on a `vars`
group. HDF5 (2.0.0, bundled by h5py 3.16) walks a collection's objects with
`p = begin + need` (H5HG__cache_heap_deserialize); an object whose `need`
is 0, or so large that the pointer wraps backwards, never moves `p` past it,
and the walk never ends. Native code cannot be interrupted, so the collection
is checked here, as h5py's file-object driver hands it over: HDF5 loads a
collection with a read that starts at its "GCOL" signature.
"""

from __future__ import annotations

import contextlib
import io
import resource
import struct
import threading
from typing import BinaryIO

from .errors import ArchiveError

_SIGNATURE = b"GCOL"
_LOCAL_SIGNATURE = b"HEAP"
_FREE_NULL = 1  # the end of a local heap's free list
_SUPERBLOCK = b"\x89HDF\r\n\x1a\n"
_WORD = 1 << 64  # size_t
_LENGTHS = {2: "<H", 4: "<L", 8: "<Q"}


class HeapCheckedFile(io.RawIOBase):
    """A seekable file (`file`) as h5py's file-object driver reads it, each
    global heap collection checked as it is loaded; `where` names it in errors."""

    def __init__(self, file: BinaryIO, where: str):
        super().__init__()
        self._file = file
        self._where = where
        # the superblock's "size of offsets" and "size of lengths": 8 unless it says otherwise
        self._offset = self._length = "<Q"
        self._size = file.seek(0, io.SEEK_END)
        file.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        start = self._file.tell()
        count = self._file.readinto(buffer)
        if count and count >= 16:
            head = bytes(memoryview(buffer)[:16])
            if start == 0 and head[:8] == _SUPERBLOCK:
                self._superblock(bytes(memoryview(buffer)[:count]))
            elif head[:4] == _SIGNATURE and head[4] == 1:
                self._check_heap(start, bytes(memoryview(buffer)[:count]))
            elif head[:4] == _LOCAL_SIGNATURE and head[4] == 0:
                self._check_local_heap(start, bytes(memoryview(buffer)[:count]))
        return count

    def _superblock(self, data: bytes) -> None:
        version = data[8]
        at = 13 if version in (0, 1) else 9 if version in (2, 3) else None
        if at is not None and len(data) > at + 1:
            self._offset = _LENGTHS.get(data[at], self._offset)
            self._length = _LENGTHS.get(data[at + 1], self._length)

    def _check_heap(self, start: int, data: bytes) -> None:
        layout = struct.Struct(self._length)
        header = 8 + layout.size  # signature, version, 3 reserved, collection size
        (size,) = layout.unpack_from(data, 8)
        if size > len(data):  # HDF5 reads 4 KiB first, then the rest: read it all now
            data += self._read_at(start + len(data), min(size, self._size - start) - len(data))
        end = min(size, len(data))  # beyond the file's end HDF5 fails by itself
        object_header = 8 + layout.size  # index, references, 4 reserved, object size
        at = header
        while at + object_header <= end:
            index = int.from_bytes(data[at : at + 2], "little")
            (length,) = layout.unpack_from(data, at + 8)
            need = (object_header + ((length + 7) & ~7)) % _WORD if index else length
            if need == 0 or need >= _WORD // 2:
                raise ArchiveError(
                    self._where,
                    f"the global heap at offset {start:,} is damaged: object {index} at "
                    f"offset {start + at:,} declares a size of {length:,}, which makes "
                    "HDF5 loop forever (not read)",
                    "the file is damaged or crafted; re-save or re-download the model",
                )
            if need > end - at:  # HDF5 reports "ran off end of input buffer" itself
                return
            at += need

    def _check_local_heap(self, start: int, data: bytes) -> None:
        """A local heap (a group's link names) whose free list comes back to a
        block it has passed: HDF5 follows it forever, allocating at each step
        (H5HL__fl_deserialize), until the machine runs out of memory."""
        length, offset = struct.Struct(self._length), struct.Struct(self._offset)
        if len(data) < 8 + 2 * length.size + offset.size:
            return
        (size,) = length.unpack_from(data, 8)
        (free,) = length.unpack_from(data, 8 + length.size)
        (address,) = offset.unpack_from(data, 8 + 2 * length.size)
        if free == _FREE_NULL or size >= self._size or address >= self._size:
            return  # no free list, or a block HDF5 cannot read: it says so itself
        block = self._read_at(address, size)
        seen = set()
        while free != _FREE_NULL:
            if free >= size or free + 2 * length.size > len(block):
                return  # HDF5 reports "bad heap free list" itself
            if free in seen:
                raise ArchiveError(
                    self._where,
                    f"the local heap at offset {start:,} is damaged: its free list comes "
                    f"back to offset {free:,}, which makes HDF5 allocate forever (not read)",
                    "the file is damaged or crafted; re-save or re-download the model",
                )
            seen.add(free)
            (following,) = length.unpack_from(block, free)
            (free_size,) = length.unpack_from(block, free + length.size)
            if following == 0 or free + free_size > size:
                return  # errors of HDF5's own
            free = following

    def _read_at(self, at: int, count: int) -> bytes:
        """`count` bytes at `at` (fewer at the file's end), the position kept."""
        here = self._file.tell()
        try:
            self._file.seek(at)
            return self._file.read(count)
        finally:
            self._file.seek(here)


@contextlib.contextmanager
def bounded_memory(file_size: int):
    """While HDF5 converts a variable-length value of a file of `file_size`
    bytes: room to map what the file could hold (3x its size and 64 MiB more),
    not what it declares. HDF5 allocates, and zeroes, the length a string's
    heap reference declares (up to 4 GiB) before it reads the heap that would
    say the length is wrong; beyond the room its allocation fails, and h5py
    says so. Only in a process of one thread: the limit is the whole process's."""
    if threading.active_count() > 1 or not hasattr(resource, "RLIMIT_AS"):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:  # pages mapped now
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    limit = mapped + 3 * file_size + (64 << 20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        yield  # a tighter limit is set already
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
