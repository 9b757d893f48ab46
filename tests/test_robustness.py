"""No input crashes or hangs the tool.

Mutation fuzzing of the fixtures ended about one run in ten in a Python
traceback (exit 1, indistinguishable from "findings left"): zipfile's
NotImplementedError, UnicodeDecodeError on an entry name, zlib and lzma errors
from damaged entries, an integer over Python's 4,300 digits, a zip64 offset of
2**64-1, h5py's errors on a damaged HDF5 file, damaged `.npz` weights, values
of unexpected types in config.json, RecursionError on 60 nested Sequential
models. 3 KB of marshaled Lambda code hung every command, a FIFO blocked it in
open(), 12 MB of config.json took 1.27 GB, and an archive whose local header
disagrees with its central directory was "fixed" into one zipfile cannot read.

Each such input is made here from a fixture, and each ends as bad input must:
one line on stderr (what, where, what to do), exit 2, no traceback, no output
file; a config of any JSON at any key, nested to the depth limit, is read; the
marshal reader's work is bounded; memory stays a small multiple of the config.
"""

import base64
import io
import json
import marshal
import os
import resource
import socket
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import MODELS, ROOT
from kerasrepair import bytecode, check, fix, graph, inspection, open_archive
from kerasrepair import weights as weights_module
from kerasrepair.archive import Limits
from kerasrepair.cli import app
from kerasrepair.context import Context, Options
from kerasrepair.errors import ArchiveError
from kerasrepair.hdf5_file import HeapCheckedFile

MLP = MODELS / "sequential_mlp.keras"  # Sequential: metadata, config, weights (stored)
NPZ = MODELS / "weights_npz.keras"  # the same with model.weights.npz
LAMBDA = MODELS / "lambda_global.keras"  # a Lambda reading the global CONV_WIDTH
FUNCTIONAL = MODELS / "functional_nested_shared.keras"
LEGACY = ROOT / "fixtures" / "keras2" / "cnn_batchnorm.h5"  # a tf.keras HDF5 model

# -- what bad input must give


def run(args: list, cwd: Path | None = None):
    """A command in this process; an exception that escapes fails the test
    (the last-resort guard of `cli.main` is never reached by known causes)."""
    if cwd is not None:
        old = os.getcwd()
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        if cwd is not None:
            os.chdir(old)


def assert_refused(result, *words: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr naming what went wrong."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kerasrepair: error: "), lines[0]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def assert_refused_everywhere(path: Path, tmp_path: Path, *words: str) -> str:
    """`inspect`, `check`, `fix --dry-run` and `fix -o` all refuse `path` the
    same way; `fix` writes nothing."""
    output = tmp_path / "out" / "fixed.keras"
    output.parent.mkdir(exist_ok=True)
    lines = {
        assert_refused(run(command + [path]), *words)
        for command in (["inspect"], ["check"], ["fix", "--dry-run"], ["fix", "-o", output])
    }
    assert list(output.parent.iterdir()) == []
    assert len(lines) == 1, lines
    return lines.pop()


# -- zip bytes, edited field by field

CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # a central directory record, then its name
LOCAL = struct.Struct("<4s2B4HL2L2H")  # a local header, then its name and extra field
# field -> its offset in a central directory record and in a local header
FIELDS = {
    "version": (6, 4, "<H"),
    "flags": (8, 6, "<H"),
    "method": (10, 8, "<H"),
    "crc": (16, 14, "<L"),
    "compressed": (20, 18, "<L"),
    "size": (24, 22, "<L"),
}


def records(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Entry name -> (offset of its central directory record, of its local header)."""
    end = data.rfind(b"PK\x05\x06")
    size, position = struct.unpack_from("<LL", data, end + 12)
    found = {}
    while position < end:
        fields = CENTRAL.unpack_from(data, position)
        name_length, extra_length, comment_length = fields[12:15]
        name = bytes(data[position + CENTRAL.size : position + CENTRAL.size + name_length])
        found[name] = (position, fields[18])
        position += CENTRAL.size + name_length + extra_length + comment_length
    return found


def patch(data: bytes, name: bytes, central=True, local=True, **values) -> bytes:
    """`data` with fields of entry `name` set, in its central record and/or local header."""
    data = bytearray(data)
    at_central, at_local = records(data)[name]
    for field, value in values.items():
        in_central, in_local, form = FIELDS[field]
        if central:
            struct.pack_into(form, data, at_central + in_central, value)
        if local:
            struct.pack_into(form, data, at_local + in_local, value)
    return bytes(data)


def rename(data: bytes, name: bytes, new: bytes, central=True, local=True) -> bytes:
    """Entry `name` named `new` (the same length) in its central record and/or local header."""
    assert len(new) == len(name)
    data = bytearray(data)
    at_central, at_local = records(data)[name]
    if central:
        data[at_central + CENTRAL.size : at_central + CENTRAL.size + len(name)] = new
    if local:
        data[at_local + LOCAL.size : at_local + LOCAL.size + len(name)] = new
    return bytes(data)


def data_range(data: bytes, name: bytes) -> tuple[int, int]:
    """Where entry `name`'s (compressed) bytes start and end."""
    _, at_local = records(data)[name]
    fields = LOCAL.unpack_from(data, at_local)
    start = at_local + LOCAL.size + fields[-2] + fields[-1]
    return start, start + fields[8]


def damaged(data: bytes, name: bytes, offset: int = 8, count: int = 24) -> bytes:
    """Entry `name`'s compressed bytes damaged from `offset`, sizes and CRC unchanged."""
    start, end = data_range(data, name)
    data = bytearray(data)
    for i in range(start + offset, min(start + offset + count, end)):
        data[i] ^= 0x5A
    return bytes(data)


def with_zip64_offset(data: bytes, name: bytes, offset: int) -> bytes:
    """The central record of `name` placing its local header at `offset`, a
    64-bit value in a zip64 extra field."""
    data = bytearray(data)
    at_central, _ = records(data)[name]
    name_length, extra_length = struct.unpack_from("<HH", data, at_central + 28)
    extra_at = at_central + CENTRAL.size + name_length
    extra = struct.pack("<HHQ", 1, 8, offset)
    data[extra_at : extra_at + extra_length] = extra
    struct.pack_into("<H", data, at_central + 30, len(extra))
    struct.pack_into("<L", data, at_central + 42, 0xFFFFFFFF)
    end = data.rfind(b"PK\x05\x06")
    size = struct.unpack_from("<L", data, end + 12)[0]
    struct.pack_into("<L", data, end + 12, size + len(extra) - extra_length)
    return bytes(data)


def with_offset(data: bytes, name: bytes, offset: int) -> bytes:
    """The central record of `name` placing its local header at `offset`."""
    data = bytearray(data)
    struct.pack_into("<L", data, records(data)[name][0] + 42, offset)
    return bytes(data)


def written(tmp_path: Path, data: bytes, name: str = "model.keras") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def entries_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def archive_with(tmp_path: Path, source: Path = MLP, **replaced: bytes) -> Path:
    """`source` with entries replaced (`config=b"..."`: config.json; `weights`:
    model.weights.h5; `metadata`), written stored, as Keras writes them."""
    names = {"config": "config.json", "metadata": "metadata.json", "weights": "model.weights.h5"}
    contents = entries_of(source)
    contents.update({names[key]: value for key, value in replaced.items()})
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for entry, data in contents.items():
            zf.writestr(entry, data)
    return path


MLP_BYTES = MLP.read_bytes()


# -- the zip: what zipfile cannot read, said as such


ZIP_FEATURES = {
    # a "version needed to extract" above 6.3: zipfile raises NotImplementedError
    "version_needed": (
        patch(MLP_BYTES, b"config.json", version=64),
        ["needs a zip feature", "zip file version 6.4", "re-zip"],
    ),
    "strong_encryption": (
        patch(MLP_BYTES, b"config.json", flags=0x40),
        ["config.json: entry is encrypted", "without a password"],
    ),
    "patched_data": (
        patch(MLP_BYTES, b"config.json", flags=0x20),
        ["config.json: entry holds compressed patched data (flag bit 5)"],
    ),
    "unknown_method": (
        patch(MLP_BYTES, b"model.weights.h5", method=99),
        ["model.weights.h5: entry uses zip compression method 99"],
    ),
    # bit 11 says UTF-8, the name is not: zipfile raises UnicodeDecodeError
    "name_not_utf8": (
        patch(
            rename(MLP_BYTES, b"metadata.json", b"metadata.j\xffon"),
            b"metadata.j\xffon",
            flags=0x800,
        ),
        ["entry name marked UTF-8 (flag bit 11) that is not UTF-8 (byte 0xff)"],
    ),
    "name_with_nul": (
        rename(MLP_BYTES, b"metadata.json", b"metadata\x00json"),
        ["holds a NUL byte"],
    ),
    "zip64_offset_2_64": (
        with_zip64_offset(MLP_BYTES, b"config.json", 2**64 - 1),
        [
            "config.json: the central directory puts its local header at offset "
            "18,446,744,073,709,551,615, outside the file"
        ],
    ),
    "offset_past_the_end": (
        with_offset(MLP_BYTES, b"config.json", len(MLP_BYTES) + 100),
        ["config.json: the central directory puts its local header at offset", "outside the file"],
    ),
}


@pytest.mark.parametrize("case", sorted(ZIP_FEATURES))
def test_zip_features_zipfile_lacks_are_one_line(case, tmp_path):
    data, words = ZIP_FEATURES[case]
    assert_refused_everywhere(written(tmp_path, data), tmp_path, *words)


# -- the local header and the central directory: one archive, not two

# Python's zipfile (so Keras) reads the central directory; other readers, and a
# raw copy of the entry, read the local header. The weights entry is read in
# place (never through zipfile), so each of these passed `inspect` and `fix`
# (exit 0), and the archive `fix` wrote could not be read by zipfile.
DISAGREEING = {
    "name": rename(MLP_BYTES, b"model.weights.h5", b"model.weights.H5", central=False),
    "method": patch(MLP_BYTES, b"model.weights.h5", central=False, method=8),
    "crc": patch(MLP_BYTES, b"model.weights.h5", central=False, crc=0x12345678),
    "sizes": patch(MLP_BYTES, b"model.weights.h5", central=False, compressed=100, size=100),
    "flags": patch(MLP_BYTES, b"model.weights.h5", central=False, flags=0x1),
}


@pytest.mark.parametrize("field", sorted(DISAGREEING))
def test_a_local_header_that_disagrees_is_refused(field, tmp_path):
    path = written(tmp_path, DISAGREEING[field])
    line = assert_refused_everywhere(
        path, tmp_path, "model.weights.h5: the local header disagrees with the central directory"
    )
    assert (
        field.rstrip("s") in line.lower()
    )  # says which field: "name b'model.weights.H5'", "CRC ..."


def test_a_data_descriptor_that_disagrees_is_refused(tmp_path):
    # flag bit 3: the sizes and CRC follow the data; here nothing does
    data = patch(MLP_BYTES, b"model.weights.h5", flags=0x8)
    assert_refused_everywhere(
        written(tmp_path, data), tmp_path, "data descriptor after the entry disagrees"
    )


def test_entries_that_share_bytes_are_refused(tmp_path):
    # metadata.json made to run 40 bytes into config.json's local header
    # (CRC and sizes agree everywhere): an overlap, which zipfile refuses only
    # when the entry is read, and a zip bomb's trick
    start, end = data_range(MLP_BYTES, b"metadata.json")
    longer = MLP_BYTES[start : end + 40]
    data = patch(
        MLP_BYTES,
        b"metadata.json",
        crc=zlib.crc32(longer),
        compressed=len(longer),
        size=len(longer),
    )
    assert_refused_everywhere(
        written(tmp_path, data), tmp_path, "metadata.json: entry overlaps entry 'config.json'"
    )


def test_a_zip_with_no_entries_is_refused_as_no_keras_archive(tmp_path):
    # found by atheris: the overlap check paired no entries with the central
    # directory and crashed; an empty zip is what an interrupted download leaves
    empty = tmp_path / "empty.keras"
    zipfile.ZipFile(empty, "w").close()
    assert_refused_everywhere(empty, tmp_path, "has no config.json (entries: none)")


class Stream(io.RawIOBase):
    """A file that cannot seek: zipfile writes each entry as a stream, its CRC
    and sizes in a data descriptor after it (flag bit 3)."""

    def __init__(self):
        super().__init__()
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, chunk):
        self.data += chunk
        return len(chunk)


def test_what_the_checks_accept_zipfile_reads_and_fix_copies(tmp_path):
    """Entries written as streams (data descriptors of 32-bit and of zip64
    sizes) and zip64 extra fields pass the checks, and fix copies them into
    an archive zipfile reads."""
    stream = Stream()
    with zipfile.ZipFile(stream, "w") as zf, zipfile.ZipFile(MLP) as source:
        for info in source.infolist():
            zip64 = info.filename != "metadata.json"
            with zf.open(zipfile.ZipInfo(info.filename), "w", force_zip64=zip64) as out:
                out.write(source.read(info))
    streamed = written(tmp_path, bytes(stream.data), "streamed.keras")
    with zipfile.ZipFile(streamed) as zf:
        assert all(info.flag_bits & 0x8 for info in zf.infolist())
    assert run(["check", streamed]).exit_code == 0
    output = tmp_path / "out.keras"
    assert run(["fix", streamed, "-o", output, "--keras", "3.0"]).exit_code == 0
    with zipfile.ZipFile(output) as zf:
        assert zf.testzip() is None


# -- damaged compressed entries, wherever they are read


def recompressed(source: Path, method: int) -> bytes:
    """The same entries, compressed with `method`: what a user's `zip -r` makes."""
    out = io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w", method) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    return out.getvalue()


DEFLATED_BYTES = recompressed(MLP, zipfile.ZIP_DEFLATED)
LZMA_BYTES = recompressed(MLP, zipfile.ZIP_LZMA)
BZIP2_BYTES = recompressed(MLP, zipfile.ZIP_BZIP2)


def cut_deflate(data: bytes, name: bytes) -> bytes:
    """Entry `name` deflated in complete blocks, but only half of them and
    never the last, its compressed size saying so in both headers: zipfile
    decompresses half the content, which fails the CRC."""
    start, end = data_range(data, name)
    stream = zlib.compressobj(9, zlib.DEFLATED, -15)
    content = zlib.decompress(data[start:end], -15)
    half = stream.compress(content[: len(content) // 2]) + stream.flush(zlib.Z_SYNC_FLUSH)
    data = data[:start] + half + data[start + len(half) :]
    return patch(data, name, compressed=len(half))


DAMAGED_ENTRIES = {
    "deflated_config": (
        damaged(DEFLATED_BYTES, b"config.json"),
        "config.json: entry is damaged (deflate",
    ),
    "lzma_config": (damaged(LZMA_BYTES, b"config.json"), "config.json: entry is damaged (lzma"),
    "bzip2_config": (damaged(BZIP2_BYTES, b"config.json"), "config.json: entry is damaged"),
    "deflated_weights": (
        damaged(DEFLATED_BYTES, b"model.weights.h5"),
        "model.weights.h5: entry is damaged (deflate",
    ),
    "lzma_weights": (
        damaged(LZMA_BYTES, b"model.weights.h5"),
        "model.weights.h5: entry is damaged (lzma",
    ),
    "bzip2_weights": (
        damaged(BZIP2_BYTES, b"model.weights.h5"),
        "model.weights.h5: entry is damaged",
    ),
    "bad_crc_config": (patch(MLP_BYTES, b"config.json", crc=0x12345678), "Bad CRC-32"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_ENTRIES))
def test_damaged_entries_are_one_line(case, tmp_path):
    data, words = DAMAGED_ENTRIES[case]
    assert_refused_everywhere(written(tmp_path, data), tmp_path, words, "re-download")


def test_a_deflate_stream_cut_short_is_one_line(tmp_path):
    data = cut_deflate(DEFLATED_BYTES, b"config.json")
    assert_refused_everywhere(
        written(tmp_path, data), tmp_path, "config.json: entry is damaged (Bad CRC-32"
    )


@pytest.mark.parametrize("source", ["deflated", "lzma", "bzip2"])
def test_a_damaged_metadata_json_is_a_finding_and_fix_writes_nothing(source, tmp_path):
    """Keras loads without metadata.json, and so does `check` (KR202); but an
    entry no rule reads is copied raw by `fix`, and the copy is checked: a
    damaged one is never written."""
    data = {"deflated": DEFLATED_BYTES, "lzma": LZMA_BYTES, "bzip2": BZIP2_BYTES}[source]
    path = written(tmp_path, damaged(data, b"metadata.json", offset=4, count=8))
    checked = run(["check", "--json", path])
    assert checked.exit_code in (0, 1)
    codes = [f["code"] for f in json.loads(checked.stdout)["results"][0]["findings"]]
    assert "KR202" in codes
    output = tmp_path / "out" / "fixed.keras"
    output.parent.mkdir()
    assert_refused(
        run(["fix", path, "-o", output, "--keras", "3.0"]),
        f"{path}:metadata.json: entry is damaged",
        "the input is damaged",
    )
    assert list(output.parent.iterdir()) == []


# -- JSON: what Python's json (Keras's reader) reads, and what it cannot


def test_an_integer_over_4300_digits_is_refused_at_its_line(tmp_path):
    config = entries_of(MLP)["config.json"].replace(b'"units": 8', b'"units": ' + b"9" * 5000, 1)
    line = assert_refused_everywhere(
        archive_with(tmp_path, config=config),
        tmp_path,
        "config.json:1:",
        "holds an integer of more than 4,300 digits",
    )
    column = int(line.split("config.json:1:")[1].split(":")[0])
    assert config[column - 1 : column + 3] == b"9999"


def test_an_integer_over_4300_digits_in_metadata_is_a_finding(tmp_path):
    metadata = b'{"keras_version": "3.15.1", "date_saved": ' + b"1" * 5000 + b"}"
    result = run(["check", "--json", archive_with(tmp_path, metadata=metadata)])
    findings = json.loads(result.stdout)["results"][0]["findings"]
    (unreadable,) = [f for f in findings if f["code"] == "KR202"]
    assert "4,300 digits" in unreadable["message"]


def test_nan_infinity_and_1e999_are_json_for_keras(tmp_path):
    """Keras reads config.json with json.loads, which takes NaN, Infinity,
    -Infinity and 1e999 (inf): they are valid here too, and written back as
    json.dumps (Keras's writer) writes them."""
    config = entries_of(MLP)["config.json"]
    config = config.replace(b'"momentum": 0.99', b'"momentum": NaN', 1)
    config = config.replace(b'"epsilon": 0.001', b'"epsilon": 1e999', 1)
    assert b"NaN" in config and b"1e999" in config
    path = archive_with(tmp_path, config=config)
    with open_archive(path) as archive:
        batch_norm = archive.config["config"]["layers"][3]["config"]
        assert np.isnan(batch_norm["momentum"]) and batch_norm["epsilon"] == float("inf")
    assert run(["check", path]).exit_code == 0
    output = tmp_path / "fixed.keras"
    assert run(["fix", path, "-o", output, "--keras", "3.0"]).exit_code == 0
    written_config = entries_of(output)["config.json"]
    assert b'"momentum": NaN' in written_config and b'"epsilon": Infinity' in written_config


# -- HDF5 and npz weights


def test_damaged_hdf5_weights_are_one_line(tmp_path):
    """h5py says RuntimeError, ValueError, OSError or KeyError, whichever call
    meets the damage: each is the one line naming the weights entry."""
    start, end = data_range(MLP_BYTES, b"model.weights.h5")
    said = set()
    for offset in (1912, 7310, 7818, 11216, 14226, 19237, 21517, 24216):  # each a different error
        data = bytearray(MLP_BYTES)
        for i in range(start + offset, start + offset + 4):
            data[i] ^= 0xFF
        path = written(tmp_path, bytes(data), f"damaged_{offset}.keras")
        if offset == 1912:  # the heap of the layer names: read only when one is used
            assert check.check_archive(path).findings == []
        with pytest.raises(ArchiveError) as refused:
            inspection.inspect_archive(path)
        assert refused.value.where == f"{path}:model.weights.h5"
        assert refused.value.what.startswith("is damaged (")
        said.add(refused.value.what.split("(")[1])
        line = assert_refused(run(["inspect", path]), "model.weights.h5: is damaged (")
        assert "re-download the model" in line
    assert len(said) >= 5, said  # several different errors of HDF5


def test_damaged_legacy_hdf5_models_are_one_line(tmp_path):
    data = LEGACY.read_bytes()
    for offset in (679, 873, 5626, 12416, 29973, 32107, 40934):  # each a different error
        damaged_file = bytearray(data)
        for i in range(offset, offset + 4):
            damaged_file[i] ^= 0xFF
        path = written(tmp_path, bytes(damaged_file), f"damaged_{offset}.h5")
        output = tmp_path / f"out_{offset}.keras"
        for command in (["inspect"], ["check"], ["fix", "-o", output]):
            assert_refused(run(command + [path]), str(path))
        assert not output.exists()


def heap_that_never_ends(data: bytes, object_index: int, size: int) -> bytes:
    """`data` (an HDF5 file) with the object `object_index` of its first global
    heap collection declaring `size`: 0 for the free space (object 0), or a
    size that wraps HDF5's pointer back to the object itself. HDF5 2.0.0 then
    walks the collection forever, in native code nothing can interrupt."""
    heap = data.index(b"GCOL")
    (collection,) = struct.unpack_from("<Q", data, heap + 8)
    at = heap + 16
    while at < heap + collection:
        index, _, _, length = struct.unpack_from("<HHLQ", data, at)
        if index == object_index:
            return data[: at + 8] + struct.pack("<Q", size) + data[at + 16 :]
        at += length if index == 0 else 16 + (length + 7) // 8 * 8
    raise AssertionError(f"no object {object_index} in the heap at {heap}")


HEAP_HANGS = {  # what the fuzzer found, in Keras 2's model_config and Keras 3.6+'s `name`
    "free space of size 0": (0, 0),
    "an object that wraps back to itself": (1, 2**64 - 16),
}


def _address_space(limit: int):
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return limited


def run_process(args: list, timeout: float = 60) -> subprocess.CompletedProcess:
    """A command in a child: a hang or a crash in native code fails the test,
    not the run; 4 GiB of address space, so HDF5 allocating forever ends too."""
    return subprocess.run(
        [sys.executable, "-m", "kerasrepair", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_address_space(4 << 30),
    )


def local_heap_going_round(data: bytes) -> bytes:
    """`data` (an HDF5 file) with the first free block of a group's local heap
    (its link names) naming itself as the next: HDF5 2.0.0 follows the free
    list forever, allocating at each step, until memory runs out."""
    at = 0
    while (at := data.find(b"HEAP\x00", at + 1)) >= 0:
        free, address = struct.unpack_from("<QQ", data, at + 16)
        if free != 1:  # 1: no free block
            block = address + free
            return data[:block] + struct.pack("<Q", free) + data[block + 8 :]
    raise AssertionError("no local heap with a free block")


def vlen_of_no_kind(data: bytes, attribute: bytes) -> bytes:
    """`data` with the variable-length string type of `attribute` made neither
    a sequence nor a string (type 4): HDF5 2.0.0 crashes (SIGSEGV) reading it."""
    at = data.index(attribute + b"\x00\x00\x00\x00\x19\x01") + len(attribute) + 5
    return data[:at] + b"\x14" + data[at + 1 :]


def test_an_error_in_a_link_visit_is_that_error_not_a_system_error():
    """h5py turns an exception raised through HDF5's link visitor into
    SystemError (atheris: a soft link whose value cannot be read)."""
    weights = h5py.File(io.BytesIO(entries_of(MLP)["model.weights.h5"]), "r")

    def damaged(name, info):
        raise RuntimeError("Unable to get link info (component not found)")

    with pytest.raises(SystemError):  # what the walk had to avoid
        weights.id.links.visit(damaged, info=True)
    with pytest.raises(RuntimeError, match="component not found"):
        weights_module._visit(lambda visitor: weights.id.links.visit(visitor, info=True), damaged)


def test_a_global_heap_declaring_a_terabyte_is_read_only_to_the_file_end(tmp_path):
    """atheris: the heap check read what the collection declared (up to 1 GiB)
    while HDF5 converted a string, beyond the room `bounded_memory` leaves."""
    data = entries_of(MLP)["model.weights.h5"]
    heap = data.index(b"GCOL")
    weights = data[: heap + 8] + struct.pack("<Q", 1 << 40) + data[heap + 16 :]
    path = archive_with(tmp_path, weights=weights)
    finished = run_process(["inspect", path])  # one thread: bounded_memory applies
    assert finished.returncode == 2 and len(finished.stderr.splitlines()) == 1, finished.stderr
    assert "model.weights.h5: " in finished.stderr and "internal error" not in finished.stderr
    assert "()" not in finished.stderr  # HDF5's own reason, not a MemoryError of the check's


def string_of_4_gib(data: bytes) -> bytes:
    """`data` (an HDF5 file) with the first variable-length string that refers
    to its first global heap declaring 4 GiB: HDF5 allocates and zeroes that
    much before it reads the heap object, which says otherwise."""
    heap = data.index(b"GCOL")
    reference = data.index(struct.pack("<Q", heap)) - 4  # length, heap address, index
    return data[:reference] + struct.pack("<I", 2**32 - 16) + data[reference + 4 :]


# the CLI with its arguments, then the peak resident size of this process
# image (VmHWM, bytes) as the last line on stderr
PEAK_OF_CLI = textwrap.dedent(
    """
    import sys
    from kerasrepair.cli import main
    sys.argv = ["kerasrepair", *sys.argv[1:]]
    try:
        main()
    finally:
        with open("/proc/self/status") as status:
            peak = next(line for line in status if line.startswith("VmHWM:"))
        print(int(peak.split()[1]) * 1024, file=sys.stderr)
    """
)


@pytest.mark.parametrize("source", ["keras2.h5", "keras3.keras"])
def test_a_string_that_declares_4_gib_is_refused_in_bounded_memory(source, tmp_path):
    if source == "keras2.h5":
        path = written(tmp_path, string_of_4_gib(LEGACY.read_bytes()), source)
    else:
        path = archive_with(tmp_path, weights=string_of_4_gib(entries_of(MLP)["model.weights.h5"]))
    started = time.perf_counter()
    # the peak of the child's own image: wait4's ru_maxrss would count what
    # the child was before exec, a copy of this test process
    finished = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CLI, "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    *said, peak = finished.stderr.splitlines()
    stderr = "\n".join(said)
    assert finished.returncode == 2, stderr
    assert "memory allocation failed" in stderr and len(said) == 1, stderr
    assert int(peak) < 400 << 20, f"{int(peak) >> 20} MiB"  # was 3.4 GiB
    assert time.perf_counter() - started < 30  # was 3-4 s on a quiet machine


@pytest.mark.parametrize("source", ["keras2.h5", "keras3.keras"])
def test_hdf5_structures_that_crash_or_exhaust_hdf5_are_refused(source, tmp_path):
    """Found by atheris: a local heap's free list going round (HDF5 allocated
    23 GB and was killed) and a string type of no kind (SIGSEGV)."""
    for case, damage in {
        "heap": local_heap_going_round,
        "type": lambda data: vlen_of_no_kind(
            data, b"weight_names" if source == "keras2.h5" else b"name"
        ),
    }.items():
        if source == "keras2.h5":
            path = written(tmp_path, damage(LEGACY.read_bytes()), f"{case}.h5")
        else:
            weights = damage(entries_of(MLP)["model.weights.h5"])
            path = archive_with(tmp_path, weights=weights)
        for command in (["inspect"], ["check"]):
            finished = run_process(command + [path])
            if case == "type" and source == "keras3.keras":  # a `name` that is no string:
                assert finished.returncode == 0, finished.stderr  # the layer's is not known
                continue
            assert finished.returncode == 2, (case, finished.returncode, finished.stderr)
            assert finished.stdout == "" and len(finished.stderr.splitlines()) == 1
            assert "internal error" not in finished.stderr
            said = "free list comes back" if case == "heap" else "'weight_names' has type object"
            assert said in finished.stderr, finished.stderr


@pytest.mark.parametrize("case", sorted(HEAP_HANGS))
@pytest.mark.parametrize("source", ["keras2.h5", "keras3.keras"])
def test_a_global_heap_that_never_ends_is_refused_before_hdf5_reads_it(case, source, tmp_path):
    if source == "keras2.h5":
        path = written(
            tmp_path, heap_that_never_ends(LEGACY.read_bytes(), *HEAP_HANGS[case]), source
        )
    else:
        weights = heap_that_never_ends(entries_of(MLP)["model.weights.h5"], *HEAP_HANGS[case])
        path = archive_with(tmp_path, weights=weights)
    output = tmp_path / "fixed.keras"
    commands = [["inspect"], ["check"], ["fix", "-o", output]]
    if source == "keras3.keras":  # the heap holds the layer names on `vars` groups,
        for command in commands[1:]:  # which check and fix read only to explain a finding
            assert run_process(command + [path]).returncode == 0
        commands = commands[:1]
    for command in commands:
        finished = run_process(command + [path])
        assert finished.returncode == 2, finished.stderr
        assert finished.stdout == "" and len(finished.stderr.splitlines()) == 1, finished.stderr
        assert "global heap at offset" in finished.stderr, finished.stderr
        assert "makes HDF5 loop forever (not read)" in finished.stderr
    assert output.exists() == (source == "keras3.keras")


def test_the_global_heaps_of_real_files_are_checked_and_read(monkeypatch):
    checked = []
    original = HeapCheckedFile._check_heap
    monkeypatch.setattr(
        HeapCheckedFile,
        "_check_heap",
        lambda self, start, data: checked.append(start) or original(self, start, data),
    )
    for path in (LEGACY, MLP):  # Keras 2's model_config; Keras 3.6+'s `name` on `vars`
        checked.clear()
        assert run(["inspect", path]).exit_code == 0, path
        assert checked, path


def _weights_with(tmp_path: Path, add) -> bytes:
    """sequential_mlp's weights file with `add(h5)` done to it."""
    path = tmp_path / "weights.h5"
    path.write_bytes(entries_of(MLP)["model.weights.h5"])
    with h5py.File(path, "r+") as h5:
        add(h5)
    return path.read_bytes()


def test_an_empty_optimizer_iteration_count_is_no_crash(tmp_path):
    """An `optimizer/vars/0` with an empty dataspace: no iteration count, no crash."""

    def empty_iterations(h5):
        del h5["optimizer/vars/0"]
        h5["optimizer/vars"].create_dataset("0", data=h5py.Empty("int64"))

    path = archive_with(tmp_path, weights=_weights_with(tmp_path, empty_iterations))
    report = inspection.inspect_archive(path)
    assert report["weights"]["optimizer"]["iterations"] is None
    assert run(["check", path]).exit_code in (0, 1)


def test_a_legacy_weight_with_an_empty_dataspace_is_refused(tmp_path):
    path = tmp_path / "null.h5"
    path.write_bytes(LEGACY.read_bytes())
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights/dense/dense"]
        del group["bias:0"]
        group.create_dataset("bias:0", data=h5py.Empty("float32"))
    output = tmp_path / "out.keras"
    for command in (["inspect"], ["check"], ["fix", "-o", output]):
        assert_refused(run(command + [path]), "bias:0: holds no value (an empty dataspace)")
    assert not output.exists()


def _npz_archive(tmp_path: Path, change) -> Path:
    """weights_npz.keras with `change(bytes) -> bytes` done to its npz entry."""
    contents = entries_of(NPZ)
    contents["model.weights.npz"] = change(contents["model.weights.npz"])
    path = tmp_path / "npz.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return path


def test_damaged_npz_weights(tmp_path):
    first = next(iter(records(entries_of(NPZ)["model.weights.npz"])))
    # a member whose local header names another: zipfile's BadZipFile, one line
    renamed = _npz_archive(
        tmp_path, lambda npz: rename(npz, first, first[:-1] + b"X", central=False)
    )
    assert_refused(run(["inspect", renamed]), "model.weights.npz: is damaged (File name in")
    # a bad CRC of a member small enough to be read whole
    crc = _npz_archive(tmp_path, lambda npz: patch(npz, first, crc=0x12345678))
    assert_refused(run(["inspect", crc]), "model.weights.npz: is damaged (Bad CRC-32")


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, ",  # numpy's TokenError
        b"{'descr': '<f4', 'fortran_order': False, 'shape': [}",  # SyntaxError
        b"{'descr': 7, 'fortran_order': False, 'shape': (4,), }",  # TypeError
        b"not a dict at all",
    ],
)
def test_a_broken_npy_header_is_a_weights_problem(header, tmp_path):
    def broken(npz: bytes) -> bytes:
        out = tmp_path / "broken.npz"
        with zipfile.ZipFile(out, "w") as zf:
            prefix = b"\x93NUMPY\x01\x00"
            padded = header + b" " * (-(len(prefix) + 2 + len(header) + 1) % 64) + b"\n"
            zf.writestr("layers/dense/vars.npy", prefix + struct.pack("<H", len(padded)) + padded)
        return out.read_bytes()

    report = inspection.inspect_archive(_npz_archive(tmp_path, broken))
    assert report["weights"]["problems"] == [
        {"path": "layers/dense/vars", "problem": "not a readable .npy header"}
    ]


# -- config.json: any JSON value at any key

WRONG_TYPES = {
    "module_a_number": (("config", "layers", 1, "module"), -1),
    "module_a_list": (("config", "layers", 1, "module"), ["keras.layers"]),
    "registered_name_a_dict": (("config", "layers", 1, "registered_name"), {}),
    "keras_tensor_config_a_number": (
        ("config", "layers", 2, "inbound_nodes", 0, "args", 0, "config"),
        -1,
    ),
    "layers_a_dict": (("config", "layers"), {"0": {}}),
    "inbound_nodes_a_string": (("config", "layers", 2, "inbound_nodes"), "dense"),
    "name_a_list": (("config", "layers", 2, "name"), ["shared_twice"]),
    "class_name_a_list": (("config", "layers", 2, "class_name"), ["Dense"]),
    "config_a_list": (("config", "layers", 2, "config"), []),
    "output_layers_a_string": (("config", "output_layers"), "head"),
    "keras_history_a_dict": (
        ("config", "layers", 2, "inbound_nodes", 0, "args", 0, "config", "keras_history"),
        {"layer": "x"},
    ),
}


def _set(document, path, value):
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_a_value_of_another_type_is_a_finding_not_a_crash(case, tmp_path):
    path_in_config, value = WRONG_TYPES[case]
    config = json.loads(entries_of(FUNCTIONAL)["config.json"])
    _set(config, path_in_config, value)
    path = archive_with(tmp_path, FUNCTIONAL, config=json.dumps(config).encode())
    for command in (["inspect"], ["check"], ["fix", "--dry-run"]):
        result = run(command + [path])  # an exception would escape here
        assert result.exit_code in (0, 1), (command, result.stderr)


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def test_the_config_walks_take_any_json_at_any_key():
    """graph.build, the object walk (both kinds) and inspect's report, for
    every value of two configs replaced by every JSON type: no exception."""
    values = [0, -1, 2.5, "x", "", [], {}, None, True, [[]], {"class_name": [], "config": 0}]
    runs = 0
    for source in (FUNCTIONAL, LAMBDA):
        with open_archive(source) as archive:
            original = json.dumps(archive.config)
            for path in list(_paths(archive.config))[1:]:
                for value in values:
                    config = json.loads(original)
                    _set(config, path, value)
                    archive.config = config
                    ctx = Context(archive, config)
                    graph.build(config)
                    ctx.objects  # noqa: B018 (validates every object)
                    ctx.classes  # noqa: B018
                    inspection.describe(archive)
                    runs += 1
    assert runs > 5000


# -- depth: as deep as the limit allows, and no deeper


def test_60_nested_sequential_models_are_checked(keras, saved):
    """Keras saves and loads them (config.json 184 levels deep, within the
    limit of 200); `check` hit RecursionError in jsonschema."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="level_0")
    for level in range(1, 60):
        model = keras.Sequential([model], name=f"level_{level}")
    model.build((None, 3))
    path = saved(model, "nested_60")
    checked = run(["check", path])
    assert checked.exit_code == 0 and "no findings" in checked.stdout
    assert run(["fix", "--dry-run", path]).exit_code == 0
    report = inspection.inspect_archive(path)
    depth, model = 0, report["model"]
    while nested := [layer["model"] for layer in model["layers"] if "model" in layer]:
        depth, model = depth + 1, nested[0]
    assert depth == 59 and [layer["params"] for layer in model["layers"]] == [0, 8]


def _deep(levels: int, leaf, kind: str):
    for _ in range(levels):
        leaf = [leaf] if kind == "list" else {"a": leaf}
    return leaf


DEEP_PLACES = {
    "layer argument": ("config", "layers", 2, "config", "bias_regularizer"),
    "keras tensor in a node": ("config", "layers", 2, "inbound_nodes", 0, "args"),
    "output_layers": ("config", "output_layers"),
    "build_config": ("config", "layers", 2, "build_config"),
    "compile_config": ("compile_config",),
    "nested model's layer": ("config", "layers", 1, "config", "layers", 1, "config", "units"),
}


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("place", sorted(DEEP_PLACES))
def test_json_nested_to_the_limit_anywhere(place, kind, tmp_path):
    """No walk or validation recurses past Python's limit, wherever the depth is."""
    config = json.loads(entries_of(FUNCTIONAL)["config.json"])
    where = DEEP_PLACES[place]
    tensor = {"class_name": "__keras_tensor__", "config": {"keras_history": ["tokens", 0, 0]}}
    _set(config, where, _deep(Limits().max_json_depth - len(where) - 3, tensor, kind))
    path = archive_with(tmp_path, FUNCTIONAL, config=json.dumps(config).encode())
    with open_archive(path) as archive:  # within the limit: read
        depth = Limits().max_json_depth
        assert depth - 6 <= _json_depth(archive.config) <= depth
        check.check(archive)
        check.check(archive, "3.0")
        inspection.describe(archive)
        fix.fix(archive, Options(keras="3.0"))


def _json_depth(value):
    from kerasrepair.archive import _json_depth

    return _json_depth(value)


def test_deep_metadata_json_is_read(tmp_path):
    metadata = json.dumps({"keras_version": "3.15.1", "deep": _deep(195, 0, "list")})
    result = run(["check", archive_with(tmp_path, metadata=metadata.encode())])
    assert result.exit_code in (0, 1), result.stderr


def test_a_legacy_model_config_nested_too_deep_is_one_line(tmp_path):
    path = tmp_path / "deep.h5"
    path.write_bytes(LEGACY.read_bytes())
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        text = json.dumps(config)  # json.dumps cannot write 5,000 levels: by hand
        h5.attrs["model_config"] = text[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}"
    assert_refused(run(["inspect", path]), "model_config", "nests too deep")
    with h5py.File(path, "r+") as h5:
        config["deep"] = _deep(300, 0, "list")
        h5.attrs["model_config"] = json.dumps(config)
    assert_refused(run(["check", path]), "over the limit of 200")


# -- the marshal reader: bounded work


def dag_code(levels: int):
    """A code object whose consts hold its child twice, `levels` deep: marshal
    writes each child once and refers to it after (TYPE_REF), so the bytes
    grow with `levels`, the tree they describe with 2**levels."""
    leaf = compile("lambda x: x + CONV_WIDTH", "<dag>", "eval").co_consts[0]
    code = leaf
    for _ in range(levels):
        code = leaf.replace(co_consts=(*leaf.co_consts, code, code))
    return code


def lambda_archive(tmp_path: Path, raw: bytes) -> Path:
    config = json.loads(entries_of(LAMBDA)["config.json"])
    config["config"]["layers"][1]["config"]["function"]["config"]["code"] = base64.b64encode(
        raw
    ).decode()
    return archive_with(tmp_path, LAMBDA, config=json.dumps(config).encode())


def test_shared_code_objects_are_read_once():
    raw = marshal.dumps(dag_code(28))
    assert len(raw) < 4000  # 3 KB for 2**28 code objects, walked as a tree
    started = time.perf_counter()
    code = bytecode.read_lambda(base64.b64encode(raw).decode())
    assert time.perf_counter() - started < 2
    assert code.globals_read == ("CONV_WIDTH",) and code.missing == ("CONV_WIDTH",)


def test_shared_code_objects_end_every_command_promptly(tmp_path):
    path = lambda_archive(tmp_path, marshal.dumps(dag_code(28)))
    output = tmp_path / "fixed.keras"
    started = time.perf_counter()
    assert run(["inspect", path]).exit_code == 0
    assert run(["check", path]).exit_code == 1  # KR501: CONV_WIDTH is not saved
    # the patcher (a child of this Python) patches each shared code object once
    assert run(["fix", path, "-o", output, "--define", "CONV_WIDTH=3"]).exit_code == 0
    assert time.perf_counter() - started < 60
    patched = json.loads(entries_of(output)["config.json"])
    function = patched["config"]["layers"][1]["config"]["function"]["config"]["code"]
    assert bytecode.read_lambda(function).missing == ()


@pytest.mark.parametrize(
    "raw, said",
    [
        (marshal.dumps(dag_code(40)), "nested more than 64 levels deep"),
        (marshal.dumps(compile(f"lambda: {tuple(range(120_000))}", "<many>", "eval")), "values"),
        (marshal.dumps(dag_code(0).replace(co_consts=(None, 2**20_000))), "an integer of"),
    ],
    ids=["deep", "many", "long"],
)
def test_the_marshal_reader_says_where_it_stops(raw, said):
    """Depth, values read and integer size are capped; beyond, the code is
    unreadable (a finding of the Lambda rules), never read in part."""
    with pytest.raises(bytecode.MarshalError, match=said):
        bytecode.parse_code(raw)


def test_a_dict_key_of_shared_structure_is_never_expanded():
    key = ()
    for _ in range(64):
        key = (key, key)  # 2**64 leaves written in ~700 bytes (never hashed: written by hand)
    raw = b"{" + marshal.dumps(key) + marshal.dumps(1) + b"0"
    started = time.perf_counter()
    with pytest.raises(bytecode.MarshalError):
        bytecode.parse_code(raw)
    assert time.perf_counter() - started < 1


def test_an_unreadable_lambda_is_a_finding(tmp_path):
    path = lambda_archive(tmp_path, marshal.dumps(dag_code(40)))
    result = run(["check", "--json", path])
    findings = json.loads(result.stdout)["results"][0]["findings"]
    assert any("nested more than 64 levels deep" in f["message"] for f in findings), findings


# -- inputs that are not regular files

CLI = [sys.executable, "-m", "kerasrepair"]


def _commands(path: Path, out: Path) -> list[list[str]]:
    return [
        ["inspect", str(path)],
        ["check", str(path)],
        ["fix", str(path), "-o", str(out)],
        ["fix", "--dry-run", str(path)],
        ["verify", str(path)],
    ]


def _refused_promptly(path: Path, tmp_path: Path, said: str) -> None:
    out = tmp_path / "out.keras"
    for command in _commands(path, out):
        done = subprocess.run(CLI + command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.splitlines() == [
            f"kerasrepair: error: {path}: is {said}, not a regular file (not read); "
            "give the path of a .keras or .h5 file; save a stream to a file first"
        ], done.stderr
        assert not out.exists()


def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)  # open() would wait for a writer forever
    _refused_promptly(fifo, tmp_path, "a FIFO (named pipe)")


def test_devices_and_sockets_are_refused(tmp_path):
    _refused_promptly(Path("/dev/zero"), tmp_path, "a character device")
    with socket.socket(socket.AF_UNIX) as listening:
        address = tmp_path / "model.keras"
        listening.bind(str(address))
        _refused_promptly(address, tmp_path, "a socket")


def test_a_link_to_a_fifo_is_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "model.keras"
    link.symlink_to(fifo)
    assert_refused(run(["check", link]), "is a FIFO (named pipe)")


# -- the last resort


def test_an_unexpected_exception_is_one_line_not_a_traceback(tmp_path):
    """What escapes a command (a bug) becomes one line and exit 2: a safety
    net, which the known causes above never reach (they run with
    catch_exceptions=False)."""
    script = textwrap.dedent(
        f"""
        import sys
        import kerasrepair.inspection

        def broken(*args):
            raise ZeroDivisionError("a bug\\nover two lines")

        kerasrepair.inspection.inspect_archive = broken
        sys.argv = ["kerasrepair", "inspect", {str(MLP)!r}]
        from kerasrepair.cli import main
        main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "kerasrepair: internal error: ZeroDivisionError: a bug\\nover two lines "
        "(please report this with the file)"
    ]


def test_the_known_causes_never_reach_the_last_resort(tmp_path):
    """Every case of this module, and the hostile corpus, as a process: no
    `internal error` line anywhere."""
    cases = [data for data, _ in ZIP_FEATURES.values()]
    cases += list(DISAGREEING.values()) + [data for data, _ in DAMAGED_ENTRIES.values()]
    paths = [written(tmp_path, data, f"case_{i}.keras") for i, data in enumerate(cases)]
    paths += sorted((ROOT / "fixtures" / "hostile").glob("*.keras"))
    done = subprocess.run(
        CLI + ["check", *map(str, paths)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) >= len(cases)


def test_an_entry_name_with_a_line_break_stays_on_one_line(tmp_path):
    path = written(tmp_path, rename(MLP_BYTES, b"config.json", b"config\njson"))
    line = assert_refused(run(["inspect", path]), "has no config.json", "config\\njson")
    assert "\n" not in line


# -- memory: a small multiple of config.json

PEAK = textwrap.dedent(
    """
    import gc, sys
    gc.disable()  # as `kerasrepair` runs (cli.main)
    from kerasrepair import check, fix, open_archive
    command, path = sys.argv[1], sys.argv[2]
    with open_archive(path) as archive:
        check.check(archive) if command == "check" else fix.fix(archive)
    # the peak of this process image (ru_maxrss would count the parent's before exec)
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    print(int(peak.split()[1]) * 1024)
    """
)


def _peak(command: str, path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK, command, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _big_config(tmp_path: Path, layers: int, plain_list: int = 0) -> Path:
    """sequential_mlp with `layers` copies of its Dense layer (each ~770 bytes
    of JSON), and a `plain_list` of one-number lists as a layer argument."""
    config = json.loads(entries_of(MLP)["config.json"])
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    copies = []
    for index in range(layers):
        layer = json.loads(json.dumps(dense))
        layer["config"]["name"] = f"dense_{index}"
        copies.append(layer)
    config["config"]["layers"] = config["config"]["layers"][:1] + copies
    if plain_list:
        copies[0]["config"]["bias_regularizer"] = [[0.5]] * plain_list
    path = tmp_path / f"big_{layers}_{plain_list}.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", entries_of(MLP)["metadata.json"])
        zf.writestr("config.json", json.dumps(config))
    return path


def test_memory_grows_a_small_multiple_of_config_json(tmp_path):
    """Measured (peak RSS less a 13-layer config's, per byte of config.json):
    a 6 MB config of 7,800 Dense layers, `check` 6x and `fix` 11x (the config
    parsed twice: the archive's and the one fix edits); 7 MB of one-number
    lists, `check` 20x (what Python's objects for `[0.5]` cost) and `fix` 42x
    (two parses). The bounds leave twice that, but for `fix` of the lists:
    before, the object walk kept a path for every list and dict of the config
    at once (57x for `check` of the lists, 1.1 GB for `fix` of 14 MB), and so
    did the string walk of KR905 (66x for `fix`)."""
    baseline = {command: _peak(command, _big_config(tmp_path, 13)) for command in ("check", "fix")}
    layers = _big_config(tmp_path, 7800)
    size = len(entries_of(layers)["config.json"])
    assert size > 5_000_000
    for command, bound in (("check", 12), ("fix", 22)):
        growth = (_peak(command, layers) - baseline[command]) / size
        assert growth < bound, f"{command}: {growth:.1f}x the config's size"
    lists = _big_config(tmp_path, 13, plain_list=1_000_000)
    size = len(entries_of(lists)["config.json"])
    for command, bound in (("check", 40), ("fix", 55)):
        growth = (_peak(command, lists) - baseline[command]) / size
        assert growth < bound, f"{command} of lists: {growth:.1f}x the config's size"
