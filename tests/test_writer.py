"""The writer: raw copies, atomic output, deterministic bytes, input untouched."""

import copy
import fcntl
import hashlib
import json
import os
import sys
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


def test_a_replaced_config_is_written_after_the_entries_copied_as_they_are(
    model_and_archive, tmp_path
):
    """config.json and metadata.json, when one is replaced, go after the other
    entries (which a child copies before `fix` knows what it writes); the
    central directory lists every entry where the input lists it."""
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    with open_archive(source) as archive:
        write_archive(archive, target, {"config.json": _renamed_config(archive)})
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target) as zout:
        assert zout.namelist() == zin.namelist()
        where = {info.filename: info.header_offset for info in zout.infolist()}
    assert where["model.weights.h5"] == 0
    assert where["model.weights.h5"] < where["metadata.json"] < where["config.json"]


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


@pytest.mark.parametrize("zlib_ng", [True, False], ids=["zlib-ng", "zlib"])
def test_the_crc_of_a_range_of_a_file_is_zlibs(zlib_ng, tmp_path, monkeypatch, request):
    """The CRC-32 the writer checks entries with: zlib-ng's where installed
    (a dependency: the test fails if it is not), else zlib's; the same."""
    import random

    if not zlib_ng:
        for module in ("zlib_ng", "zlib_ng.zlib_ng"):
            monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    writer_module._crc32.cache_clear()  # found again, as a new process finds it
    request.addfinalizer(writer_module._crc32.cache_clear)  # and by the tests after
    assert (writer_module._crc32() is zlib.crc32) is not zlib_ng
    data = random.Random(7).randbytes(9 << 20)
    path = tmp_path / "data"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset, count in [(0, 0), (0, 1), (3, 4096), (1, (4 << 20) + 5), (7, len(data) - 7)]:
            crc = writer_module._crc_range(fd, offset, count)
            assert crc == zlib.crc32(data[offset : offset + count])
        with pytest.raises(WriteError, match="ended early"):
            writer_module._crc_range(fd, len(data) - 10, 20)
    finally:
        os.close(fd)


@pytest.mark.parametrize("split", [True, False], ids=["two threads", "one thread"])
def test_a_big_entry_is_crc_checked_whole_on_two_threads_or_one(split, tmp_path, monkeypatch):
    """A stored entry over `_SPLIT` is checked in two halves on two threads
    (their CRCs combined), or on one by the child writing ahead: a byte
    changed in either half fails it."""
    import random

    from kerasrepair.archive import Limits, read_entries

    monkeypatch.setattr(writer_module, "_SPLIT", 1 << 20)
    monkeypatch.setattr(writer_module, "_CHUNK", 1 << 18)
    data = random.Random(3).randbytes((3 << 20) + 11)
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        zout.writestr("small.bin", b"small")
        zout.writestr("model.weights.h5", data)
    with zipfile.ZipFile(path) as zf:
        entries = read_entries(path, zf, Limits())
    writer_module._verify_crcs(path, None, entries, split=split)  # intact: no error
    big = next(e for e in entries if e.name == "model.weights.h5")
    for where in (10, big.size - 10):  # in the first half, then in the second
        damaged = bytearray(path.read_bytes())
        damaged[big.data_offset + where] ^= 0xFF
        other = tmp_path / f"damaged-{where}.zip"
        other.write_bytes(damaged)
        with pytest.raises(WriteError, match="model.weights.h5 fails its CRC check"):
            writer_module._verify_crcs(other, None, entries, split=split)


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


def _hold(path):
    """Open and lock `path` as a live run holds its temporary; returns the descriptor."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_killed_runs_temporary_is_cleaned_by_the_next_run(model_and_archive, tmp_path):
    """A killed run's temporary is one nobody holds locked: the next write to
    the target removes it at once (however young); a live run's (locked) and
    another target's stay."""
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    killed = tmp_path / ".out.keras.0badc0de.partial"
    live = tmp_path / ".out.keras.feedf00d.partial"  # another run's, writing now
    other = tmp_path / ".other.keras.0badc0de.partial"
    unrelated = tmp_path / ".out.keras.download.partial"  # not a name the writer makes
    for leftover in (killed, live, other, unrelated):
        leftover.write_bytes(b"half an archive")
    fd = _hold(live)
    try:
        with open_archive(source) as archive:
            write_archive(archive, target)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, other.name, unrelated.name, "out.keras"]
    )


def test_the_writer_holds_its_temporary_locked_while_it_writes(
    model_and_archive, tmp_path, monkeypatch
):
    _, source = model_and_archive
    seen = []
    real_verify = writer_module._verify

    def verify_and_look(path, *args):
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        writer_module.remove_leftovers(tmp_path / "out.keras")  # another run's clean-up
        seen.append(path.exists())
        return real_verify(path, *args)

    monkeypatch.setattr(writer_module, "_verify", verify_and_look)
    with open_archive(source) as archive:
        write_archive(archive, tmp_path / "out.keras")
    assert seen == [True]
    assert [p.name for p in tmp_path.iterdir()] == ["out.keras"]


def test_a_temporary_taken_by_a_clean_up_before_its_lock_is_made_again(tmp_path):
    """Between creating a temporary and locking it, another run's clean-up may
    take it for a killed run's and remove it: the writer then makes another."""
    made = []

    def create():
        path = tmp_path / f".out.keras.{len(made):08x}.partial"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        made.append(path)
        if len(made) == 1:
            writer_module.remove_leftovers(tmp_path / "out.keras")  # the race, made certain
        return path, fd

    path, fd = writer_module._locked(create)
    os.close(fd)
    assert made == [tmp_path / ".out.keras.00000000.partial", path]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_killed_runs_backups_and_weights_scratch_are_cleaned(model_and_archive, tmp_path):
    _, source = model_and_archive
    target = tmp_path / "out.keras"
    backup = tmp_path / "out.keras.kerasrepair-backup"
    scratch = tmp_path / ".kerasrepair-weights-k1lled00"
    live_scratch = tmp_path / ".kerasrepair-weights-a1ive000"
    for directory in (scratch, live_scratch):
        directory.mkdir()
        (directory / "model.weights.h5").write_bytes(b"half the weights")
    backup.write_bytes(b"the old archive")
    fd = _hold(live_scratch)
    try:
        with open_archive(source) as archive:
            write_archive(archive, target)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live_scratch.name, "out.keras"]


def test_leftover_clean_up_never_follows_a_link_or_opens_a_fifo(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / ".kerasrepair-weights-linked00").symlink_to(elsewhere)
    os.mkfifo(outdir / ".out.keras.0badc0de.partial")
    writer_module.remove_leftovers(outdir / "out.keras")
    assert (elsewhere / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in outdir.iterdir()) == [
        ".kerasrepair-weights-linked00",
        ".out.keras.0badc0de.partial",
    ]


def test_concurrent_writers_to_one_target(model_and_archive, tmp_path):
    """Writers to the same target at once: each renames a complete archive
    of its own; none removes another's temporary; nothing is left over."""
    from concurrent.futures import ThreadPoolExecutor

    _, source = model_and_archive
    target = tmp_path / "out.keras"
    with open_archive(source) as archive:
        configs = [_renamed_config(archive, f"writer_{n}") for n in range(6)]

        def write(config):
            return write_archive(archive, target, {"config.json": config})

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(write, configs * 3))
    assert [p.name for p in tmp_path.iterdir()] == ["out.keras"]
    with zipfile.ZipFile(target) as zf:
        assert zf.testzip() is None
        assert zf.read("config.json") in configs


def test_temporary_names_stay_within_the_name_limit(model_and_archive, tmp_path, monkeypatch):
    """A 251-byte target name (valid: the limit is 255) gets a temporary whose
    name is shortened with a digest, recognisable per target."""
    _, source = model_and_archive
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "é" * ((limit - 10) // 2) + ".keras"  # two bytes a letter
    target = tmp_path / name
    assert limit - 6 < len(os.fsencode(name)) <= limit
    temporaries = []
    real_verify = writer_module._verify

    def verify_and_look(path, *args):
        temporaries.append(path.name)
        return real_verify(path, *args)

    monkeypatch.setattr(writer_module, "_verify", verify_and_look)
    with open_archive(source) as archive:
        write_archive(archive, target, {"config.json": _renamed_config(archive)})
        write_archive(archive, target, {"config.json": _renamed_config(archive, "again")})
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert all(len(os.fsencode(t)) <= limit for t in temporaries)
    first, second = (t.rsplit(".", 2)[0] for t in temporaries)
    assert first == second  # the same name for the same target, a new token each run
    other = writer_module._fitted("ê" + name[1:], 18, limit)
    assert "." + other != first  # another long name gets another one


def test_without_file_locks_a_leftover_is_a_killed_runs_after_a_while(
    model_and_archive, tmp_path, monkeypatch
):
    """Where there is no flock (not POSIX), age decides, as it did before."""
    import time

    monkeypatch.setattr(writer_module, "fcntl", None)
    _, source = model_and_archive
    old, young = tmp_path / ".out.keras.0badc0de.partial", tmp_path / ".out.keras.feedf00d.partial"
    for leftover in (old, young):
        leftover.write_bytes(b"half an archive")
    then = time.time() - writer_module.STALE_AFTER - 60
    os.utime(old, (then, then))
    with open_archive(source) as archive:
        write_archive(archive, tmp_path / "out.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == [young.name, "out.keras"]
