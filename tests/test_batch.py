"""`kerasrepair batch`: a zoo of real archives (fixtures saved by real releases,
healthy, repairable, unrepairable, hostile, duplicated), checked and repaired in
worker processes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, MODELS
from kerasrepair import BatchSettings, batch, check_archive
from kerasrepair.cli import app

RELEASES = FIXTURES / "releases"
# name in the zoo -> (source, status for --keras 3.6)
ZOO = {
    "team/sequential_mlp.keras": (MODELS / "sequential_mlp.keras", "fixed"),
    "team/deep/layer_zoo.keras": (RELEASES / "keras-3.15.1" / "layer_zoo.keras", "fixed"),
    "lambda_global.keras": (MODELS / "lambda_global.keras", "unfixable"),
    "subclassed.keras": (MODELS / "subclassed.keras", "clean"),
    "old/nested.keras": (RELEASES / "keras-3.6.0" / "sequential_nested_functional.keras", "clean"),
}


def _zoo(root):
    for name, (source, _) in ZOO.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / name)
    return root


def _digests(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def _lines(report):
    return [json.loads(line) for line in report.read_text().splitlines()]


def test_a_zoo_is_repaired_into_a_mirror_of_its_tree(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    before = _digests(zoo)
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    ran = _run("batch", zoo, "-o", out, "--keras", "3.6", "--report", report, "--jobs", "2")
    assert ran.exit_code == 1, ran.output  # lambda_global is unfixable
    assert _digests(zoo) == before  # the source is never written
    records = {os.path.relpath(r["path"], zoo): r for r in _lines(report)}
    assert {name: r["status"] for name, r in records.items()} == {
        name: status for name, (_, status) in ZOO.items()
    }
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.keras"))
    assert written == ["team/deep/layer_zoo.keras", "team/sequential_mlp.keras"]
    for name in written:  # what batch calls fixed, check calls clean for the target
        errors = [f for f in check_archive(out / name, "3.6").findings if f.severity == "error"]
        assert errors == [], name
        assert records[name]["output"] == str(out / name) and "KR203" in records[name]["codes"]
    assert records["lambda_global.keras"]["codes"] == ["KR203", "KR501", "KR903"]
    assert all(
        r["sha256"] == before[name] and r["target"] == "3.6.0" for name, r in records.items()
    )
    assert "5 archives: 2 clean, 2 fixed, 1 unfixable" in ran.output


def test_bad_files_duplicates_and_links_out_never_stop_the_run(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    shutil.copyfile(FIXTURES / "hostile" / "absolute_name.keras", zoo / "hostile.keras")
    shutil.copyfile(zoo / "subclassed.keras", zoo / "old" / "copy_of_subclassed.keras")
    (zoo / "truncated.keras").write_bytes((zoo / "subclassed.keras").read_bytes()[:300])
    os.mkfifo(zoo / "fifo.keras")  # would block open(): never opened
    (zoo / "outside.keras").symlink_to(MODELS / "sequential_mlp.keras")  # a link out
    report = tmp_path / "report.jsonl"
    ran = _run("batch", zoo, "-o", tmp_path / "out", "--keras", "3.6", "--report", report)
    assert ran.exit_code == 2, ran.output  # errors
    records = {os.path.relpath(r["path"], zoo): r for r in _lines(report)}
    assert "fifo.keras" not in records and "outside.keras" not in records
    assert records["hostile.keras"]["status"] == "error"
    assert "absolute path" in records["hostile.keras"]["error"]
    assert records["truncated.keras"]["status"] == "error"
    assert "\n" not in records["truncated.keras"]["error"]
    duplicate = records["old/copy_of_subclassed.keras"]
    assert duplicate["status"] == "duplicate"
    assert duplicate["duplicate_of"] == str(zoo / "subclassed.keras")
    assert records["team/sequential_mlp.keras"]["status"] == "fixed"
    assert len(records) == len(ZOO) + 3
    assert "Traceback" not in ran.output


def test_check_only_writes_nothing_and_says_what_fix_would_do(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    ran = _run("batch", zoo, "--check-only", "--keras", "3.6", "--report", tmp_path / "r.jsonl")
    assert ran.exit_code == 1, ran.output
    statuses = {os.path.relpath(r["path"], zoo): r["status"] for r in _lines(tmp_path / "r.jsonl")}
    expected = {name: status for name, (_, status) in ZOO.items()}
    assert statuses == {n: "fixable" if s == "fixed" else s for n, s in expected.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "zoo"]


def test_resume_skips_what_the_report_has_and_redoes_what_changed(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    first = _run("batch", zoo, "-o", out, "--keras", "3.6", "--report", report)
    assert first.exit_code == 1 and len(_lines(report)) == len(ZOO)
    shutil.copyfile(RELEASES / "keras-3.15.1" / "ops_graph.keras", zoo / "subclassed.keras")
    again = _run("batch", zoo, "-o", out, "--keras", "3.6", "--report", report, "--resume")
    lines = _lines(report)
    assert len(lines) == len(ZOO) + 1, again.output
    assert lines[-1]["path"] == str(zoo / "subclassed.keras") and lines[-1]["status"] == "fixed"
    assert f"({len(ZOO) - 1} done before, skipped)" in again.output
    # other settings: nothing is skipped
    other = _run("batch", zoo, "--check-only", "--report", report, "--resume")
    assert len(_lines(report)) == 2 * len(ZOO) + 1, other.output


def test_an_archive_over_the_timeout_is_killed_and_the_run_goes_on(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    report = tmp_path / "report.jsonl"
    ran = _run("batch", zoo, "--check-only", "--timeout", "0.000001", "--report", report, "-j", "2")
    assert ran.exit_code == 2, ran.output
    lines = _lines(report)
    assert len(lines) == len(ZOO)  # each killed worker was replaced
    assert {r["status"] for r in lines} == {"error"}
    assert all("no result after" in r["error"] for r in lines)


def test_sources_as_a_listing_stdin_and_a_glob(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    listing = tmp_path / "models.txt"
    listing.write_text(
        f"# two of them\n{zoo / 'subclassed.keras'}\n\n{zoo / 'lambda_global.keras'}\n"
    )
    by_list = list(batch([str(listing)], BatchSettings(), jobs=1))
    assert sorted(os.path.basename(r["path"]) for r in by_list) == [
        "lambda_global.keras",
        "subclassed.keras",
    ]
    ran = _run("batch", "-", "--check-only", input=f"{zoo / 'subclassed.keras'}\n")
    assert ran.exit_code == 0 and "1 archives: 1 clean" in ran.output, ran.output
    by_glob = list(batch([str(zoo / "team" / "**" / "*.keras")], BatchSettings(), jobs=1))
    assert len(by_glob) == 2


def test_copy_clean_copies_byte_for_byte(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    out = tmp_path / "out"
    ran = _run("batch", zoo, "-o", out, "--keras", "3.6", "--copy-clean")
    assert ran.exit_code == 1, ran.output
    assert (out / "subclassed.keras").read_bytes() == (zoo / "subclassed.keras").read_bytes()
    assert not (out / "lambda_global.keras").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{zoo}/fixed"], "inside it"),
        ([], "give -o OUTDIR, or --check-only"),
        (["--check-only", "--resume"], "--resume reads the --report"),
        (["--check-only", "--keras", "9.9"], "--keras 9.9"),
    ],
)
def test_usage_errors_write_nothing(tmp_path, args, message):
    zoo = _zoo(tmp_path / "zoo")
    before = _digests(tmp_path)
    ran = _run("batch", zoo, *[a.format(zoo=zoo) for a in args])
    assert ran.exit_code == 2 and message in ran.output, ran.output
    assert _digests(tmp_path) == before


@pytest.mark.parametrize("report", ["team/sequential_mlp.keras", "listing.txt", "directory"])
def test_a_report_that_appending_would_change_is_refused_before_the_run(tmp_path, report):
    """--report names one of the inputs, a listing of them, or a directory:
    one line, exit 2, and nothing written or changed."""
    zoo = _zoo(tmp_path / "zoo")
    (zoo / "listing.txt").write_text(f"{zoo / 'subclassed.keras'}\n")
    (zoo / "directory").mkdir()
    before = _digests(tmp_path)
    ran = _run("batch", zoo, "-o", tmp_path / "out", "--report", zoo / report)
    assert ran.exit_code == 2, ran.output
    assert ran.output.startswith(f"kerasrepair: error: {zoo / report}: is ")
    assert ran.output.count("\n") == 1
    assert _digests(tmp_path) == before and not (tmp_path / "out").exists()


def test_a_report_fifo_is_refused_without_waiting_for_a_reader(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    os.mkfifo(tmp_path / "report")
    ran = _run("batch", zoo, "--check-only", "--report", tmp_path / "report", "--resume")
    assert ran.exit_code == 2 and "is a FIFO, not a regular file" in ran.output, ran.output


def test_a_report_a_killed_run_began_is_appended_to(tmp_path):
    """A first line cut short (the run killed while writing it) is a report:
    the next run appends its lines after it, on lines of their own, which
    the run after that resumes from."""
    zoo = _zoo(tmp_path / "zoo")
    report = tmp_path / "r.jsonl"
    report.write_text('{"path": "cut sh')
    ran = _run("batch", zoo, "--check-only", "--report", report, "--resume")
    assert ran.exit_code == 1, ran.output
    cut, *lines = report.read_text().splitlines()
    assert cut == '{"path": "cut sh'
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(
        str(zoo / name) for name in ZOO
    )
    again = _run("batch", zoo, "--check-only", "--report", report, "--resume")
    assert len(report.read_text().splitlines()) == 1 + len(ZOO), again.output


def test_nothing_to_do_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    ran = _run("batch", tmp_path / "empty", "--check-only")
    assert ran.exit_code == 2 and "0 archives" in ran.output, ran.output
    missing = _run("batch", tmp_path / "nope*.keras", "--check-only")
    assert missing.exit_code == 2 and "no such file" in missing.output


def _workers() -> set[int]:
    """The worker processes of a run in this process (Linux /proc): its
    children that run multiprocessing's spawn_main."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return {pid for pid in children.get(os.getpid(), []) if b"spawn_main" in _command_line(pid)}


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_workers_killed_mid_run_are_recorded_and_replaced(tmp_path):
    """Every worker is killed (SIGKILL) once the first archive is done: the
    archive one held is an `error` line, the others are done by new workers."""
    import signal

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    sources = sorted(RELEASES.glob("keras-3.*/layer_zoo.keras"))
    for number, source in enumerate(sources):
        shutil.copyfile(source, zoo / f"{number}.keras")
    results, killed = [], set()
    for record in batch([str(zoo)], BatchSettings(), jobs=2):
        results.append(record)
        if not killed:
            killed = _workers()
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
    assert len(killed) == 2, killed
    assert sorted(os.path.basename(r["path"]) for r in results) == sorted(
        f"{number}.keras" for number in range(len(sources))
    )
    died = [r for r in results if r["status"] == "error"]
    assert all(r["error"].startswith("the worker died") for r in died), died
    assert len(died) <= 2  # what the two held when killed; new workers did the rest
    assert all(r["status"] == "clean" for r in results if r not in died)
    assert len(results) - len(died) >= len(sources) - 2 >= 10
