"""Safe reading of a `.keras` archive.

A `.keras` file is a zip holding `config.json`, `metadata.json`, the weights
(`model.weights.h5` or `model.weights.npz`) and sometimes `assets/`. This module
opens it once, reads the central directory, checks every entry *before*
anything is decompressed, gives raw access to each entry's bytes, and parses
`config.json` and `metadata.json`. Anything it cannot read safely becomes an
`ArchiveError`: one line saying what is wrong, where, and what to do.
"""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import os
import re
import stat
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArchiveError

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS_H5 = "model.weights.h5"
WEIGHTS_NPZ = "model.weights.npz"
ASSETS = "assets/"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LFS_MAGIC = b"version https://git-lfs"
_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflated",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
# general purpose flag bits (APPNOTE 4.4.4) that change how an entry's bytes
# are read: encrypted (0), sizes in a data descriptor (3), patched data (5),
# strong encryption (6); the local header and the central directory must agree
_ENCRYPTED, _DESCRIPTOR, _PATCHED, _STRONG_ENCRYPTION, _UTF8 = 0x1, 0x8, 0x20, 0x40, 0x800
_READING_FLAGS = _ENCRYPTED | _DESCRIPTOR | _PATCHED | _STRONG_ENCRYPTION
_ZIP64 = 0xFFFFFFFF  # a 32-bit size or offset whose value is in the zip64 extra field
# What zipfile and the decompressors it calls (zlib, bz2, lzma) raise on
# damaged bytes: a bad CRC or header (BadZipFile), a feature zipfile lacks
# (NotImplementedError), a password (RuntimeError), broken compressed data
# (zlib.error, LZMAError, bz2's OSError), data that ends early (EOFError),
# impossible offsets (ValueError, OverflowError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    OSError,
    ValueError,
    OverflowError,
    struct.error,
)
# ... and what h5py, numpy and zipfile raise on a damaged weights file
# (MemoryError: an allocation beyond `hdf5_file.bounded_memory`'s room)
_WEIGHTS_ERRORS = (*_ZIP_ERRORS, KeyError, TypeError, IndexError, UnicodeDecodeError, MemoryError)


@dataclass(frozen=True)
class Limits:
    """Bounds checked from the central directory before anything is read."""

    max_entries: int = 100_000
    max_entry_size: int = 64 * GiB  # declared uncompressed size of one entry
    max_total_size: int = 256 * GiB  # declared uncompressed size of all entries
    max_json_size: int = 256 * MiB  # config.json / metadata.json
    max_ratio: float = 100.0  # uncompressed / compressed, a zip bomb beyond it
    ratio_floor: int = 1 * MiB  # entries smaller than this are never bombs
    max_json_depth: int = 200


@dataclass(frozen=True)
class Entry:
    """One zip entry, as its central directory and local header describe it."""

    name: str
    method: int
    size: int  # uncompressed
    compressed_size: int
    crc32: int
    header_offset: int  # where its local header starts
    data_offset: int  # where its (compressed) bytes start
    end_offset: int  # where it ends, data descriptor included
    info: zipfile.ZipInfo = field(repr=False, compare=False)

    @property
    def method_name(self) -> str:
        return _METHODS.get(self.method, f"method {self.method}")


# weights trees being read elsewhere (`prefetch`: a child process), by the
# archive's absolute path: `tree(identity, read_names)` gives the tree of the
# file with that `Archive.identity`, or None (then the Archive reads it);
# `cancel()` stops the reading
READ_AHEAD: dict[str, Any] = {}


@dataclass(frozen=True)
class ArchiveProblem:
    """Something odd about an entry that does not stop the archive being read
    (a missing or unparsable metadata.json)."""

    entry: str
    message: str


class Archive:
    """An opened `.keras` archive, read once by `open_archive()` and not changed
    after; close it when done. The weights tree is read on first use.

    A legacy HDF5 model (`model.save("m.h5")` in Keras 2) opens as an Archive
    too (`format == "h5"`): no entries, its `model_config` attribute as the
    config (with `training_config` as the `compile_config` a .keras holds),
    its root attributes as the metadata, `legacy` the file's description.
    """

    def __init__(
        self,
        path: Path,
        zf: zipfile.ZipFile | None,
        entries: list[Entry],
        config_bytes: bytes,
        config: dict[str, Any],
        metadata: dict[str, Any] | None,
        problems: tuple[ArchiveProblem, ...],
        legacy=None,  # legacy_h5.LegacyModel of an HDF5 model
    ):
        self.path = path
        st = path.stat()
        self.file_size = st.st_size
        # what tells this file from another put at its path later (`prefetch`)
        self.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        self.entries = tuple(entries)
        self.comment = zf.comment if zf is not None else b""
        self.legacy = legacy
        self.format = "h5" if legacy is not None else "keras"
        self.config_bytes = config_bytes
        self.config = config
        self.metadata = metadata
        self.problems = problems
        self._zip = zf
        self._by_name = {e.name: e for e in entries}
        self._weights = None
        # bytes before the first entry: 0 as Keras writes it; more for a zip
        # behind other data, which zipfile (and so Keras) reads too (KR911)
        self.prepended = min((e.header_offset for e in entries), default=0)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        ahead = self._read_ahead()
        if ahead is not None:
            ahead.cancel()

    def entry(self, name: str) -> Entry | None:
        return self._by_name.get(name)

    def read(self, name: str, limit: int | None = None) -> bytes:
        """The decompressed bytes of an entry; zipfile checks its CRC."""
        return read_entry(self.path, self._zip, self._by_name[name], limit)

    @property
    def keras_version(self) -> str | None:
        version = (self.metadata or {}).get("keras_version")
        return version if isinstance(version, str) else None

    @property
    def keras2(self) -> bool:
        """Whether Keras 2 (tf.keras) wrote it: a legacy HDF5 model, or a
        `.keras` whose metadata names a 2.x release."""
        version = self.keras_version or ""
        return version.startswith(("1.", "2.")) or (
            self.format == "h5" and not version.startswith("3.")
        )

    @property
    def weights_entry(self) -> Entry | None:
        return self.entry(WEIGHTS_H5) or self.entry(WEIGHTS_NPZ)

    @property
    def asset_entries(self) -> list[Entry]:
        return [e for e in self.entries if e.name.startswith(ASSETS)]

    def open_seekable(self, entry: Entry):
        """A seekable binary file of an entry's content, without reading it all.

        Stored entries are read in place; a compressed one (a re-zipped archive)
        is decompressed to a temporary file first, as h5py needs random access.
        """
        if entry.method == zipfile.ZIP_STORED:
            return EntryFile(self.path, entry.data_offset, entry.size)
        import tempfile  # here, not at every start

        scratch = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it)
        try:
            for chunk in read_chunks(self.path, self._zip, entry):
                scratch.write(chunk)
        except BaseException:
            scratch.close()
            raise
        scratch.seek(0)
        return scratch

    def weights(self):
        """The weights tree (`weights.WeightsTree`), read on first use, metadata only."""
        ahead = self._read_ahead()
        if ahead is not None and self._weights is None and self.legacy is None:
            self._weights = ahead.tree(self.identity, self._read_names)  # None: read it here
        elif ahead is not None:
            ahead.cancel()
        if self._weights is None:
            entry = self.weights_entry
            if self.legacy is not None:
                from . import weights

                self._weights = weights.legacy_tree(self.legacy)
            elif entry is None:
                from .weights_tree import WeightsTree

                self._weights = WeightsTree(format="none", entry=None)
            else:
                self._weights = self._read_weights(entry)
        return self._weights

    def _read_weights(self, entry: Entry):
        """The tree of the weights entry: model.weights.h5 read by `hdf5_tree`,
        or by h5py when it declines (a file h5py wrote otherwise, or damage)."""
        from . import hdf5_tree

        where = f"{self.path}:{entry.name}"
        try:
            if entry.name == WEIGHTS_H5:
                tree = hdf5_tree.read(self.open_seekable(entry), entry.name, self._read_names)
                if tree is not None:
                    return tree
            from . import weights  # h5py costs ~0.1 s to import

            if entry.name == WEIGHTS_H5:
                return weights.read_h5(
                    self.open_seekable(entry), entry.name, where, self._read_names
                )
            return weights.read_npz(self.open_seekable(entry), entry.name, where)
        except _WEIGHTS_ERRORS as e:  # h5py's and numpy's words for damage
            raise _damaged_weights(where, e) from None

    @property
    def weights_read_elsewhere(self) -> bool:
        """Whether a child is reading the weights tree (`prefetch`): work on the
        config done before `weights()` waits for it costs no time."""
        return self._weights is None and os.path.abspath(self.path) in READ_AHEAD

    def _read_ahead(self):
        """The reading of this archive's weights tree started elsewhere, if any (once)."""
        return READ_AHEAD.pop(os.path.abspath(self.path), None) if READ_AHEAD else None

    def _read_names(self, groups: list[str]) -> dict[str, str | None]:
        """The layer names on the `vars` groups `groups` of `model.weights.h5`,
        read when the weights tree's `var_groups` first needs them."""
        from . import weights

        entry = self.entry(WEIGHTS_H5)
        where = f"{self.path}:{entry.name}"
        try:
            return weights.read_names(self.open_seekable(entry), groups, where)
        except _WEIGHTS_ERRORS as e:
            raise _damaged_weights(where, e) from None


class EntryFile(io.RawIOBase):
    """A read-only, seekable file over one stored entry's bytes in the archive."""

    def __init__(self, path: os.PathLike, offset: int, size: int):
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._offset = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self._size - self._pos)
        if count <= 0:
            return 0
        data = os.pread(self._fd, count, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def open_archive(path: str | os.PathLike, limits: Limits | None = None) -> Archive:
    """Open and validate a `.keras` archive; raise `ArchiveError` if unsafe."""
    limits = limits or Limits()
    path = Path(path)
    head = _read_head(path)
    prepended = not head.startswith((_LOCAL_MAGIC, b"PK\x05\x06")) and _zip_behind(path)
    # an HDF5 file with a zip behind it is what Keras reads for its name
    if _HDF5_MAGIC in (head[:8], head[512:520]) and not (
        prepended and path.suffix.lower() == ".keras"
    ):
        return _open_h5(path, limits)
    if not prepended:
        _recognise_non_zip(path, head)
    zf = open_zip(path)
    try:
        entries = read_entries(path, zf, limits)
        by_name = {e.name: e for e in entries}
        config_bytes = _config_bytes(path, zf, by_name, limits)
        config = parse_config(path, config_bytes, limits)
        metadata, problems = _metadata(path, zf, by_name.get(METADATA), limits)
        return Archive(path, zf, entries, config_bytes, config, metadata, problems)
    except BaseException:
        zf.close()
        raise


def _open_h5(path: Path, limits: Limits) -> Archive:
    """A legacy HDF5 model as an Archive (see `Archive`); a weights-only HDF5
    file is refused with what to do."""
    from . import legacy_h5  # h5py costs ~0.2 s to import

    with open(path, "rb") as f:
        legacy = legacy_h5.read_legacy(f, str(path))
    if legacy.model_config is None:
        layout = "Keras 3 (save_weights)" if legacy.kind == "keras3-weights" else "save_weights"
        raise ArchiveError(
            str(path),
            f"is a weights-only HDF5 file ({layout}): it holds no architecture",
            "build the model in code and call model.load_weights() on it, then "
            "model.save('model.keras')",
        )
    config = legacy.model_config
    if not isinstance(config, dict):
        raise ArchiveError(
            f"{path}:model_config",
            f"holds a JSON {type(config).__name__}, not an object",
            "the attribute must be a serialized Keras model; re-save the model",
        )
    if legacy.training_config is not None:
        config = {**config, "compile_config": legacy.training_config}
    depth = _json_depth(config)  # before json.dumps, which recurses as deep
    if depth > limits.max_json_depth:
        raise ArchiveError(
            f"{path}:model_config",
            f"nests {depth} levels deep, over the limit of {limits.max_json_depth}",
            "this is no Keras config; re-save the model, or raise the limit",
        )
    config_bytes = json.dumps(config).encode("utf-8")
    if len(config_bytes) > limits.max_json_size:
        raise ArchiveError(
            f"{path}:model_config",
            f"is {len(config_bytes)} bytes, over the limit of {limits.max_json_size}",
            "raise the limit if you trust this file",
        )
    metadata = {"keras_version": legacy.keras_version, "backend": legacy.backend}
    problems = ()
    if legacy.keras_version is None:
        problems = (ArchiveProblem("keras_version", "attribute is missing"),)
    return Archive(path, None, [], config_bytes, config, metadata, problems, legacy=legacy)


def open_zip(path: Path) -> zipfile.ZipFile:
    """The zip's central directory, or an `ArchiveError` that says why not."""
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise _bad_zip(path, str(e)) from None
    except NotImplementedError as e:  # "zip file version 6.4": a version field zipfile refuses
        raise ArchiveError(
            str(path),
            f"needs a zip feature Python's zipfile, and so Keras, cannot read ({e})",
            "re-zip the model's files with a standard zip tool (zip -r -0 model.keras .)",
        ) from None
    except UnicodeDecodeError as e:
        raise ArchiveError(
            str(path),
            f"has an entry name marked UTF-8 (flag bit 11) that is not UTF-8 "
            f"(byte 0x{e.object[e.start]:02x}): Keras cannot open it",
            "the archive is damaged; re-save or re-download it",
        ) from None
    except OSError as e:
        raise ArchiveError(str(path), f"cannot be read ({e.strerror or e})") from None
    except (ValueError, OverflowError, EOFError, struct.error) as e:  # offsets past any file
        raise _bad_zip(path, f"impossible central directory: {e}") from None


def read_entry(path: Path, zf: zipfile.ZipFile, entry: Entry, limit: int | None = None) -> bytes:
    """The decompressed bytes of an entry; zipfile checks its CRC."""
    where = f"{path}:{entry.name}"
    if limit is not None and entry.size > limit:
        raise ArchiveError(
            where,
            f"entry declares {entry.size} bytes, over the limit of {limit}",
            "raise the limit if you trust this file",
        )
    with _reading(where), zf.open(entry.info) as f:
        data = f.read(entry.size + 1)
    if len(data) != entry.size:
        raise ArchiveError(
            where,
            f"entry holds {len(data)} bytes but declares {entry.size}",
            "the archive is damaged; re-save or re-download it",
        )
    return data


def read_chunks(path: Path, zf: zipfile.ZipFile, entry: Entry, size: int = 1 << 20):
    """The decompressed bytes of an entry, `size` at a time; zipfile checks its
    CRC at the end. Damage is an ArchiveError naming the entry."""
    with _reading(f"{path}:{entry.name}"), zf.open(entry.info) as f:
        while chunk := f.read(size):
            yield chunk


@contextlib.contextmanager
def _reading(where: str):
    """What zipfile and its decompressors raise on damaged bytes, as one line."""
    try:
        yield
    except _ZIP_ERRORS as e:
        raise ArchiveError(
            where, f"entry is damaged ({_reason(e)})", "re-save or re-download the archive"
        ) from None


def _damaged_weights(where: str, error: BaseException) -> ArchiveError:
    return ArchiveError(
        where,
        f"is damaged ({_reason(error)})",
        "the weights cannot be read; re-save or re-download the model",
    )


def _reason(error: BaseException) -> str:
    """An exception from a library, in a few words: its message, or its kind."""
    kind = {zlib.error: "deflate", lzma.LZMAError: "lzma"}.get(type(error))
    text = str(error) or type(error).__name__
    text = f"{kind}: {text}" if kind else text
    return text if len(text) <= 200 else text[:197] + "..."


def open_entries(path: str | os.PathLike, limits: Limits | None = None) -> Archive | None:
    """`open_archive` without reading config.json or metadata.json: the
    entries, checked as it checks them, for reading the weights tree alone
    (`prefetch`); None for what is no zip (a legacy HDF5 model)."""
    limits = limits or Limits()
    path = Path(path)
    head = _read_head(path)
    if _HDF5_MAGIC in (head[:8], head[512:520]):
        return None
    zf = open_zip(path)
    try:
        return Archive(path, zf, read_entries(path, zf, limits), b"", {}, None, ())
    except BaseException:
        zf.close()
        raise


def refuse_unreadable(path: str | os.PathLike) -> None:
    """Refuse, in one line, what is not a regular file one can read (a FIFO
    would block the reader), before anything opens it."""
    _read_head(Path(path))


def _read_head(path: Path) -> bytes:
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            raise ArchiveError(
                str(path),
                "is a TensorFlow SavedModel directory, not a .keras archive",
                "load it with keras.layers.TFSMLayer(path) or tf.saved_model.load",
            )
        if (path / CONFIG).exists():
            raise ArchiveError(
                str(path),
                "is an unpacked .keras folder, not an archive",
                f"zip its contents at the top level: cd {path} && zip -r -0 ../model.keras .",
            )
        raise ArchiveError(str(path), "is a directory", "give the path of a .keras file")
    try:
        mode = path.stat().st_mode  # a link to a file is that file
        if not stat.S_ISREG(mode):
            raise _not_a_file(path, mode)
        # a FIFO put in its place since would block an ordinary open()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ArchiveError(str(path), "no such file", "check the path") from None
    except OSError as e:
        raise ArchiveError(str(path), f"cannot be read ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_file(path, mode)
        return os.pread(fd, 512, 0)
    except OSError as e:
        raise ArchiveError(str(path), f"cannot be read ({e.strerror or e})") from None
    finally:
        os.close(fd)


def _not_a_file(path: Path, mode: int) -> ArchiveError:
    """Inputs that are not regular files are refused before they are opened:
    reading a FIFO blocks, a device never ends."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return ArchiveError(
        str(path),
        f"is {kind}, not a regular file (not read)",
        "give the path of a .keras or .h5 file; save a stream to a file first",
    )


def _zip_behind(path: Path) -> bool:
    """Whether zipfile finds a zip with entries at the end of a file that does
    not start with one (data prepended: it shifts every offset, and zipfile,
    like Keras, reads the zip after it)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.infolist())
    except Exception:  # no zip here, whatever the damage: _recognise_non_zip says what it is
        return False


def _recognise_non_zip(path: Path, head: bytes) -> None:
    """Name the usual things that sit behind a `.keras` name but are no zip."""
    size = path.stat().st_size
    if size == 0:
        raise ArchiveError(
            str(path),
            "is empty (0 bytes)",
            "the save or download was interrupted; save or download it again",
        )
    if head.startswith(_LFS_MAGIC):
        raise ArchiveError(
            str(path),
            f"is a Git LFS pointer ({size} bytes), not the model",
            "fetch the real file with `git lfs pull`",
        )
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise ArchiveError(
            str(path),
            "is an HTML page, not a model (a download that returned a web page)",
            "download the raw file itself (for a hub or GitHub, its raw/resolve URL)",
        )
    if not head.startswith(_LOCAL_MAGIC) and not head.startswith(b"PK\x05\x06"):
        raise ArchiveError(
            str(path),
            f"is not a zip archive (it starts with {head[:8]!r})",
            "a .keras file is the zip written by model.save('model.keras')",
        )


def _bad_zip(path: Path, reason: str) -> ArchiveError:
    if reason == "File is not a zip file":  # zipfile's words for "no end record"
        reason = "no end-of-central-directory record"
    return ArchiveError(
        str(path),
        f"is a truncated or damaged zip ({reason}; {path.stat().st_size:,} bytes)",
        "download or copy it again; `zip -FF` may recover what is left",
    )


def read_entries(path: Path, zf: zipfile.ZipFile, limits: Limits) -> list[Entry]:
    """Every entry, checked from the central directory and its local header
    before anything is decompressed: names, duplicates, links, encryption,
    declared sizes, compression ratios, offsets."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(
            str(path),
            f"has {len(infos)} entries, over the limit of {limits.max_entries}",
            "this is no Keras archive, or raise the limit if you trust it",
        )
    file_size = path.stat().st_size
    seen: set[str] = set()
    total = 0
    entries = []
    with open(path, "rb") as raw:
        for info in infos:
            where = f"{path}:{info.filename}"
            _check_name(where, info.orig_filename)
            if info.filename in seen:
                raise ArchiveError(
                    where,
                    "entry name appears more than once",
                    "rebuild the archive with one copy of each entry",
                )
            seen.add(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(
                    where,
                    "entry is a symbolic link",
                    "a Keras archive holds regular files only; rebuild it without links",
                )
            if info.flag_bits & (_ENCRYPTED | _STRONG_ENCRYPTION):
                raise ArchiveError(
                    where,
                    "entry is encrypted",
                    "Keras cannot read encrypted entries; re-zip without a password",
                )
            if info.flag_bits & _PATCHED:
                raise ArchiveError(
                    where,
                    "entry holds compressed patched data (flag bit 5), which zipfile, "
                    "and so Keras, cannot read",
                    "re-zip the model's files with a standard zip tool (zip -r -0 model.keras .)",
                )
            _check_size(where, info, limits)
            total += info.file_size
            if total > limits.max_total_size:
                raise ArchiveError(
                    str(path),
                    f"entries declare over {limits.max_total_size} bytes in all",
                    "this looks like a zip bomb; raise the limit if you trust it",
                )
            data_offset = _local_header(where, raw, info, file_size)
            data_end = data_offset + info.compress_size
            if data_end > file_size:
                raise ArchiveError(
                    where,
                    "entry runs past the end of the file",
                    "the archive is truncated; download or copy it again",
                )
            entries.append(
                Entry(
                    name=info.filename,
                    method=info.compress_type,
                    size=info.file_size,
                    compressed_size=info.compress_size,
                    crc32=info.CRC,
                    header_offset=info.header_offset,
                    data_offset=data_offset,
                    end_offset=data_end + _descriptor_size(where, raw, info, data_end),
                    info=info,
                )
            )
    _check_overlaps(path, entries, zf.start_dir)
    return entries


def _check_name(where: str, name: str) -> None:
    """`name` as the central directory holds it (zipfile cuts a name at a NUL)."""
    if "\x00" in name:
        raise ArchiveError(
            where,
            f"entry name {name!r} holds a NUL byte (readers cut the name there)",
            "never extract this archive; rebuild it with plain names",
        )
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(
            where,
            "entry name is an absolute path",
            "never extract this archive; rebuild it with relative names",
        )
    if ".." in parts:
        raise ArchiveError(
            where,
            "entry name climbs out of the archive with '..'",
            "never extract this archive; rebuild it without such names",
        )


def _check_size(where: str, info: zipfile.ZipInfo, limits: Limits) -> None:
    if info.file_size > limits.max_entry_size:
        raise ArchiveError(
            where,
            f"entry declares {info.file_size} bytes, over the limit of {limits.max_entry_size}",
            "this looks like a zip bomb; raise the limit if you trust the file",
        )
    if info.compress_type not in _METHODS:
        raise ArchiveError(
            where,
            f"entry uses zip compression method {info.compress_type}, which Keras cannot read",
            "re-zip the archive with no compression (zip -0)",
        )
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise ArchiveError(
            where,
            f"entry is stored uncompressed but declares {info.file_size:,} bytes for "
            f"{info.compress_size:,} stored bytes (a damaged archive or a zip bomb)",
            "re-save the model, or rebuild the archive from its original files",
        )
    if info.file_size > limits.ratio_floor and info.compress_type != zipfile.ZIP_STORED:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            raise ArchiveError(
                where,
                f"entry expands {ratio:.0f}x ({info.compress_size:,} to "
                f"{info.file_size:,} bytes), over the limit of {limits.max_ratio:.0f}x",
                "this looks like a zip bomb; raise the limit if you trust the file",
            )


def _local_header(where: str, raw: io.BufferedReader, info: zipfile.ZipInfo, file_size: int) -> int:
    """Where an entry's data starts, from its local header, which must say what
    the central directory says: the name, the method, the flags that change how
    the bytes are read, the CRC and the sizes (those of an entry written as a
    stream are checked in its data descriptor). zipfile reads the central
    directory, other readers the local headers: where they disagree, they read
    two different archives, and a raw copy of the entry is unreadable."""
    if not 0 <= info.header_offset <= file_size - _LOCAL_HEADER.size:
        raise ArchiveError(
            where,
            f"the central directory puts its local header at offset {info.header_offset:,}, "
            f"outside the file ({file_size:,} bytes)",
            "the archive is damaged; download or copy it again",
        )
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if header[:4] != _LOCAL_MAGIC:
        raise ArchiveError(
            where,
            f"no local header at offset {info.header_offset}",
            "the archive is damaged; download or copy it again",
        )
    _, _, flags, method, _, _, crc, compressed, size, name_length, extra_length = (
        _LOCAL_HEADER.unpack(header)
    )
    name, extra = raw.read(name_length), raw.read(extra_length)
    try:
        local_name = name.decode("utf-8" if flags & _UTF8 else "cp437")
    except UnicodeDecodeError:
        local_name = None
    differences = []
    if local_name != info.orig_filename:
        differences.append(f"name {_short_repr(name)}")
    if method != info.compress_type:
        differences.append(f"method {method}")
    if (flags ^ info.flag_bits) & _READING_FLAGS:
        differences.append(f"flags 0x{flags:04x} for 0x{info.flag_bits:04x}")
    if not flags & _DESCRIPTOR:
        if crc != info.CRC:
            differences.append(f"CRC {crc:08x} for {info.CRC:08x}")
        size, compressed = _local_sizes(size, compressed, extra)
        if (size, compressed) != (info.file_size, info.compress_size):
            differences.append(
                f"sizes {compressed}/{size} for {info.compress_size}/{info.file_size}"
            )
    if differences:
        raise ArchiveError(
            where,
            "the local header disagrees with the central directory "
            f"({'; '.join(differences)}): readers would see different archives",
            "the archive is damaged or crafted; re-save or re-download the model",
        )
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def _local_sizes(size: int, compressed: int, extra: bytes) -> tuple[int, int | None]:
    """A local header's (uncompressed, compressed) sizes; fields set to
    0xFFFFFFFF are in its zip64 extra field, which holds both (APPNOTE 4.5.3).
    None for a size the extra field does not hold."""
    if _ZIP64 not in (size, compressed):
        return size, compressed
    position = 0
    while position + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, position)
        if kind == 0x0001 and length >= 16:
            return struct.unpack_from("<QQ", extra, position + 4)
        position += 4 + length
    return (size if size != _ZIP64 else None), (compressed if compressed != _ZIP64 else None)


def _short_repr(name: bytes) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _descriptor_size(
    where: str, raw: io.BufferedReader, info: zipfile.ZipInfo, data_end: int
) -> int:
    """Size of the data descriptor that follows an entry written as a stream
    (flag bit 3), which must hold the central directory's CRC and sizes: with
    or without its signature, with 4- or 8-byte sizes (zip64)."""
    if not info.flag_bits & _DESCRIPTOR:
        return 0
    raw.seek(data_end)
    found = raw.read(4 + 4 + 16)
    expected = (info.CRC, info.compress_size, info.file_size)
    signature = 4 if found.startswith(b"PK\x07\x08") else 0
    for layout in (struct.Struct("<LLL"), struct.Struct("<LQQ")):
        body = found[signature : signature + layout.size]
        if len(body) == layout.size and layout.unpack(body) == expected:
            return signature + layout.size
    raise ArchiveError(
        where,
        "the data descriptor after the entry disagrees with the central directory "
        "(CRC or sizes): readers would see different archives",
        "the archive is damaged or crafted; re-save or re-download the model",
    )


def _check_overlaps(path: Path, entries: list[Entry], directory_start: int) -> None:
    """Entries follow one another, and the central directory follows them:
    entries that share bytes are a zip bomb's trick (or damage) that
    zipfile refuses only when an entry is read."""
    ordered = sorted(entries, key=lambda entry: entry.header_offset)
    for entry, following in zip(ordered, [*ordered[1:], None], strict=False):
        end = following.header_offset if following is not None else directory_start
        if entry.end_offset > end:
            other = (
                f"entry '{following.name}'" if following is not None else "the central directory"
            )
            raise ArchiveError(
                f"{path}:{entry.name}",
                f"entry overlaps {other} (it ends at offset {entry.end_offset:,}, "
                f"which starts at {end:,})",
                "a zip bomb or a damaged archive: never extract it; re-save or re-download "
                "the model",
            )


def _config_bytes(
    path: Path, zf: zipfile.ZipFile, by_name: dict[str, Entry], limits: Limits
) -> bytes:
    entry = by_name.get(CONFIG)
    if entry is None:
        prefixes = {name[: -len(CONFIG)] for name in by_name if name.endswith("/" + CONFIG)}
        if len(prefixes) == 1:
            prefix = prefixes.pop()
            raise ArchiveError(
                str(path),
                f"config.json sits under the folder '{prefix}' instead of at the top level",
                f"re-zip from inside that folder: cd {prefix.rstrip('/')} && "
                "zip -r -0 ../model.keras .",
            )
        names = ", ".join(list(by_name)[:5]) or "none"
        raise ArchiveError(
            str(path),
            f"has no config.json (entries: {names})",
            "this is not a Keras v3 archive; weights-only files are named .weights.h5",
        )
    return read_entry(path, zf, entry, limits.max_json_size)


def parse_config(path: Path, data: bytes, limits: Limits) -> dict[str, Any]:
    """config.json's bytes as a JSON object, within the limits; else ArchiveError."""
    config = _parse_json(f"{path}:{CONFIG}", data, limits)
    if not isinstance(config, dict):
        raise ArchiveError(
            f"{path}:{CONFIG}",
            f"holds a JSON {type(config).__name__}, not an object",
            "config.json must be a serialized Keras model ({'class_name': ..., 'config': ...})",
        )
    return config


def _metadata(
    path: Path, zf: zipfile.ZipFile, entry: Entry | None, limits: Limits
) -> tuple[dict[str, Any] | None, tuple[ArchiveProblem, ...]]:
    """metadata.json is informative only: Keras loads without it, so do we."""
    if entry is None:
        return None, (ArchiveProblem(METADATA, "is missing (the Keras version is unknown)"),)
    try:
        data = read_entry(path, zf, entry, limits.max_json_size)
        metadata = _parse_json(f"{path}:{METADATA}", data, limits)
    except ArchiveError as e:
        return None, (ArchiveProblem(METADATA, e.what),)
    if isinstance(metadata, dict):
        return metadata, ()
    return None, (ArchiveProblem(METADATA, "does not hold a JSON object"),)


def _parse_json(where: str, data: bytes, limits: Limits) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = _line_column(data, e.start)
        raise ArchiveError(
            f"{where}:{line}:{column}",
            f"is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})",
            "re-save the model, or re-encode the file as UTF-8",
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArchiveError(
            f"{where}:{e.lineno}:{e.colno}",
            f"is not valid JSON ({e.msg})",
            "correct the JSON at that place or re-save the model",
        ) from None
    except RecursionError:
        raise ArchiveError(
            where,
            f"nests deeper than {limits.max_json_depth} levels",
            "this is no Keras config; re-save the model",
        ) from None
    except ValueError as e:  # an integer beyond Python's int_max_str_digits (4,300)
        limit = sys.get_int_max_str_digits()
        digits = re.search(rb"\d{%d,}" % (limit + 1), data) if limit else None
        line, column = _line_column(data, digits.start()) if digits else (1, 1)
        what = f"an integer of more than {limit:,} digits" if digits else f"a value ({_reason(e)})"
        raise ArchiveError(
            f"{where}:{line}:{column}",
            f"holds {what}, which Python's json, and so Keras, cannot read",
            "no Keras model holds such a number; re-save the model",
        ) from None
    depth = _json_depth(value)
    if depth > limits.max_json_depth:
        raise ArchiveError(
            where,
            f"nests {depth} levels deep, over the limit of {limits.max_json_depth}",
            "this is no Keras config; re-save the model, or raise the limit",
        )
    return value


def _line_column(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, column


def _json_depth(value: Any) -> int:
    """How deep lists and dicts nest in `value` (a scalar: 0), walked with one
    iterator per level: memory grows with the depth, not the size."""
    deepest = 0
    stack = [iter((value,))]
    while stack:
        for node in stack[-1]:
            if isinstance(node, (dict, list)):
                stack.append(iter(node.values() if isinstance(node, dict) else node))
                deepest = max(deepest, len(stack) - 1)
                break
        else:
            stack.pop()
    return deepest
