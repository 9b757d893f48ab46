"""Where `fix` and `batch` write: nothing is ever lost.

`-o` naming the input (by inode: another spelling, a hard link, a symbolic
link to it) is refused, and so is `-o` onto a symbolic link (the rename would
replace the link, not the file it names: refusing is the safe answer), a
directory, a FIFO or a device, before anything is written. `--in-place` on a
symbolic link repairs the file it names and keeps the link. A valid 251-byte
file name can be written, in place too (the temporary and backup names are
shortened). `batch` refuses the same outputs per archive and removes what a
killed run left beside the outputs it writes.
"""

import fcntl
import hashlib
import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from conftest import MODELS, rezip
from kerasrepair import open_archive
from kerasrepair.cli import app

BROKEN = MODELS / "numpy_rescaling.keras"  # `fix --keras 3.4` repairs it (KR601, KR203)


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.keras"
    shutil.copyfile(BROKEN, path)
    return path


def _refused(result, *words):
    """Exit 2 and one line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0]


def _repaired(path):
    with open_archive(path) as archive:
        return archive.config["config"]["layers"][1]["config"]["scale"] == [
            0.00392156862745098,
            0.00784313725490196,
            0.5,
            2.0,
        ]


# ------------------------------------------------------------------ -o the input


@pytest.mark.parametrize("spelling", ["same", "dotted", "hard_link", "symlink"])
def test_output_that_is_the_input_is_refused(model, spelling, monkeypatch):
    directory = model.parent
    monkeypatch.chdir(directory)
    output = {
        "same": model,
        "dotted": "./sub/../model.keras",
        "hard_link": directory / "hard.keras",
        "symlink": directory / "link.keras",
    }[spelling]
    (directory / "sub").mkdir()
    if spelling == "hard_link":
        os.link(model, output)
    elif spelling == "symlink":
        os.symlink(model, output)
    before, listing = _digest(model), _listing(directory)
    result = _run("fix", "model.keras", "-o", output, "--keras", "3.4")
    _refused(result, "is the input itself", "--in-place")
    assert _digest(model) == before
    assert _listing(directory) == listing


# ------------------------------------------------------------------ -o what is not a regular file


def test_output_onto_a_symlink_is_refused_and_neither_link_nor_file_changes(model, tmp_path):
    other = tmp_path / "other.keras"
    other.write_bytes(b"someone else's file")
    link = tmp_path / "out.keras"
    link.symlink_to(other)
    listing = _listing(tmp_path)
    result = _run("fix", model, "-o", link, "--keras", "3.4")
    _refused(result, str(link), "is a symbolic link", "replace the link")
    assert link.is_symlink() and os.readlink(link) == str(other)
    assert other.read_bytes() == b"someone else's file"
    assert _listing(tmp_path) == listing


def test_output_onto_a_dangling_symlink_is_refused(model, tmp_path):
    link = tmp_path / "out.keras"
    link.symlink_to(tmp_path / "nowhere.keras")
    _refused(_run("fix", model, "-o", link, "--keras", "3.4"), "is a symbolic link")
    assert not (tmp_path / "nowhere.keras").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_output_onto_what_is_not_a_regular_file_is_refused(model, tmp_path, kind):
    if kind == "directory":
        output = tmp_path / "out.keras"
        output.mkdir()
        words = "is a directory, not a regular file"
    elif kind == "fifo":
        output = tmp_path / "out.keras"
        os.mkfifo(output)
        words = "is a FIFO, not a regular file"
    else:
        output = "/dev/null"
        words = "/dev/null: is a character device, not a regular file"
    listing = _listing(tmp_path)
    _refused(_run("fix", model, "-o", output, "--keras", "3.4"), words)
    assert _listing(tmp_path) == listing


def test_the_api_refuses_a_symlink_output_too(model, tmp_path):
    from kerasrepair import ArchiveError, fix_archive
    from kerasrepair.context import Options

    link = tmp_path / "out.keras"
    link.symlink_to(tmp_path / "elsewhere.keras")
    with pytest.raises(ArchiveError, match="is a symbolic link"):
        fix_archive(model, link, Options(keras="3.4"))
    assert link.is_symlink() and not (tmp_path / "elsewhere.keras").exists()


# ------------------------------------------------------------------ --in-place


def test_in_place_on_a_symlink_repairs_the_file_and_keeps_the_link(model, tmp_path):
    """The link lives in another directory than the file: the file is repaired
    beside itself (its backup too), the link stays a link to it."""
    links = tmp_path / "links"
    links.mkdir()
    link = links / "current.keras"
    link.symlink_to(model)
    result = _run("fix", link, "--in-place", "--keras", "3.4")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(model)
    assert _repaired(model)
    assert _listing(links) == ["current.keras"]
    assert _listing(tmp_path) == ["links", "model.keras"]  # no backup, no temporary


def test_in_place_removes_a_killed_runs_backup(model, tmp_path):
    stale = tmp_path / "model.keras.kerasrepair-backup"
    os.link(model, stale)  # killed before its rename: the backup is the input itself
    result = _run("fix", model, "--in-place", "--keras", "3.4")
    assert result.exit_code == 0, result.output
    assert _listing(tmp_path) == ["model.keras"]
    assert _repaired(model)


def test_in_place_on_a_file_another_run_holds_is_refused(model, tmp_path):
    backup = tmp_path / "model.keras.kerasrepair-backup"
    os.link(model, backup)
    fd = os.open(backup, os.O_RDONLY)  # a live --in-place run: its lock is on the inode
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        before = _digest(model)
        result = _run("fix", model, "--in-place", "--keras", "3.4")
    finally:
        os.close(fd)
    _refused(result, "nothing was written", "another --in-place repair")
    assert _digest(model) == before
    assert _listing(tmp_path) == ["model.keras", "model.keras.kerasrepair-backup"]


# ------------------------------------------------------------------ long names


def test_a_251_byte_name_is_written_with_o_and_in_place(model, tmp_path):
    name = "m" * 245 + ".keras"
    assert len(name) == 251 <= os.pathconf(tmp_path, "PC_NAME_MAX")
    result = _run("fix", model, "-o", tmp_path / name, "--keras", "3.4")
    assert result.exit_code == 0, result.output
    assert _repaired(tmp_path / name)
    shutil.copyfile(BROKEN, tmp_path / name)
    result = _run("fix", tmp_path / name, "--in-place", "--keras", "3.4")
    assert result.exit_code == 0, result.output
    assert _repaired(tmp_path / name)
    assert _listing(tmp_path) == sorted([name, "model.keras"])


def test_a_251_byte_keras2_name_is_converted_through_the_weights_scratch(tmp_path):
    """The Keras 2 conversion writes re-laid weights to a scratch directory
    beside the target, with a short name of its own."""
    from conftest import FIXTURES

    name = "k" * 245 + ".keras"
    result = _run("fix", FIXTURES / "keras2" / "mlp_trained.h5", "-o", tmp_path / name)
    assert result.exit_code == 0, result.output
    assert _listing(tmp_path) == [name]


# ------------------------------------------------------------------ batch


def test_batch_refuses_outputs_that_are_links_or_the_input(tmp_path, monkeypatch):
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    zoo.mkdir()
    out.mkdir()
    shutil.copyfile(BROKEN, zoo / "a.keras")
    rezip(BROKEN, zoo / "b.keras")  # the same model, another sha256 (not a duplicate)
    (out / "a.keras").symlink_to(tmp_path / "elsewhere.keras")
    result = _run(
        "batch", zoo, "-o", out, "--keras", "3.4", "-j", "1", "--report", tmp_path / "r.jsonl"
    )
    assert result.exit_code == 2, result.output
    assert (out / "a.keras").is_symlink() and not (tmp_path / "elsewhere.keras").exists()
    assert _repaired(out / "b.keras")

    monkeypatch.chdir(zoo)  # mirrored under OUTDIR = the working directory: itself
    before = _digest(zoo / "b.keras")
    report = tmp_path / "again.jsonl"
    result = _run("batch", "b.keras", "-o", ".", "--keras", "3.4", "-j", "1", "--report", report)
    assert result.exit_code == 2, result.output
    (record,) = map(json.loads, report.read_text().splitlines())
    assert record["status"] == "error"
    assert record["error"].endswith(
        "b.keras: is the input itself; write the repair to another "
        "path, or use --in-place to replace the input"
    )
    assert _digest(zoo / "b.keras") == before


def test_batch_removes_what_a_killed_run_left_beside_its_outputs(tmp_path):
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    (zoo / "deep").mkdir(parents=True)
    (out / "deep").mkdir(parents=True)
    shutil.copyfile(MODELS / "sequential_mlp.keras", zoo / "deep" / "clean.keras")
    killed = [
        out / "deep" / ".clean.keras.0badc0de.partial",
        out / "deep" / ".kerasrepair-weights-k1lled00",
    ]
    killed[0].write_bytes(b"half an archive")
    killed[1].mkdir()
    live = out / "deep" / ".clean.keras.feedf00d.partial"
    live.write_bytes(b"another run writing now")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:  # a clean archive: nothing is written, the leftovers go all the same
        result = _run("batch", zoo, "-o", out, "-j", "1")
    finally:
        os.close(fd)
    assert result.exit_code == 0, result.output
    assert _listing(out / "deep") == [live.name]


# ------------------------------------------------------------------ reports


def test_a_sarif_report_onto_the_input_or_a_link_is_refused_before_checking(model, tmp_path):
    before = _digest(model)
    _refused(_run("check", model, "--sarif", model), "is the input itself")
    assert _digest(model) == before
    link = tmp_path / "report.sarif"
    link.symlink_to(tmp_path / "elsewhere.sarif")
    result = _run("check", model, "--keras", "3.4", "--sarif", link)
    _refused(result, "report.sarif: is a symbolic link")
    assert result.stdout == ""  # refused before any archive is checked
    assert link.is_symlink() and not (tmp_path / "elsewhere.sarif").exists()
    written = tmp_path / "written.sarif"
    assert _run("check", model, "--keras", "3.4", "--sarif", written).exit_code == 1
    assert json.loads(written.read_text())["version"] == "2.1.0"


def test_an_html_page_onto_a_fifo_is_refused_before_the_run(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copyfile(BROKEN, zoo / "a.keras")
    fifo = tmp_path / "page.html"
    os.mkfifo(fifo)
    report = tmp_path / "r.jsonl"
    result = _run("batch", zoo, "--check-only", "--html", fifo, "--report", report)
    _refused(result, "page.html: is a FIFO, not a regular file")
    assert not report.exists()  # nothing ran
    assert fifo.is_fifo()
