"""Bad input gets one clear line (what, where, what to do), exit status 2, no
traceback and no output: each hostile file in fixtures/hostile/ in turn."""

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import HOSTILE, MODELS
from kerasrepair import ArchiveError, Limits, inspect_archive, open_archive
from kerasrepair.cli import app

# file -> words the one-line error must contain
REFUSED = {
    "empty.keras": "is empty (0 bytes)",
    "lfs_pointer.keras": "git lfs pull",
    "not_a_zip.keras": "is an HTML page",
    "truncated.keras": "truncated or damaged zip (no end-of-central-directory record",
    "duplicate_entries.keras": "appears more than once",
    "traversal.keras": "climbs out of the archive",
    "absolute_name.keras": "absolute path",
    "symlink_entry.keras": "symbolic link",
    "encrypted_entry.keras": "encrypted",
    "folder_prefix.keras": "under the folder 'mymodel/'",
    "no_config.keras": "has no config.json",
    "bad_json.keras": "is not valid JSON",
    "not_utf8.keras": "is not UTF-8",
    "deep_json.keras": "levels",
    "zip_bomb.keras": "zip bomb",
    "huge_declared_size.keras": "zip bomb",
    "config_not_object.keras": "not an object",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_one_clear_line(name):
    with pytest.raises(ArchiveError) as refused:
        inspect_archive(HOSTILE / name)
    message = str(refused.value)
    assert REFUSED[name] in message
    assert "\n" not in message
    assert message.startswith(str(HOSTILE / name))  # says where
    assert refused.value.hint  # says what to do


def test_json_errors_name_line_and_column():
    with pytest.raises(ArchiveError) as refused:
        open_archive(HOSTILE / "bad_json.keras")
    assert re.search(r"config\.json:3:\d+$", refused.value.where)


@pytest.mark.parametrize("name", ["zip_bomb.keras", "huge_declared_size.keras"])
def test_bombs_are_refused_before_decompressing(name, monkeypatch):
    import zipfile

    def no_decompressing(*args, **kwargs):
        raise AssertionError("an entry was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_decompressing)
    with pytest.raises(ArchiveError, match="zip bomb"):
        open_archive(HOSTILE / name)


def test_limits_are_configurable():
    healthy = MODELS / "sequential_mlp.keras"
    with pytest.raises(ArchiveError, match="over the limit of 2"):
        open_archive(healthy, Limits(max_entries=2))
    with open_archive(HOSTILE / "zip_bomb.keras", Limits(max_ratio=1e9)) as archive:
        assert archive.config


@pytest.mark.parametrize("name", ["h5_external_link.keras", "h5_soft_link.keras"])
def test_hdf5_links_are_reported_never_followed(name):
    report = inspect_archive(HOSTILE / name)
    problems = report["weights"]["problems"]
    assert problems, "the link must be reported"
    assert all("not followed" in p["problem"] for p in problems)
    assert any(w["kind"] == "weights_problem" for w in report["warnings"])
    # and `check` says it is an error (KR901), as it does for every hostile
    # weights file (tests/test_weights_reference.py)
    result = CliRunner().invoke(app, ["check", str(HOSTILE / name)])
    assert result.exit_code == 1 and "KR901 error" in result.output


def test_hdf5_external_storage_is_reported_not_read():
    report = inspect_archive(HOSTILE / "h5_external_storage.keras")
    assert any("external files" in p["problem"] for p in report["weights"]["problems"])


def test_directories_are_recognised(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ArchiveError, match="SavedModel directory"):
        open_archive(tmp_path)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_cli_exits_2_with_one_line_and_no_output(name, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kerasrepair", "inspect", str(HOSTILE / name)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kerasrepair: error: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_exit_2():
    result = CliRunner().invoke(app, ["inspect", "no/such/model.keras"])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_other_non_zip_files_and_unpacked_folders(tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00\x01not a model at all")
    with pytest.raises(ArchiveError, match="is not a zip archive"):
        open_archive(garbage)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    (unpacked / "config.json").write_text("{}")
    with pytest.raises(ArchiveError, match="unpacked .keras folder"):
        open_archive(unpacked)
