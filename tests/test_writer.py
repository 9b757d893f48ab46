"""The writer: raw copies, atomic output, deterministic bytes, input untouched."""

import copy
import hashlib
import json
import os
import time
import zipfile
import zlib

import numpy as np
import pytest

from conftest import raw_entries, rezip
from kerasrepair import WriteError, open_archive, write_archive
from kerasrepair import writer as writer_module
from kerasrepair.archive import ArchiveProblem


@pytest.fixture(scope="module")
def model_and_archive(keras, saved):
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    return model, saved(model, "writer_source")


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _renamed_config(archive, name="renamed"):
    config = json.loads(archive.config_bytes)
    config["config"]["name"] = name
    return json.dumps(config).encode()


def test_unchanged_copy_is_byte_identical(model_and_archive, tmp_path):
    _, source = model_and_archive
    with open_archive(source) as archive:
        write_archive(archive, tmp_path / "copy.keras")
    assert (tmp_path / "copy.keras").read_bytes() == source.read_bytes()


def test_replacing_config_copies_other_entries_raw(model_and_archive, tmp_path):
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    before = _digest(source)
    with open_archive(source) as archive:
        new_config = _renamed_config(archive)
        write_archive(archive, target, {"config.json": new_config})

    assert _digest(source) == before  # the input is never modified
    original, written = raw_entries(source), raw_entries(target)
    assert list(written) == list(original)  # same entries, same order
    assert written["model.weights.h5"] == original["model.weights.h5"]
    assert written["metadata.json"] == original["metadata.json"]
    assert written["config.json"] != original["config.json"]
    with zipfile.ZipFile(target) as zf:
        assert zf.read("config.json") == new_config
        assert zf.testzip() is None
        assert (
            zf.getinfo("config.json").date_time
            == zipfile.ZipFile(source).getinfo("config.json").date_time
        )


def test_output_is_deterministic(model_and_archive, tmp_path):
    _, source = model_and_archive
    with open_archive(source) as archive:
        new_config = _renamed_config(archive)
        write_archive(archive, tmp_path / "a.keras", {"config.json": new_config, "extra.txt": b"x"})
        write_archive(archive, tmp_path / "b.keras", {"extra.txt": b"x", "config.json": new_config})
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()


def test_written_archive_loads_in_keras_with_same_predictions(keras, model_and_archive, tmp_path):
    model, source = model_and_archive
    target = tmp_path / "renamed.keras"
    with open_archive(source) as archive:
        write_archive(archive, target, {"config.json": _renamed_config(archive)})
    loaded = keras.saving.load_model(target)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    assert loaded.name == "renamed"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_compressed_entries_are_copied_without_recompressing(model_and_archive, tmp_path):
    _, source = model_and_archive
    deflated = rezip(source, tmp_path / "deflated.keras")
    target = tmp_path / "out.keras"
    with open_archive(deflated) as archive:
        write_archive(archive, target, {"metadata.json": b'{"keras_version": "3.15.1"}'})
    original, written = raw_entries(deflated), raw_entries(target)
    assert written["model.weights.h5"] == original["model.weights.h5"]
    with zipfile.ZipFile(target) as zf:
        assert zf.getinfo("metadata.json").compress_type == zipfile.ZIP_DEFLATED
        assert zf.testzip() is None


def test_a_failed_check_leaves_no_file(model_and_archive, tmp_path):
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    with open_archive(source) as archive, pytest.raises(WriteError, match="does not read back"):
        write_archive(archive, target, {"config.json": b"{not json"})
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file


def test_a_crash_while_writing_keeps_the_old_target(model_and_archive, tmp_path, monkeypatch):
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    target.write_bytes(b"previous contents")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(writer_module, "_copy_range", crash)
    with open_archive(source) as archive, pytest.raises(OSError, match="disk full"):
        write_archive(archive, target)
    assert target.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.keras"]


def test_corruption_is_caught_by_the_crc_check(model_and_archive, tmp_path, monkeypatch):
    _, source = model_and_archive
    real_copy = writer_module._copy_range

    def corrupting_copy(src_fd, dst_fd, offset, count):
        real_copy(src_fd, dst_fd, offset, count)
        end = os.lseek(dst_fd, 0, os.SEEK_CUR)
        os.pwrite(dst_fd, b"\xff", end - 10)  # flip a byte inside the entry's data

    monkeypatch.setattr(writer_module, "_copy_range", corrupting_copy)
    with open_archive(source) as archive, pytest.raises(WriteError, match="CRC"):
        write_archive(archive, tmp_path / "out.keras")
    assert list(tmp_path.iterdir()) == []


def test_new_file_permissions_follow_umask(model_and_archive, tmp_path):
    _, source = model_and_archive
    umask = os.umask(0o022)
    try:
        with open_archive(source) as archive:
            write_archive(archive, tmp_path / "out.keras")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.keras").stat().st_mode & 0o777 == 0o644


def test_removing_an_entry(model_and_archive, tmp_path):
    _, source = model_and_archive
    with open_archive(source) as archive:
        write_archive(archive, tmp_path / "out.keras", remove={"metadata.json"})
    with open_archive(tmp_path / "out.keras") as written:
        assert [e.name for e in written.entries] == ["config.json", "model.weights.h5"]
        assert written.problems == (
            ArchiveProblem("metadata.json", "is missing (the Keras version is unknown)"),
        )


@pytest.mark.parametrize("sizes", [(0, 5), (5, 0), (1, 1), (4096, 3), (12345, 1 << 20)])
def test_crc32_combine_is_zlibs(sizes):
    import random

    rng = random.Random(sum(sizes))
    first, second = (rng.randbytes(n) for n in sizes)
    combined = writer_module.crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))
    assert combined == zlib.crc32(first + second)


def test_raw_entries_are_listed_in_the_central_directory(tmp_path):
    """RawZipWriter: bytes copied as they are, then listed; zipfile reads them back."""
    source = tmp_path / "source.zip"
    with zipfile.ZipFile(source, "w") as zout:
        zout.writestr("a.txt", b"alpha" * 100)
    info = zipfile.ZipFile(source).getinfo("a.txt")
    raw = source.read_bytes()[: info.header_offset + 30 + len("a.txt") + info.compress_size]
    target = tmp_path / "target.zip"
    with open(target, "wb") as out, writer_module.RawZipWriter(out, "w") as zout:
        zout.writestr("first.txt", b"first")
        copied = copy.copy(info)
        copied.header_offset = out.tell()
        out.write(raw[info.header_offset :])
        zout.add_raw(copied)
        zout.writestr("last.txt", b"last")
    with zipfile.ZipFile(target) as zin:
        assert zin.namelist() == ["first.txt", "a.txt", "last.txt"]
        assert zin.read("a.txt") == b"alpha" * 100
        assert zin.testzip() is None


def test_an_existing_target_keeps_its_permissions(model_and_archive, tmp_path):
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    target.write_bytes(b"old")
    target.chmod(0o600)
    with open_archive(source) as archive:
        write_archive(archive, target, {"config.json": archive.config_bytes + b" "})
    assert target.stat().st_mode & 0o777 == 0o600


def test_the_umask_of_the_process_is_left_alone(model_and_archive, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "umask", lambda *args: calls.append(args) or 0o022)
    _, source = model_and_archive
    with open_archive(source) as archive:
        write_archive(archive, tmp_path / "out.keras", {"config.json": archive.config_bytes})
    assert calls == []


def test_a_killed_runs_temporary_is_cleaned_by_the_next_run(model_and_archive, tmp_path):
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    stale = tmp_path / ".out.keras.0badc0de.partial"
    fresh = tmp_path / ".out.keras.feedf00d.partial"  # another run's, writing now
    other = tmp_path / ".other.keras.0badc0de.partial"
    for leftover in (stale, fresh, other):
        leftover.write_bytes(b"half an archive")
    old = time.time() - writer_module.STALE_AFTER - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    with open_archive(source) as archive:
        write_archive(archive, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, other.name, "out.keras"]
    )
