"""Building a new archive from an opened one plus replaced entries.

Entries that are not replaced are copied as raw bytes (local header and
compressed data, never decompressed), in the kernel where it can. The output
goes to a temporary file in the target's directory, is re-opened and checked
(structure, config, every CRC), and only then renamed over the target: a
failure leaves nothing at the target path. When the rename replaces a file,
the data is forced to disk (fsync) first. The same input
and replacements always give the same bytes.
"""

from __future__ import annotations

import copy
import mmap
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Collection, Mapping
from pathlib import Path

from .archive import CONFIG, Archive, Entry, Limits, open_archive
from .errors import ArchiveError

# Entries the writer adds (not replacing one) get this fixed date, for
# byte-identical output.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP64_EXTRA = 0x0001


class WriteError(Exception):
    """The new archive failed its check after writing; nothing was written."""


def write_archive(
    source: Archive,
    target: str | os.PathLike,
    replacements: Mapping[str, bytes | os.PathLike] | None = None,
    remove: Collection[str] = (),
    limits: Limits | None = None,
) -> Path:
    """Write `source` to `target` with some entries replaced, added or removed.

    `replacements` maps entry names to new contents, bytes or the path of a
    file to stream in (e.g. an edited `model.weights.h5`): an existing entry
    keeps its place, date and compression; a new one is appended (in name
    order, stored). Returns the target path once the new archive is checked.
    """
    replacements = dict(replacements or {})
    target = Path(target)
    # Data is forced to disk before the rename only when the rename replaces a
    # file: then a crash must find the old file or the whole new one. A new
    # path can only lose the new file, and the input is never at risk.
    durable = target.exists()
    if target.resolve() == source.path.resolve() and not replacements and not remove:
        return target  # nothing to do, and never truncate the source
    fd, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
    )
    os.close(fd)
    temporary = Path(temporary)
    os.chmod(temporary, _new_file_mode(target))
    try:
        # a config.json copied from the source was parsed when the source was opened
        known_config = None if CONFIG in replacements else source.config_bytes
        expected = _write(source, temporary, replacements, set(remove), durable)
        _verify(temporary, expected, known_config, limits)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(target.parent)
    return target


def _write(
    source: Archive,
    temporary: Path,
    replacements: dict[str, bytes | os.PathLike],
    remove: set[str],
    durable: bool,
) -> list[str]:
    """Write the new zip; return the names it holds, in order."""
    written = []
    with (
        open(temporary, "wb", buffering=0) as out,
        open(source.path, "rb") as src,
        zipfile.ZipFile(out, "w") as zout,
    ):
        for entry in source.entries:
            if entry.name in remove:
                continue
            if entry.name in replacements:
                _write_entry(zout, _fresh_info(entry.info), replacements.pop(entry.name))
            else:
                _copy_raw(src, out, entry, zout)
            written.append(entry.name)
        for name in sorted(replacements):
            info = zipfile.ZipInfo(name, FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            _write_entry(zout, info, replacements[name])
            written.append(name)
        zout.comment = source.comment
        zout.close()  # writes the central directory
        if durable:
            os.fsync(out.fileno())
    return written


def _write_entry(zout: zipfile.ZipFile, info: zipfile.ZipInfo, content) -> None:
    """New contents for an entry: bytes, or a file streamed in by chunks."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        zout.writestr(info, content)
        return
    with open(content, "rb") as data:
        info.file_size = os.fstat(data.fileno()).st_size  # decides on ZIP64 up front
        with zout.open(info, "w") as out:
            shutil.copyfileobj(data, out, 1 << 20)


def _fresh_info(original: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A ZipInfo for new contents under an existing entry's name and date."""
    info = zipfile.ZipInfo(original.filename, original.date_time)
    info.compress_type = original.compress_type
    info.external_attr = original.external_attr
    info.create_system = original.create_system
    info.comment = original.comment
    return info


def _copy_raw(src, out, entry: Entry, zout: zipfile.ZipFile) -> None:
    """Copy an entry's local header and bytes unchanged; list it in `zout`."""
    info = copy.copy(entry.info)
    info.header_offset = out.tell()
    info.extra = _strip_zip64(info.extra)  # zipfile re-adds one where needed
    _copy_range(
        src.fileno(), out.fileno(), entry.header_offset, entry.end_offset - entry.header_offset
    )
    zout.filelist.append(info)
    zout.NameToInfo[info.filename] = info
    # zipfile writes the central directory at `start_dir` when it closes.
    zout.start_dir = out.tell()
    zout._didModify = True


def _copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> None:
    try:
        while count > 0:
            copied = os.copy_file_range(src_fd, dst_fd, count, offset)
            if copied == 0:
                raise WriteError("the source archive ended while it was being copied")
            offset += copied
            count -= copied
    except (AttributeError, OSError) as e:  # no copy_file_range on this system
        if isinstance(e, WriteError):
            raise
        while count > 0:
            chunk = os.pread(src_fd, min(count, 1 << 22), offset)
            if not chunk:
                raise WriteError("the source archive ended while it was being copied") from None
            os.write(dst_fd, chunk)
            offset += len(chunk)
            count -= len(chunk)


def _strip_zip64(extra: bytes) -> bytes:
    kept, position = [], 0
    while position + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, position)
        end = position + 4 + size
        if kind != _ZIP64_EXTRA:
            kept.append(extra[position:end])
        position = end
    return b"".join(kept)


def _verify(
    path: Path, expected: list[str], known_config: bytes | None, limits: Limits | None
) -> None:
    """Re-open the written archive and check it entry by entry (a config.json
    copied unchanged must hold the source's bytes; a new one is parsed)."""
    try:
        archive = open_archive(path, limits, known_config=known_config)
    except ArchiveError as e:
        raise WriteError(f"the new archive does not read back: {e.what}") from None
    with archive, open(path, "rb") as raw:
        names = [e.name for e in archive.entries]
        if names != expected:
            raise WriteError(f"the new archive holds {names}, expected {expected}")
        with mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            for entry in archive.entries:
                _verify_crc(archive, entry, mapped)


def _verify_crc(archive: Archive, entry: Entry, mapped: mmap.mmap) -> None:
    if entry.method == zipfile.ZIP_STORED:
        with memoryview(mapped) as view:
            data = view[entry.data_offset : entry.data_offset + entry.size]
            crc = zlib.crc32(data)
            data.release()
    else:
        crc = zlib.crc32(archive.read(entry.name))
    if crc != entry.crc32:
        raise WriteError(f"entry {entry.name} fails its CRC check in the new archive")


def _new_file_mode(target: Path) -> int:
    """Keep an existing target's permissions; else what `open()` would give."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomically(target: str | os.PathLike, text: str) -> Path:
    """Write a small text file (a SARIF report) the way archives are written:
    to a temporary file beside the target, then renamed over it."""
    target = Path(target)
    fd, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, _new_file_mode(target))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
