"""`kerasrepair batch` with fsspec URLs: sources and OUTDIR on `memory://` (an
object store that lives in this process) and `file://`; archives at a URL are
repaired from a local copy, and what is written is streamed to its URL."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pytest
from distributed import LocalCluster
from typer.testing import CliRunner

from conftest import HOSTILE, MODELS
from kerasrepair import check_archive, remote
from kerasrepair.cli import app
from kerasrepair.zoo import Job, Settings, archives, run_one

# name in the zoo -> (source, status for --keras 3.6)
ZOO = {
    "team/sequential_mlp.keras": (MODELS / "sequential_mlp.keras", "fixed"),
    "lambda_global.keras": (MODELS / "lambda_global.keras", "unfixable"),
    "subclassed.keras": (MODELS / "subclassed.keras", "clean"),
    "bad/absolute_name.keras": (HOSTILE / "absolute_name.keras", "error"),
}
MEMORY = fsspec.filesystem("memory")


@pytest.fixture
def bucket():
    """A fresh `memory://` prefix with the zoo under `zoo/` (and a file that
    is not an archive); removed afterwards."""
    root = f"/test-{uuid.uuid4().hex[:8]}"
    for name, (source, _) in ZOO.items():
        MEMORY.pipe(f"{root}/zoo/{name}", source.read_bytes())
    MEMORY.pipe(f"{root}/zoo/notes.txt", b"not an archive")
    yield f"memory://{root.lstrip('/')}"
    MEMORY.rm(root, recursive=True)


@pytest.fixture(scope="module")
def threads():
    """A LocalCluster of threads: its workers share this process's memory://
    (worker processes, the local executor's too, each have their own)."""
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _records(report, root):
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    return {r["path"].removeprefix(str(root)).lstrip("/"): r for r in lines}


def _local(url, tmp_path):
    """A local copy of what is at a memory:// URL, to check it."""
    copy = tmp_path / f"copy-{uuid.uuid4().hex[:6]}.keras"
    copy.write_bytes(MEMORY.cat(url))
    return copy


def test_a_memory_zoo_is_repaired_into_memory(bucket, threads, tmp_path):
    before = {p: MEMORY.cat(p) for p in MEMORY.find(bucket)}
    report = tmp_path / "report.jsonl"
    ran = _run("batch", f"{bucket}/zoo", "-o", f"{bucket}/out", "--keras", "3.6", "--copy-clean",
               "--report", report, "--executor", "dask", "--scheduler", threads)  # fmt: skip
    assert ran.exit_code == 2, ran.output  # the hostile archive
    records = _records(report, f"{bucket}/zoo")
    assert {n: r["status"] for n, r in records.items()} == {n: s for n, (_, s) in ZOO.items()}
    for name, record in records.items():
        assert record["sha256"] == hashlib.sha256(ZOO[name][0].read_bytes()).hexdigest()
        assert record["bytes"] == ZOO[name][0].stat().st_size
    assert sorted(MEMORY.find(f"{bucket}/out")) == [
        f"/{bucket[9:]}/out/subclassed.keras",
        f"/{bucket[9:]}/out/team/sequential_mlp.keras",
    ]
    fixed = records["team/sequential_mlp.keras"]["output"]
    assert fixed == f"{bucket}/out/team/sequential_mlp.keras"
    errors = [f for f in check_archive(_local(fixed, tmp_path), "3.6").findings]
    assert [f for f in errors if f.severity == "error"] == []
    assert "KR203" in records["team/sequential_mlp.keras"]["codes"]
    clean = records["subclassed.keras"]["output"]
    assert MEMORY.cat(clean) == ZOO["subclassed.keras"][0].read_bytes()
    bad = records["bad/absolute_name.keras"]
    assert bad["error"].startswith(f"{bucket}/zoo/bad/absolute_name.keras:"), bad["error"]
    assert "absolute path" in bad["error"] and bad["output"] is None
    assert all(MEMORY.cat(p) == data for p, data in before.items())  # the source is read only


def test_a_local_zoo_into_a_memory_outdir_and_back(bucket, threads, tmp_path):
    zoo = tmp_path / "zoo"
    for name, (source, _) in ZOO.items():
        (zoo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, zoo / name)
    report = tmp_path / "r.jsonl"
    ran = _run("batch", zoo, "-o", f"{bucket}/fixed/", "--keras", "3.6", "--report", report,
               "--executor", "dask", "--scheduler", threads)  # fmt: skip
    assert ran.exit_code == 2, ran.output
    records = _records(report, zoo)
    assert records["team/sequential_mlp.keras"]["output"] == (
        f"{bucket}/fixed/team/sequential_mlp.keras"
    )
    assert MEMORY.find(f"{bucket}/fixed") == [f"/{bucket[9:]}/fixed/team/sequential_mlp.keras"]
    # one archive at a URL, repaired into a local OUTDIR (its bucket path mirrored)
    url = f"{bucket}/zoo/team/sequential_mlp.keras"
    out = tmp_path / "local-out"
    (path, output), *rest = archives([url], str(out))
    assert not rest and path == url and output == out / bucket[9:] / "zoo/team/sequential_mlp.keras"
    record = run_one(Job(path, str(output), *remote.sha256(url)), Settings(str(out), "3.6"))
    assert record["status"] == "fixed" and record["output"] == str(output)
    assert [f for f in check_archive(output, "3.6").findings if f.severity == "error"] == []
    assert output.read_bytes() == MEMORY.cat(records["team/sequential_mlp.keras"]["output"])


def test_file_urls_are_the_local_paths_they_name(tmp_path):
    zoo = tmp_path / "zoo"
    for name, (source, _) in ZOO.items():
        (zoo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, zoo / name)
    (zoo / "outside.keras").symlink_to(MODELS / "sequential_mlp.keras")  # a link out: skipped
    report, out = tmp_path / "r.jsonl", tmp_path / "out"
    ran = _run("batch", f"file://{zoo}", "-o", f"file://{out}", "--keras", "3.6", "-j", "2",
               "--report", report)  # fmt: skip
    assert ran.exit_code == 2, ran.output
    records = _records(report, zoo)
    assert {n: r["status"] for n, r in records.items()} == {n: s for n, (_, s) in ZOO.items()}
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.keras")) == [
        "team/sequential_mlp.keras"
    ]
    refused = _run("batch", f"file://{zoo}", "-o", f"file://{zoo}/fixed")
    assert refused.exit_code == 2 and "inside it" in refused.output


def test_url_sources_globs_listings_and_refusals(bucket, tmp_path):
    zoo = f"{bucket}/zoo"
    found = list(archives([zoo], f"{bucket}/out"))
    assert [(p, o) for p, o in found] == [
        (f"{zoo}/{name}", f"{bucket}/out/{name}") for name in sorted(ZOO)
    ]  # notes.txt is not an archive; a directory's archives keep their relative path
    globbed = [p for p, _ in archives([f"{zoo}/**/*.keras"], None)]
    assert sorted(p.rsplit("/", 1)[1] for p in globbed) == sorted(n.rsplit("/")[-1] for n in ZOO)
    MEMORY.pipe(f"{bucket}/list.txt", f"# two\n{zoo}/subclassed.keras\n\n{zoo}/x.h5\n".encode())
    listed = list(archives([f"{bucket}/list.txt"], str(tmp_path / "o")))
    assert listed == [
        (f"{zoo}/subclassed.keras", tmp_path / "o" / bucket[9:] / "zoo/subclassed.keras"),
        (f"{zoo}/x.h5", tmp_path / "o" / bucket[9:] / "zoo/x.h5"),
    ]
    for args, message in [
        ([zoo, "-o", f"{zoo}/fixed"], "inside it"),
        ([zoo, "-o", f"{zoo}/"], "inside it"),
        ([f"{bucket}/nothing-here", "--check-only"], "no such file, directory or match"),
        (["nosuchprotocol://x/y.keras", "--check-only"], "nosuchprotocol://x/y.keras:"),
    ]:
        ran = _run("batch", *args)
        assert ran.exit_code == 2 and message in ran.output, (args, ran.output)
    assert not MEMORY.exists(f"{zoo}/fixed")


def test_copies_and_uploads_stream_and_leave_nothing_behind(bucket, tmp_path):
    url = f"{bucket}/zoo/team/sequential_mlp.keras"
    data = MEMORY.cat(url)
    assert remote.sha256(url) == (hashlib.sha256(data).hexdigest(), len(data))
    with pytest.raises(FileNotFoundError):
        remote.sha256(f"{bucket}/zoo/missing.keras")
    with pytest.raises(FileNotFoundError):
        remote.sha256(f"{bucket}/zoo")  # a directory
    with remote.local_copy(url) as copy:
        assert os.path.basename(copy) == "sequential_mlp.keras"
        assert Path(copy).read_bytes() == data
    assert not os.path.exists(copy) and not os.path.exists(os.path.dirname(copy))
    local = str(tmp_path / "plain.keras")
    with remote.local_copy(local) as same:  # a plain path is itself, no copy
        assert same == local
    # staged: uploaded at the end of the block, and only if it ends well
    with remote.staged(f"{bucket}/up/new.keras") as scratch:
        with open(scratch, "wb") as f:
            f.write(data)
        assert not MEMORY.exists(f"{bucket}/up/new.keras")
    assert MEMORY.cat(f"{bucket}/up/new.keras") == data and not os.path.exists(scratch)
    with pytest.raises(RuntimeError), remote.staged(f"{bucket}/up/failed.keras") as scratch:
        with open(scratch, "wb") as f:
            f.write(data)
        raise RuntimeError("a failed repair")
    assert not MEMORY.exists(f"{bucket}/up/failed.keras")
    with remote.staged(f"{bucket}/up/nothing.keras"):
        pass  # nothing written (a withheld port): nothing uploaded
    assert not MEMORY.exists(f"{bucket}/up/nothing.keras")
    with remote.staged(None) as none, remote.staged(local) as path:
        assert none is None and path == local


def test_a_memory_job_on_a_local_worker_process_is_an_error_not_a_crash(bucket, tmp_path):
    """memory:// lives in one process: worker processes cannot see it (use a
    store they share); each archive is recorded as an error and the run ends."""
    report = tmp_path / "r.jsonl"
    ran = _run("batch", f"{bucket}/zoo", "--check-only", "-j", "1", "--report", report)
    assert ran.exit_code == 2, ran.output
    records = _records(report, f"{bucket}/zoo")
    assert sorted(records) == sorted(ZOO)
    assert all("FileNotFoundError" in r["error"] for r in records.values())


def test_plain_paths_never_import_fsspec(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copyfile(MODELS / "sequential_mlp.keras", zoo / "m.keras")
    code = (
        "import sys\n"
        "from kerasrepair import BatchSettings, batch\n"
        f"records = list(batch([{str(zoo)!r}], BatchSettings({str(tmp_path / 'out')!r}, '3.6'),"
        " jobs=1))\n"
        "assert [r['status'] for r in records] == ['fixed'], records\n"
        "print('fsspec' in sys.modules, 'distributed' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["False", "False"]
    assert (tmp_path / "out" / "m.keras").is_file()


def test_without_fsspec_a_url_is_a_usage_error(tmp_path, monkeypatch):
    for module in ("fsspec", "fsspec.core", "fsspec.implementations.local"):
        monkeypatch.setitem(sys.modules, module, None)  # `import fsspec` fails
    ran = _run("batch", "s3://bucket/zoo", "--check-only")
    assert ran.exit_code == 2, ran.output
    assert "s3://bucket/zoo: URLs need fsspec: pip install fsspec" in ran.output
    assert "Traceback" not in ran.output
