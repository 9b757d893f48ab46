"""Writing: from an `Edit` (or replaced entries) to a verified archive on disk.

`write_edit` owns the output of `fix`: config.json serialised as Keras writes
it, the weights scratch file for group operations, the `--in-place` backup.
`write_archive` builds the new zip: entries that are not replaced are copied
as raw bytes (local header and compressed data, never decompressed), in the
kernel where it can. The output goes to a temporary file in the target's
directory, is re-opened and checked (every entry's place and size, config.json,
every CRC, read in bounded chunks, on two threads where nothing else runs),
and only then renamed over the target: a failure leaves nothing at the target
path. When the rename
replaces a file, the data is forced to disk (fsync) first. The same input and
replacements always give the same bytes. When config.json or metadata.json
(`LAST`) is replaced, they are written after the other entries, and listed
where the input lists them: the CLI's `fix` has a forked child copy the
others from the start (`written_ahead`), and write the rest and check the
new archive while it checks its result (`staged_edit`); it is renamed only
if the result is to be written (`commit()`).

Nothing is lost: an output path that is the input itself (by inode), a
symbolic link or not a regular file is refused before anything is written
(`check_output`). Every temporary file (`.NAME.TOKEN.partial`), `--in-place`
backup and weights scratch directory is held under an exclusive `flock` while
its run lives: one that nobody holds is a killed run's, and the next write
beside it removes it (`remove_leftovers`). Temporary names stay within the
file system's name limit (a long target name is shortened, with a digest).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import os
import re
import shutil
import stat
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path

from . import forked
from .archive import (
    CONFIG,
    METADATA,
    WEIGHTS_H5,
    Archive,
    Entry,
    Limits,
    open_zip,
    parse_config,
    read_chunks,
    read_entries,
    read_entry,
)
from .edit import Edit
from .errors import ArchiveError, RepairError, WriteError

try:
    import fcntl
except ImportError:  # not POSIX: no locks, a leftover is a killed run's after STALE_AFTER
    fcntl = None

# Entries the writer adds (not replacing one) get this fixed date, for
# byte-identical output.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP64_EXTRA = 0x0001


_CHUNK = 4 << 20  # bytes read at a time when checking CRCs: memory stays bounded
_SPLIT = 16 << 20  # a stored entry this big is checked by two threads
STALE_AFTER = 600  # without file locks: seconds after which a leftover is a killed run's
BACKUP_SUFFIX = ".kerasrepair-backup"
PARTIAL_SUFFIX = ".partial"
WEIGHTS_SCRATCH_PREFIX = ".kerasrepair-weights-"
_PARTIAL = re.compile(r"\.(.*)\.[0-9a-f]{8}\.partial", re.DOTALL)  # .NAME.TOKEN.partial


def write_edit(archive: Archive, edit: Edit, target: str | os.PathLike) -> Path:
    """Write `archive` with `edit` applied to `target` (which may be the
    archive's own path: `--in-place`).

    config.json is replaced when the edit changed anything; model.weights.h5
    when it holds group operations, applied to a scratch copy beside the target
    and checked against the weights tree `fix` predicted. For `--in-place`, a
    hard-linked backup `PATH.kerasrepair-backup` stays until the new archive
    is written, checked and renamed into place; a symbolic link `target` is
    kept and the file it names repaired.
    """
    target = Path(target)
    in_place = _same_file(target, archive.path)
    if in_place:  # through a symbolic link: the file it names, beside which the backup goes
        target = Path(os.path.realpath(target))
    check_output(target)
    if archive.format == "h5" and written_as_h5(target):
        return _write_h5_model(archive, edit, target)
    replacements: dict[str, bytes | os.PathLike] = _config_replacements(archive, edit)
    with contextlib.ExitStack() as scratch:
        if archive.format == "h5" and edit.weights_plan is None:
            raise RepairError(
                str(archive.path),
                "the HDF5 model's weights cannot be re-laid for Keras 3 (see KR708); "
                "nothing was written",
            )
        if edit.weights_plan is not None or edit.weight_ops:
            directory = scratch.enter_context(_weights_scratch(target.parent))
        if edit.weights_plan is not None:
            replacements[WEIGHTS_H5] = _relaid_weights(archive, edit, directory)
        elif edit.weight_ops:
            from .weights import read_h5_file
            from .weights_edit import edited_weights

            weights = scratch.enter_context(edited_weights(archive, edit.weight_ops, directory))
            expected = archive.weights().edited(edit.weight_ops).listing()
            if read_h5_file(weights, WEIGHTS_H5).listing() != expected:
                raise WriteError("the edited weights are not the tree the fix predicted")
            replacements[WEIGHTS_H5] = weights
        if in_place and replacements:  # written and checked, or not at all: then it goes
            scratch.enter_context(_backup(target))
        write_archive(archive, target, replacements)
    return target


H5_SUFFIXES = (".h5", ".hdf5", ".keras2")


def written_as_h5(target: str | os.PathLike) -> bool:
    """Whether an HDF5 model written to `target` stays one (`fix old.h5 -o
    new.h5`); else it is converted to a .keras archive."""
    return Path(target).suffix.lower() in H5_SUFFIXES


@contextlib.contextmanager
def staged_edit(
    archive: Archive, edit: Edit, target: str | os.PathLike, early: Early | None = None
) -> Iterator[Staged]:
    """`write_edit` in two steps: `Staged.commit()` in the block writes (when
    it has not yet) and puts the output in place; a block left without it
    writes nothing. With `early` (`written_ahead`'s, begun before the edit
    was known), an archive whose config.json or metadata.json alone change is
    finished by the child that began it, from the start of the block (`fix`
    checks its result meanwhile); anything else is written by `commit()`."""
    target = Path(target)
    config_only = edit.weights_plan is None and not edit.weight_ops
    if early is None or not config_only or archive.format != "keras":
        if early is not None:
            early.cancel()
        yield Staged(lambda: write_edit(archive, edit, target))
        return
    yield early.finish(_config_replacements(archive, edit))


def _config_replacements(archive: Archive, edit: Edit) -> dict[str, bytes | os.PathLike]:
    """The entries of `edit` that are JSON: config.json (when a fix changed it,
    or the archive is an HDF5 model made one) and metadata.json."""
    replacements: dict[str, bytes | os.PathLike] = {}
    if archive.format == "h5":  # a model made an archive: its config.json is new
        replacements[CONFIG] = edit.config_json().encode()
    elif edit.changes and (config := edit.config_json().encode()) != archive.config_bytes:
        replacements[CONFIG] = config  # (a change may be of another entry: KR911's)
    if edit.metadata is not None:
        replacements[METADATA] = json.dumps(edit.metadata).encode()
    return replacements


def _relaid_weights(archive: Archive, edit: Edit, directory: Path) -> Path:
    """model.weights.h5 in Keras 3's layout (`edit.weights_plan`), then the
    group operations: a file in the scratch `directory`."""
    from . import keras3_weights
    from .runner import weights_after
    from .weights import read_h5_file
    from .weights_edit import apply_ops

    scratch = directory / WEIGHTS_H5
    if archive.format == "h5":
        source = open(archive.path, "rb")  # noqa: SIM115 (closed below)
    else:
        source = archive.open_seekable(archive.weights_entry)
    with source:
        keras3_weights.write(source, edit.weights_plan, str(scratch))
    if edit.weight_ops:
        apply_ops(scratch, edit.weight_ops)
    expected = weights_after(archive, edit).listing()
    if read_h5_file(scratch, WEIGHTS_H5).listing() != expected:
        raise WriteError("the re-laid weights are not the tree the fix predicted")
    return scratch


def _write_h5_model(archive: Archive, edit: Edit, target: Path) -> Path:
    """An HDF5 model repaired as HDF5 (`fix old.h5 -o new.h5`): a copy with its
    `model_config` (and `training_config`) attributes rewritten; the weights
    are untouched. Written beside the target and renamed, as an archive is."""
    import h5py

    config = dict(edit.config)
    compile_config = config.pop("compile_config", None)
    durable = target.exists()
    # HDF5's own file lock would fail on the temporary this run holds locked
    with _temporary(target) as temporary:
        shutil.copyfile(archive.path, temporary)
        with h5py.File(temporary, "r+", locking=False) as h5:
            h5.attrs["model_config"] = json.dumps(config)
            if compile_config is not None:
                h5.attrs["training_config"] = json.dumps(_training_config(compile_config))
        if durable:
            with open(temporary, "rb") as f:
                os.fsync(f.fileno())
        with h5py.File(temporary, "r", locking=False) as h5:  # re-read as any input
            if json.loads(h5.attrs["model_config"]) != config:
                raise WriteError("the written model_config is not the repaired one")
        os.replace(temporary, target)
    if durable:
        _fsync_directory(target.parent)
    return target


HDF5_METRIC_NAMES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
}


def _training_config(compile_config: dict) -> dict:
    """A Keras 3 compile configuration in the HDF5 `training_config` form."""
    if "optimizer_config" in compile_config:
        return compile_config  # never converted
    optimizer = compile_config.get("optimizer")
    training = {k: v for k, v in compile_config.items() if k != "optimizer"}
    for key in ("metrics", "weighted_metrics"):  # the HDF5 loader knows full names only
        if isinstance(training.get(key), list):
            training[key] = [
                HDF5_METRIC_NAMES.get(m, m) if isinstance(m, str) else m for m in training[key]
            ]
    if isinstance(optimizer, dict):
        training["optimizer_config"] = {
            "class_name": optimizer.get("class_name"),
            "config": optimizer.get("config", {}),
        }
    elif isinstance(optimizer, str):
        training["optimizer_config"] = {"class_name": optimizer, "config": {}}
    return training


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
    with staged_archive(source, target, replacements, remove, limits) as staged:
        return staged.commit()


class Staged:
    """An output on its way: `commit()` finishes it and puts it in place."""

    def __init__(self, commit: Callable[[], Path]):
        self.commit = commit


@contextlib.contextmanager
def staged_archive(
    source: Archive,
    target: str | os.PathLike,
    replacements: Mapping[str, bytes | os.PathLike] | None = None,
    remove: Collection[str] = (),
    limits: Limits | None = None,
    ahead: bool = False,
) -> Iterator[Staged]:
    """`write_archive` in two steps: the new archive is written to a temporary
    beside `target` and checked, then `Staged.commit()` renames it into place;
    a block left without `commit()` leaves the target as it was. With `ahead`
    and only `LAST` replaced, a forked child writes and checks it from the
    start of the block (`written_ahead`); should it fail or die, `commit()`
    writes it again here, and says why."""
    replacements = dict(replacements or {})
    target = Path(target)
    # Data is forced to disk before the rename only when the rename replaces a
    # file: then a crash must find the old file or the whole new one. A new
    # path can only lose the new file, and the input is never at risk.
    durable = target.exists()
    if target.resolve() == source.path.resolve() and not replacements and not remove:
        remove_leftovers(target.resolve())
        yield Staged(lambda: target)  # nothing to do, and never truncate the source
        return
    if ahead and not remove and _written_last(source, replacements):
        with written_ahead(source, target, limits) as early:
            if early is not None:
                yield early.finish(replacements)
                return
    check_output(target)
    with _temporary(target) as temporary:

        def commit() -> Path:
            _write_checked(source, temporary, replacements, set(remove), durable, limits)
            os.replace(temporary, target)
            if durable:
                _fsync_directory(target.parent)
            return target

        try:
            yield Staged(commit)
        finally:
            temporary.unlink(missing_ok=True)  # renamed already, or not wanted


@contextlib.contextmanager
def written_ahead(
    source: Archive, target: str | os.PathLike | None, limits: Limits | None = None
) -> Iterator[Early | None]:
    """`fix`'s output begun before `fix` knows what it writes: a forked child
    copies the entries written before `LAST` into a temporary beside `target`
    at once, and checks their CRCs, while `fix` repairs; `Early.finish`
    hands it the rest. None where that cannot be: no target (a dry run), no
    fork, an HDF5 model, the input itself (`--in-place`), or a target that
    cannot be written (said by the write, if it comes to that)."""
    if target is None or source.format != "keras" or not forked.possible():
        yield None
        return
    target = Path(target)
    if _same_file(target, source.path):
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            check_output(target)
            durable = target.exists()
            temporary = stack.enter_context(_temporary(target))
        except (OSError, ArchiveError, WriteError):
            temporary = None
        if temporary is None:
            yield None
            return
        stack.callback(temporary.unlink, missing_ok=True)  # renamed already, or not wanted
        early = Early(source, target, temporary, durable, limits)
        stack.callback(early.cancel)
        yield early


class Early:
    """An archive begun by a forked child before its last entries are known
    (`written_ahead`)."""

    def __init__(
        self, source: Archive, target: Path, temporary: Path, durable: bool, limits: Limits | None
    ):
        self._source, self._target, self._temporary = source, target, temporary
        self._durable, self._limits = durable, limits
        read, self._send = os.pipe()
        self._child = forked.run(
            lambda: _write_ahead(source, temporary, read, durable, limits), close=(self._send,)
        )
        os.close(read)

    def finish(self, replacements: Mapping[str, bytes]) -> Staged:
        """Hand the child the entries of `LAST` (and new ones) to write; then
        `commit()` renames its archive, once it is checked, or writes the
        archive here if the child could not (and says why, if it cannot)."""
        replacements = dict(replacements)
        if not _written_last(self._source, replacements):
            self.cancel()  # the input's own order (see `LAST`), or another entry: written here
        else:
            said = {name: content.decode("latin-1") for name, content in replacements.items()}
            with contextlib.suppress(OSError), os.fdopen(self._send, "wb") as pipe:
                self._send = -1
                pipe.write(json.dumps(said).encode())  # a child that died: written here

        def commit() -> Path:
            source, temporary, durable = self._source, self._temporary, self._durable
            if self._child.answer() is not True:
                os.truncate(temporary, 0)  # what the child left: written again
                _write_checked(source, temporary, replacements, set(), durable, self._limits)
            os.replace(temporary, self._target)
            if durable:
                _fsync_directory(self._target.parent)
            return self._target

        return Staged(commit)

    def cancel(self) -> None:
        """Stop the child (answered already, or its work is not wanted)."""
        if self._send >= 0:
            os.close(self._send)
            self._send = -1
        self._child.cancel()


def _written_last(source: Archive, replacements: Mapping[str, bytes | os.PathLike]) -> bool:
    """Whether `replacements` replace an entry of `LAST`, and no other (those
    written before it are then copied as they are)."""
    first = {entry.name for entry in source.entries if entry.name not in LAST}
    return (
        bool(_last(replacements))
        and not first & set(replacements)
        and all(isinstance(content, bytes) for content in replacements.values())
    )


def _write_ahead(
    source: Archive, temporary: Path, fd: int, durable: bool, limits: Limits | None
) -> bool | None:
    """In the child `Early` forked: the entries before `LAST`, their CRCs
    checked; then, once the parent sends them (read meanwhile: it never
    waits to send, and a new config.json is parsed as `_verify` parses it
    while the CRCs are checked), `LAST`'s entries, the central directory,
    and the whole checked as `write_archive` checks it. None: not wanted
    after all, or a config.json that does not parse (the parent writes the
    archive then, and says why)."""
    sent: list[dict[str, bytes]] = []

    def receive() -> None:
        with os.fdopen(fd, "rb") as said:
            text = said.read()
        if text:
            replacements = {name: t.encode("latin-1") for name, t in json.loads(text).items()}
            if CONFIG in replacements:
                parse_config(temporary, replacements[CONFIG], limits or Limits())
            sent.append(replacements)  # not if it raised

    reader = threading.Thread(target=receive)
    reader.start()
    with (
        open(temporary, "r+b", buffering=0) as out,
        open(source.path, "rb") as src,
        RawZipWriter(out, "w") as zout,
    ):
        copied = _write_first(source, src, out, zout, {}, set(), LAST)
        stored = [entry for entry in copied if entry.method == zipfile.ZIP_STORED]
        # on one thread: the parent works on the other core meanwhile
        _verify_crcs(temporary, None, stored, split=False)
        reader.join()
        if not sent:
            return None
        replacements = sent[0]
        expected = _write_last(source, src, out, zout, dict(replacements), set(), durable, LAST)
    config = replacements.get(CONFIG, source.config_bytes)
    checked = {entry.name: entry.data_offset for entry in stored}
    _verify(temporary, expected, config, False, limits, checked)  # parsed by `receive`
    return True


def _write_checked(
    source: Archive,
    temporary: Path,
    replacements: Mapping[str, bytes | os.PathLike],
    remove: set[str],
    durable: bool,
    limits: Limits | None,
) -> None:
    """The new archive written to `temporary` and checked (`_verify`); a
    failing check says whether the input's own entries fail theirs."""
    config = replacements.get(CONFIG, source.config_bytes)
    if not isinstance(config, bytes):
        config = Path(config).read_bytes()
    expected = _write(source, temporary, dict(replacements), remove, durable)
    try:
        _verify(temporary, expected, config, config is not source.config_bytes, limits)
    except WriteError:
        _check_copied(source, set(expected) - set(replacements))  # the input's fault?
        raise


# The entries `fix` rewrites: when one is replaced, they are written after all
# the others, so that those can be copied before `fix` knows what it writes
# (`written_ahead`); the central directory still lists every entry where the
# input lists it. An archive whose config.json and metadata.json are kept is
# written in the order its entries lie in (a copy is the same bytes).
LAST = (METADATA, CONFIG)


def _write(
    source: Archive,
    temporary: Path,
    replacements: dict[str, bytes | os.PathLike],
    remove: set[str],
    durable: bool,
) -> list[str]:
    """Write the new zip; return the names it lists, in order."""
    with (
        # "r+b", not "wb": the temporary is new and empty, and ext4 flushes a
        # file truncated on open when it is closed (auto_da_alloc), 0.1 s a 270 MB archive
        open(temporary, "r+b", buffering=0) as out,
        open(source.path, "rb") as src,
        RawZipWriter(out, "w") as zout,
    ):
        last = _last(replacements)
        _write_first(source, src, out, zout, replacements, remove, last)
        return _write_last(source, src, out, zout, replacements, remove, durable, last)


def _in_place_order(source: Archive) -> list[Entry]:
    """The entries in the order they lie in the file: Keras's own, or this
    writer's with `LAST` last (then a copy of the archive is the same bytes)."""
    return sorted(source.entries, key=lambda entry: entry.header_offset)


def _last(replacements: Mapping[str, bytes | os.PathLike]) -> tuple[str, ...]:
    """The entries written after the others: `LAST` if one of them is replaced."""
    return LAST if set(LAST) & set(replacements) else ()


def _write_first(source, src, out, zout, replacements, remove, last) -> list[Entry]:
    """The entries not in `last`, in the order they lie in the input, replaced
    (taken out of `replacements`) or copied as they are; the copies, where
    they now lie."""
    copied = []
    for entry in _in_place_order(source):
        if entry.name in remove or entry.name in last:
            continue
        if entry.name in replacements:
            _write_entry(zout, _fresh_info(entry.info), replacements.pop(entry.name))
        else:
            copied.append(_copy_raw(src, out, entry, zout))
    return copied


def _write_last(source, src, out, zout, replacements, remove, durable, last) -> list[str]:
    """The entries of `last`, replaced or copied; the new ones (what is left
    of `replacements`, in name order, stored); the central directory, in the
    input's order. The names it lists."""
    for entry in _in_place_order(source):
        if entry.name in last and entry.name not in remove:
            if entry.name in replacements:
                _write_entry(zout, _fresh_info(entry.info), replacements.pop(entry.name))
            else:
                _copy_raw(src, out, entry, zout)
    listed = [entry.name for entry in source.entries if entry.name not in remove]
    for name in sorted(replacements):
        info = zipfile.ZipInfo(name, FIXED_DATE_TIME)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        _write_entry(zout, info, replacements[name])
        listed.append(name)
    zout.list_in(listed)
    zout.comment = source.comment
    zout.close()  # writes the central directory
    if durable:
        os.fsync(out.fileno())
    return listed


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


class RawZipWriter(zipfile.ZipFile):
    """A `zipfile.ZipFile` for writing that also lists entries whose bytes were
    copied into the file as they are. The only place that touches zipfile's
    private state (its file list, where the central directory starts)."""

    def add_raw(self, info: zipfile.ZipInfo) -> None:
        """List `info`, whose local header and data were written at
        `info.header_offset`, ending where the file now ends."""
        self.filelist.append(info)
        self.NameToInfo[info.filename] = info
        self.start_dir = self.fp.tell()  # the central directory is written here on close
        self._didModify = True

    def list_in(self, names: list[str]) -> None:
        """List the entries in the central directory in the order of `names`
        (where they lie in the file may differ: see `LAST`)."""
        place = {name: n for n, name in enumerate(names)}
        self.filelist.sort(key=lambda info: place[info.filename])


def _copy_raw(src, out, entry: Entry, zout: RawZipWriter) -> Entry:
    """Copy an entry's local header and bytes unchanged; list it in `zout`.
    The entry where it now lies."""
    info = copy.copy(entry.info)
    info.header_offset = start = out.tell()
    info.extra = _strip_zip64(info.extra)  # zipfile re-adds one where needed
    _copy_range(
        src.fileno(), out.fileno(), entry.header_offset, entry.end_offset - entry.header_offset
    )
    zout.add_raw(info)
    moved = start - entry.header_offset
    return dataclasses.replace(
        entry,
        header_offset=start,
        data_offset=entry.data_offset + moved,
        end_offset=entry.end_offset + moved,
        info=info,
    )


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
    path: Path,
    expected: list[str],
    config: bytes,
    new_config: bool,
    limits: Limits | None,
    checked: Mapping[str, int] | None = None,
) -> None:
    """Re-read the written archive: its entries (names, order, local headers,
    sizes, checked as any input is), config.json holding `config` (parsed when
    it is new: one copied from the source was parsed when the source was
    opened), and every entry's CRC but those `checked` already (name: where
    its data starts) in this file, by the child that wrote them."""
    limits = limits or Limits()
    try:
        with open_zip(path) as zf:
            entries = read_entries(path, zf, limits)
            names = [e.name for e in entries]
            if names != expected:
                raise WriteError(f"the new archive holds {names}, expected {expected}")
            by_name = {e.name: e for e in entries}
            if CONFIG in by_name:
                if read_entry(path, zf, by_name[CONFIG], limits.max_json_size) != config:
                    raise WriteError("the new archive does not hold the config.json written")
                if new_config:
                    parse_config(path, config, limits)
            checked = checked or {}
            _verify_crcs(path, zf, [e for e in entries if checked.get(e.name) != e.data_offset])
    except ArchiveError as e:
        raise WriteError(f"the new archive does not read back: {e.what}") from None


def _verify_crcs(
    path: Path, zf: zipfile.ZipFile | None, entries: list[Entry], split: bool = True
) -> None:
    """Every entry's CRC-32: stored ones from their bytes in place, in chunks
    (a big one split between two threads, as zlib and pread release the GIL,
    and the halves combined, unless not to `split`); compressed ones through
    zipfile (`zf`), which checks as it decompresses."""
    # imported when used: by the child writing ahead, not at the CLI's start
    from concurrent.futures import ThreadPoolExecutor

    with open(path, "rb") as raw, ThreadPoolExecutor(2) as pool:
        for entry in entries:
            if entry.method != zipfile.ZIP_STORED:
                for _ in read_chunks(path, zf, entry, _CHUNK):
                    pass  # damage and a CRC mismatch are an ArchiveError naming the entry
                continue
            if entry.size < _SPLIT or not split:
                crc = _crc_range(raw.fileno(), entry.data_offset, entry.size)
            else:
                half = entry.size // 2
                first = pool.submit(_crc_range, raw.fileno(), entry.data_offset, half)
                second = pool.submit(
                    _crc_range, raw.fileno(), entry.data_offset + half, entry.size - half
                )
                crc = crc32_combine(first.result(), second.result(), entry.size - half)
            if crc != entry.crc32:
                raise WriteError(f"entry {entry.name} fails its CRC check in the new archive")


def _check_copied(source: Archive, names: set[str]) -> None:
    """After the new archive failed its check: the CRC-32 of the entries it
    copied, in the input. One that fails there is the input's damage, and
    said so (its copy is as damaged), not the writing's."""
    copied = [entry for entry in source.entries if entry.name in names]
    for entry in copied:
        try:
            with open_zip(source.path) as zf:
                _verify_crcs(source.path, zf, [entry])
        except (WriteError, ArchiveError) as e:
            said = (
                f"{e.where}: {e.what}"
                if isinstance(e, ArchiveError)
                else f"{source.path}:{entry.name}: fails its CRC check (its bytes are not "
                "those it was zipped with)"
            )
            raise WriteError(
                f"{said}: the input is damaged, and a copy would be too; re-download or "
                "re-save the model"
            ) from None


def _crc_range(fd: int, offset: int, count: int) -> int:
    crc32 = _crc32()
    crc = 0
    while count > 0:
        chunk = os.pread(fd, min(count, _CHUNK), offset)
        if not chunk:
            raise WriteError("the new archive ended early")
        crc = crc32(chunk, crc)
        offset += len(chunk)
        count -= len(chunk)
    return crc


@functools.cache  # found once: where zlib-ng is missing, each import would search the path again
def _crc32() -> Callable[..., int]:
    """zlib-ng's CRC-32 where it is installed: it folds with the CPU's
    carry-less multiplications (PCLMULQDQ, VPCLMULQDQ), ~15 GB/s where zlib's
    does ~2.5 GB/s (EfficientNetB7's 269 MB, read from the page cache and
    checked: 0.055 s, not 0.12 s); else zlib's. The same function of the
    bytes either way."""
    try:
        from zlib_ng.zlib_ng import crc32
    except ImportError:
        return zlib.crc32
    return crc32


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A + B from those of A and B and B's length: zlib's
    `crc32_combine` (which Python's zlib does not expose), by GF(2) matrices."""
    if length2 <= 0:
        return crc1

    def times(matrix: list[int], vector: int) -> int:
        total, row = 0, 0
        while vector:
            if vector & 1:
                total ^= matrix[row]
            vector >>= 1
            row += 1
        return total

    def square(matrix: list[int]) -> list[int]:
        return [times(matrix, matrix[n]) for n in range(32)]

    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = square(odd)  # two zero bits
    odd = square(even)  # four zero bits
    while True:  # apply len(B) zero bytes to crc1
        even = square(odd)
        if length2 & 1:
            crc1 = times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = square(even)
        if length2 & 1:
            crc1 = times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


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


# ------------------------------------------------------------------ output paths


def check_output(target: str | os.PathLike, source: str | os.PathLike | None = None) -> None:
    """Refuse, before anything is written, an output path where writing would
    lose something: `source` itself (by inode: another spelling, a hard link,
    a symbolic link to it), a symbolic link (the rename would replace the
    link, not the file it names), or anything but a regular file (a directory,
    a FIFO, a device). A path that does not exist yet is fine."""
    target = Path(target)
    try:
        mode = os.lstat(target).st_mode
    except OSError:
        return  # a new path (or one the write itself will say it cannot make)
    if source is not None and _same_file(target, source):
        raise ArchiveError(
            str(target),
            "is the input itself",
            "write the repair to another path, or use --in-place to replace the input",
        )
    if stat.S_ISLNK(mode):
        raise ArchiveError(
            str(target),
            "is a symbolic link: writing there would replace the link, not the file it names",
            "give the path of a regular file or of a new one",
        )
    if not stat.S_ISREG(mode):
        raise ArchiveError(
            str(target),
            f"is {_kind(mode)}, not a regular file",
            "give the path of a regular file or of a new one",
        )


def open_report(report: str | os.PathLike):
    """`batch --report`: the file opened to append JSON lines to. Refused, before
    the run, when appending would change something that is no report: a file
    whose first line is no JSON object (an archive, one of the run's inputs),
    or anything but a regular file (a directory; a FIFO, where opening it would
    wait for a reader). A last line a killed run cut short is ended first."""
    try:
        mode = os.stat(report).st_mode
    except FileNotFoundError:
        mode = None  # a new report (or one in a directory open() says is missing)
    if mode is not None and not stat.S_ISREG(mode):
        raise ArchiveError(
            str(report),
            f"is {_kind(mode)}, not a regular file",
            "give the path of a report (JSON Lines) or of a new file",
        )
    ends_a_line = True
    if mode is not None:
        is_report, ends_a_line = _read_report(report)
        if not is_report:
            raise ArchiveError(
                str(report),
                "is not a report of `kerasrepair batch` (JSON Lines): appending to it would "
                "change it",
                "give the path of a report or of a new file",
            )
    sink = open(report, "a", encoding="utf-8")  # noqa: SIM115 (the caller closes it)
    if not ends_a_line:
        sink.write("\n")  # a line a killed run cut short stays apart from the next
    return sink


def _read_report(path: str | os.PathLike) -> tuple[bool, bool]:
    """Whether the file is empty or starts as `batch` writes its lines, a JSON
    object (a first line cut short by a killed run, too); and whether it ends
    a line (or is empty)."""
    with open(path, "rb") as report:
        first = report.readline(1 << 20)
        size = report.seek(0, os.SEEK_END)
        report.seek(max(size - 1, 0))
        ends_a_line = size == 0 or report.read(1) == b"\n"
    if not first.strip():
        return True, ends_a_line
    if not first.startswith(b'{"'):
        return False, ends_a_line
    if not first.endswith(b"\n"):
        return True, ends_a_line  # the run that began the report was killed while writing it
    try:
        return isinstance(json.loads(first), dict), ends_a_line
    except ValueError:
        return False, ends_a_line


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "a directory",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFSOCK: "a socket",
    }
    return kinds.get(stat.S_IFMT(mode), "a special file")


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ------------------------------------------------------------------ temporaries and leftovers

_PARTIAL_EXTRA = len(".." + "0" * 8 + PARTIAL_SUFFIX)  # what `.NAME.TOKEN.partial` adds to NAME


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[Path]:
    """An empty file beside `target`, locked by this run until the block ends
    (by then renamed over the target, or removed if the block raises), made
    with mode 0o666 less the umask (the kernel applies it), or with an existing
    target's own permissions. Killed runs' leftovers beside the target go first."""
    remove_leftovers(target)
    name = _fitted(target.name, _PARTIAL_EXTRA, _name_max(target.parent))

    def create() -> tuple[Path, int]:
        path = target.with_name(f".{name}.{os.urandom(4).hex()}{PARTIAL_SUFFIX}")
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)

    temporary, fd = _locked(create)
    try:
        if target.exists():
            os.fchmod(fd, target.stat().st_mode & 0o7777)
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # the lock goes with it, once the temporary is renamed or removed


@contextlib.contextmanager
def _backup(target: Path) -> Iterator[Path]:
    """`--in-place`: a hard link to `target` (its old contents) beside it while
    the block runs. Its lock is the target's own (the same inode), taken
    before the link exists; a target another run holds is refused."""
    backup = target.with_name(_backup_name(target.name, _name_max(target.parent)))
    _remove_if_dead(backup)
    fd = os.open(target, os.O_RDONLY)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WriteError(
                    f"{target} is held by another run (another --in-place repair of it?); "
                    "try again when it ends"
                ) from None
        try:
            os.link(target, backup)
        except FileExistsError:
            raise WriteError(
                f"{backup} is another run's backup of {target}; try again when that run ends"
            ) from None
        try:
            if not _is_at(backup, fd):
                raise WriteError(f"{target} was replaced while it was being repaired")
            yield backup
        finally:
            backup.unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _weights_scratch(directory: Path) -> Iterator[Path]:
    """A scratch directory for the weights (`.kerasrepair-weights-XXXXXXXX`, a
    short name), locked while the block runs, removed after."""

    def create() -> tuple[Path, int]:
        import tempfile  # here, not at every start

        path = Path(tempfile.mkdtemp(prefix=WEIGHTS_SCRATCH_PREFIX, dir=directory))
        return path, os.open(path, os.O_RDONLY)

    path, fd = _locked(create)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _locked(create) -> tuple[Path, int]:
    """A new file or directory from `create()` (its path and a descriptor),
    locked. A run removing killed runs' leftovers may take it between its
    creation and the lock: then it is made again."""
    while True:
        try:
            path, fd = create()
        except FileExistsError:
            continue
        if fcntl is None:
            return path, fd
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for such a run, a moment at most
        if _is_at(path, fd):
            return path, fd
        os.close(fd)


def _is_at(path: Path, fd: int) -> bool:
    """Whether the file open as `fd` is still the one at `path`."""
    try:
        here = os.lstat(path)
    except OSError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def remove_leftovers(*targets: str | os.PathLike) -> None:
    """Remove what killed runs writing `targets` left beside them: temporary
    files (`.NAME.TOKEN.partial`), `--in-place` backups, and the weights
    scratch directories of the same directories. What a live run holds locked
    stays: a killed run's locks went with it. One listing per directory."""
    wanted: dict[Path, tuple[set[str], set[str]]] = {}
    for target in map(Path, targets):
        limit = _name_max(target.parent)
        partials, backups = wanted.setdefault(target.parent, (set(), set()))
        partials.add(_fitted(target.name, _PARTIAL_EXTRA, limit))
        backups.add(_backup_name(target.name, limit))
    for directory, (partials, backups) in wanted.items():
        try:
            with os.scandir(directory) as listing:
                names = [e.name for e in listing if e.name.startswith(".") or e.name in backups]
        except OSError:
            continue  # no such directory yet: nothing left there
        for name in names:
            partial = _PARTIAL.fullmatch(name)
            if (
                (partial and partial[1] in partials)
                or name in backups
                or name.startswith(WEIGHTS_SCRATCH_PREFIX)
            ):
                _remove_if_dead(directory / name)


def _remove_if_dead(path: Path) -> None:
    """Remove a leftover file or scratch directory unless a live run holds it
    locked (without locks: unless it changed in the last STALE_AFTER seconds);
    never follows a symbolic link, never opens a FIFO or a device."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) and not path.is_dir():
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return  # gone already, or not ours to open
    try:
        status = os.fstat(fd)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif time.time() - status.st_mtime <= STALE_AFTER:
            return
        if not _is_at(path, fd):
            return  # replaced meanwhile
        if stat.S_ISDIR(status.st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # BlockingIOError: a live run's; or gone already
    finally:
        os.close(fd)


def _name_max(directory: Path) -> int:
    """The longest file name `directory`'s file system takes, in bytes."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _fitted(name: str, extra: int, limit: int) -> str:
    """`name`, or when it and `extra` bytes more would pass the file system's
    name `limit`, its start and a digest of it: still one name per target."""
    encoded = os.fsencode(name)
    if len(encoded) + extra <= limit:
        return name
    import hashlib  # here, not at every start: OpenSSL's, 4 ms

    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return os.fsdecode(encoded[: max(0, limit - extra - len(digest) - 1)]) + "~" + digest


def _backup_name(name: str, limit: int) -> str:
    return _fitted(name, len(BACKUP_SUFFIX), limit) + BACKUP_SUFFIX


def write_text_atomically(target: str | os.PathLike, text: str) -> Path:
    """Write a small text file (a SARIF report, an HTML page) the way archives
    are written: to a temporary file beside the target, then renamed over it;
    the target is checked as any output is (`check_output`)."""
    target = Path(target)
    check_output(target)
    with _temporary(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    return target


def copy_atomically(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy a file (`batch --copy-clean`) the way archives are written; the
    target is checked as any output is (`check_output`)."""
    target = Path(target)
    check_output(target, source)
    with _temporary(target) as temporary:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    return target
