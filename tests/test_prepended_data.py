"""KR911: data before the zip's first entry. A zip is read from its end, so
Python's zipfile, and Keras with it, load a model that is also a shell script,
an executable or a web page: a polyglot, the classic way to smuggle one past a
check of the file's first bytes. kerasrepair reads it as Keras does, names
what is prepended, and `fix` writes the archive without it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS
from kerasrepair import check_archive, fix_archive, open_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import prepended_data

ORIGINAL = MODELS / "sequential_mlp.keras"


def _found(path: Path) -> list[tuple[str, str, str, str]]:
    return [(f.code, f.severity, f.location, f.message) for f in check_archive(path).findings]


def test_a_shell_script_before_the_zip():
    path = HOSTILE / "prepended_shell_script.keras"
    size = path.stat().st_size - ORIGINAL.stat().st_size
    assert _found(path) == [
        (
            "KR911",
            "error",
            f"bytes 0-{size - 1}",
            f"{size} bytes before the first entry of the zip: a shell script (b'#!/bin/sh')",
        )
    ]
    ran = CliRunner().invoke(app, ["check", str(path)])
    assert ran.exit_code == 1 and "KR911 error" in ran.output


def test_an_executable_before_the_zip():
    path = HOSTILE / "prepended_elf.keras"
    head = path.read_bytes()[:32]
    assert _found(path) == [
        (
            "KR911",
            "error",
            "bytes 0-63",
            f"64 bytes before the first entry of the zip: an ELF executable ({head!r})",
        )
    ]


def test_keras_loads_such_a_file(keras):
    """Why it matters: the file is a working model (and something else)."""
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    original = keras.saving.load_model(ORIGINAL).predict(x, verbose=0)
    polyglot = keras.saving.load_model(HOSTILE / "prepended_shell_script.keras")
    np.testing.assert_array_equal(polyglot.predict(x, verbose=0), original)


def test_fix_writes_the_archive_without_them(tmp_path):
    """The entries are copied from the first one on: nothing else to repair,
    the output is the model Keras saved, byte for byte, and `check` finds
    nothing in it. `fix` says what it dropped, and nothing is left."""
    out = tmp_path / "out.keras"
    result = fix_archive(HOSTILE / "prepended_shell_script.keras", out)
    assert [c.code for c in result.changes] == ["KR911"] and result.remaining == []
    assert "not written: " in result.changes[0].description
    assert out.read_bytes() == ORIGINAL.read_bytes()
    assert _found(out) == []


def test_offsets_counted_from_the_prefix_are_read_too(tmp_path):
    """`zip -A` (or zipfile appending to a non-zip file) writes offsets from the
    start of the file, prefix included, where a plain concatenation leaves them
    from the start of the zip: zipfile reads both, and so does kerasrepair."""
    path = tmp_path / "appended.keras"
    path.write_bytes(b"MZ" + bytes(126))
    with zipfile.ZipFile(ORIGINAL) as source, zipfile.ZipFile(path, "a") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
    assert _found(path)[0][2:] == (
        "bytes 0-127",
        f"128 bytes before the first entry of the zip: a Windows (PE) executable "
        f"({(b'MZ' + bytes(30))!r})",
    )
    out = tmp_path / "out.keras"
    fix_archive(path, out)
    with zipfile.ZipFile(out) as fixed, zipfile.ZipFile(ORIGINAL) as original:
        assert fixed.testzip() is None
        assert {i.filename: fixed.read(i) for i in fixed.infolist()} == {
            i.filename: original.read(i) for i in original.infolist()
        }
    assert out.read_bytes()[:4] == b"PK\x03\x04" and _found(out) == []


def test_an_hdf5_model_with_a_zip_behind_it_is_read_as_keras_reads_it(tmp_path):
    """Keras reads a `.keras` name as a zip, an `.h5` name as HDF5: so does
    kerasrepair, and the `.keras` one says an HDF5 file is prepended."""
    legacy = FIXTURES / "keras2" / "mlp_trained.h5"
    polyglot = legacy.read_bytes() + ORIGINAL.read_bytes()
    as_keras, as_h5 = tmp_path / "both.keras", tmp_path / "both.h5"
    as_keras.write_bytes(polyglot)
    as_h5.write_bytes(polyglot)
    [(code, _, location, message)] = _found(as_keras)
    assert code == "KR911" and location == f"bytes 0-{legacy.stat().st_size - 1}"
    assert ": an HDF5 file (" in message
    with open_archive(as_keras) as archive, open_archive(ORIGINAL) as original:
        assert archive.format == "keras" and archive.config == original.config
    with open_archive(as_h5) as archive:
        assert archive.format == "h5" and archive.prepended == 0


@pytest.mark.parametrize(
    "head, what",
    [
        (b"#!/usr/bin/env bash\necho hi\n", "a shell script (b'#!/usr/bin/env bash')"),
        (b"#!/usr/bin/python3\nprint(1)\n", "a script (b'#!/usr/bin/python3')"),
        (b"\n  <!DOCTYPE html><html>", "an HTML page (b'\\n  <!DOCTYPE html><html>')"),
        (b"MZ\x90\x00", "a Windows (PE) executable (b'MZ\\x90\\x00')"),
        (b"\xcf\xfa\xed\xfe\x07", "a Mach-O executable (b'\\xcf\\xfa\\xed\\xfe\\x07')"),
        (b"PK\x03\x04\x14\x00", "another zip archive (b'PK\\x03\\x04\\x14\\x00')"),
        (b"%PDF-1.7", "a PDF document (b'%PDF-1.7')"),
        (b"\x00\x01hello", "unknown data (b'\\x00\\x01hello')"),
    ],
)
def test_what_is_prepended_is_named_and_its_first_bytes_shown_escaped(head, what):
    assert prepended_data.describe(head) == what


def test_an_html_page_with_no_zip_behind_it_is_still_refused_as_a_page():
    ran = CliRunner().invoke(app, ["check", str(HOSTILE / "not_a_zip.keras")])
    assert ran.exit_code == 2 and "is an HTML page" in ran.output


def test_archives_real_releases_saved_start_with_their_first_entry():
    real = [
        p for p in FIXTURES.rglob("*.keras") if "hostile" not in p.parts and ".venvs" not in p.parts
    ]
    assert len(real) > 100
    for path in real:
        with open_archive(path) as archive:
            assert archive.prepended == 0, path
            assert prepended_data.detect(Context(archive, archive.config)) == []
