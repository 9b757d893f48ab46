"""`kerasrepair batch --executor dask` on a real Dask `LocalCluster` on loopback
(worker processes, never a mock): the statuses and outputs of the local
executor, a cluster started for the run and closed after it, a worker killed
mid-run or after a task's end (its record lost before it was fetched),
--timeout."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import sys
import time

import dask
import psutil
import pytest
from distributed import Client, LocalCluster
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS
from kerasrepair import zoo_dask
from kerasrepair.cli import app
from kerasrepair.zoo import Job, Settings, batch, run_one

# name in the zoo -> (source, status for --keras 3.6)
ZOO = {
    "team/sequential_mlp.keras": (MODELS / "sequential_mlp.keras", "fixed"),
    "lambda_global.keras": (MODELS / "lambda_global.keras", "unfixable"),
    "subclassed.keras": (MODELS / "subclassed.keras", "clean"),
    "bad/absolute_name.keras": (HOSTILE / "absolute_name.keras", "error"),
}
# a bigger zoo, distinct archives (no duplicates): what real releases saved
RELEASED = tuple(sorted((FIXTURES / "releases").glob("keras-3.1*/*.keras"))[:36])


def _zoo(root, archives=None):
    archives = archives or {name: source for name, (source, _) in ZOO.items()}
    for name, source in archives.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / name)
    return root


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _records(report, root):
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    return {os.path.relpath(r["path"], root): r for r in lines}


def _cluster(n_workers=2, **kwargs):
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        **kwargs,
    )


def test_without_dask_the_cli_says_what_to_install(tmp_path, monkeypatch):
    # first: no cluster of this module is running (its threads import lazily)
    zoo = _zoo(tmp_path / "zoo")
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    ran = _run("batch", zoo, "--check-only", "--executor", "dask")
    assert ran.exit_code == 2
    assert "--executor dask needs Dask: pip install 'kerasrepair[dask]'" in ran.output
    assert "Traceback" not in ran.output


@pytest.fixture(scope="module")
def cluster():
    with _cluster() as cluster:
        yield cluster


def test_a_cluster_gives_what_the_local_pool_gives(cluster, tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    runs = {}
    for name, executor in [("local", []), ("dask", ["--scheduler", cluster.scheduler_address])]:
        out, report = tmp_path / f"out-{name}", tmp_path / f"{name}.jsonl"
        ran = _run("batch", zoo, "-o", out, "--keras", "3.6", "--report", report, "--copy-clean",
                   "--executor", "dask" if executor else "local", *executor)  # fmt: skip
        assert ran.exit_code == 2, ran.output  # the hostile archive is an error
        runs[name] = (_records(report, zoo), out)
    (local, local_out), (remote, remote_out) = runs["local"], runs["dask"]
    assert {n: r["status"] for n, r in remote.items()} == {n: s for n, (_, s) in ZOO.items()}
    for name, record in remote.items():
        for key in ("status", "sha256", "bytes", "saved_with", "target", "codes", "changes"):
            assert record[key] == local[name][key], (name, key)
        assert (record["output"] is None) == (local[name]["output"] is None), name
    assert "absolute path" in remote["bad/absolute_name.keras"]["error"]
    written = sorted(str(p.relative_to(remote_out)) for p in remote_out.rglob("*.keras"))
    assert written == ["subclassed.keras", "team/sequential_mlp.keras"]
    for name in written:  # the same repair, byte for byte
        assert (remote_out / name).read_bytes() == (local_out / name).read_bytes(), name
    assert remote["team/sequential_mlp.keras"]["output"] == str(remote_out / written[1])
    with Client(cluster) as client:  # the user's cluster is left running
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3


def test_without_a_scheduler_a_local_cluster_is_started_and_closed(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    report = tmp_path / "r.jsonl"
    ran = _run("batch", zoo, "--check-only", "--keras", "3.6", "--executor", "dask", "-j", "2",
               "--report", report)  # fmt: skip
    assert ran.exit_code == 2, ran.output
    statuses = {n: r["status"] for n, r in _records(report, zoo).items()}
    expected = {n: "fixable" if s == "fixed" else s for n, (_, s) in ZOO.items()}
    assert statuses == expected
    assert "4 archives: 1 clean, 1 error, 1 fixable, 1 unfixable" in ran.output
    deadline = time.monotonic() + 10
    while (left := _alive({p.pid for p in psutil.Process().children(True)} - before)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not left, "the LocalCluster's workers outlived the run"


def _alive(pids):
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@functools.cache
def _expected(archives: tuple) -> dict[str, str]:
    """What the worker function gives for each archive, run here."""
    expected = {}
    for path in archives:
        record = run_one(Job(str(path), None, "", 0), Settings(keras="3.6"))
        expected[f"{path.parent.name}/{path.name}"] = record["status"]
    assert len(expected) == 36 and {"clean", "fixable", "unfixable"} <= set(expected.values())
    return expected


@pytest.mark.parametrize("allowed_failures", [3, 0])
def test_a_worker_killed_mid_run_is_recorded_not_fatal(tmp_path, allowed_failures):
    """SIGKILL a worker process (of two) while it runs archives: with retries
    (Dask's default) every archive still gets its own status; with none, what it
    was running is recorded as an error and the rest go on."""
    zoo = _zoo(tmp_path / "zoo", {f"{p.parent.name}/{p.name}": p for p in RELEASED})
    settings, expected = Settings(keras="3.6"), _expected(RELEASED)

    config = {"distributed.scheduler.allowed-failures": allowed_failures}
    with dask.config.set(config), _cluster() as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        records, killed = {}, []
        for record in batch(
            [str(zoo)], settings, executor="dask", scheduler=cluster.scheduler_address
        ):
            records[os.path.relpath(record["path"], zoo)] = record
            # a result in: kill a first worker that holds an archive. Between two
            # archives (a few ms each) it may hold none for an instant: then the
            # scheduler finds no archive it was running, and the other one is
            # killed at the next result (the workers started first, at most)
            if not cluster.scheduler.task_prefixes["run_one"].suspicious:
                busy = [a for a, keys in client.processing().items() if keys]
                busy = [a for a in busy if a in pids and pids[a] not in killed]
                if busy:
                    killed.append(pids[busy[0]])
                    os.kill(killed[-1], signal.SIGKILL)
        suspicious = cluster.scheduler.task_prefixes["run_one"].suspicious
        client.wait_for_workers(2, timeout=30)  # the nanny starts a new worker process
        replaced = client.run(os.getpid)
    assert killed, "no worker was ever busy when a result came in"
    assert suspicious >= 1  # a killed worker was running (or holding) an archive
    assert not set(killed) & set(replaced.values()) and len(replaced) == 2
    assert sorted(records) == sorted(expected)  # one record per archive
    died = {n for n, r in records.items() if "Dask KilledWorker" in (r["error"] or "")}
    if allowed_failures:
        assert not died
        assert {n: r["status"] for n, r in records.items()} == expected
    else:
        assert died
        assert all(records[n]["status"] == "error" for n in died)
        message = "its worker died (Dask KilledWorker: 1 died running it)"
        assert all(records[n]["error"] == message for n in died)
        assert {n: r["status"] for n, r in records.items() if n not in died} == {
            n: s for n, s in expected.items() if n not in died
        }


def test_a_record_lost_with_its_worker_before_it_is_fetched_is_computed_again(
    tmp_path, monkeypatch
):
    """The only worker is killed after an archive's task finished and before its
    record is fetched: the record is gone with it. The task is run again (by the
    worker the nanny starts) and its record is the archive's own, not an error."""
    zoo = _zoo(tmp_path / "zoo")
    report = tmp_path / "r.jsonl"
    record, seen = zoo_dask.DaskPool._record, []

    def killing_first(pool, future, *args):
        if not seen:  # the first task that finished: its result is on the worker
            (pid,) = client.run(os.getpid).values()
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while future.status == "finished" and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(future.status)
        return record(pool, future, *args)

    monkeypatch.setattr(zoo_dask.DaskPool, "_record", killing_first)
    with _cluster(n_workers=1) as cluster, Client(cluster) as client:
        ran = _run("batch", zoo, "--check-only", "--keras", "3.6", "--executor", "dask",
                   "--scheduler", cluster.scheduler_address, "--report", report)  # fmt: skip
    assert seen == ["lost"]  # the client was told; no worker held it until the new one
    assert ran.exit_code == 2, ran.output
    statuses = {n: r["status"] for n, r in _records(report, zoo).items()}
    assert statuses == {n: "fixable" if s == "fixed" else s for n, (_, s) in ZOO.items()}


def test_timeout_records_and_cancels_what_is_not_done(cluster, tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    report = tmp_path / "r.jsonl"
    ran = _run("batch", zoo, "--check-only", "--timeout", "0.000001", "--report", report,
               "--executor", "dask", "--scheduler", cluster.scheduler_address)  # fmt: skip
    assert ran.exit_code == 2, ran.output
    records = _records(report, zoo)
    assert sorted(records) == sorted(ZOO)
    assert all(r["status"] == "error" and "no result after" in r["error"] for r in records.values())


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path, monkeypatch):
    zoo = _zoo(tmp_path / "zoo")
    monkeypatch.setattr(zoo_dask, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ran = _run("batch", zoo, "--check-only", "--executor", "dask", "--scheduler",
               f"tcp://127.0.0.1:{port}")  # fmt: skip
    assert ran.exit_code == 2, ran.output
    assert f"--scheduler tcp://127.0.0.1:{port}: cannot connect" in ran.output
