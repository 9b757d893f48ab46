"""The writer: raw copies, atomic output, deterministic bytes, input untouched."""

import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

from conftest import raw_entries, rezip
from kerasrepair import WriteError, open_archive, write_archive
from kerasrepair import writer as writer_module


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
        assert written.problems == ["metadata.json is missing (the Keras version is unknown)"]
