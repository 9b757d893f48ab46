"""`batch`: check or repair every archive of a model zoo, in worker processes.

    sources ─► archives (paths, where each goes under OUTDIR)
            ─► jobs (sha256: a duplicate or one the report has is not run again)
            ─► a pool of worker processes, each running `run_one` per archive
            ─► results, appended to the report as they come

One archive never stops the run: whatever it raises is its result (`error`),
and a worker that dies or overruns `timeout` is killed, recorded and replaced.
Workers are started once and stream archives; each result is a plain dict
(one JSON line of the report).
"""

from __future__ import annotations

import gc
import glob
import json
import multiprocessing
import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from . import remote
from .errors import SourceError
from .zoo_job import Job, Settings, failed, one_line, run_one

SUFFIXES = (".keras", ".h5", ".hdf5")
BIG = 64 << 20  # an archive after which a worker collects its garbage


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    resumed: int = 0
    found: int | None = None  # archives the sources name, once they are listed

    def add(self, record: dict) -> None:
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        for code in record.get("codes", ()):
            self.codes[code] = self.codes.get(code, 0) + 1
        self.slowest = sorted([*self.slowest, (record.get("seconds") or 0.0, record["path"])])[-5:][
            ::-1
        ]

    def exit_status(self, check_only: bool) -> int:
        """0 all clean (or fixed), 1 some not, 2 an error or no archive at all."""
        if self.counts.get("error") or not (sum(self.counts.values()) + self.resumed):
            return 2
        not_loading = ("unfixable", "fixable") if check_only else ("unfixable",)
        return 1 if any(self.counts.get(status) for status in not_loading) else 0


# ------------------------------------------------------------------ sources


def archives(
    sources: Iterable[str], output_dir: str | None
) -> Iterator[tuple[Path | str, Path | str | None]]:
    """Each archive of `sources` and where its repair goes: a directory is
    searched (without following symlinks out of it), a glob expanded, another
    file is an archive if its suffix says so, else a list of paths, one per
    line (`-`: stdin). Under `output_dir` a directory's archives keep their
    paths relative to it; other archives their path relative to the working
    directory (or their absolute path without its root). A source or
    `output_dir` may be an fsspec URL (`remote`): its archives are URLs (str),
    a `file://` URL is the local path it names."""
    out = _outdir(output_dir)
    for source in sources:
        if source == "-":
            yield from _listed(sys.stdin, out)
            continue
        if remote.is_url(source):
            local = remote.local_path(source)
            if local is None:
                yield from remote.archives(source, out, _listed)
                continue
            source = local
        path = Path(source)
        if path.is_dir():
            root = path.resolve()
            if isinstance(out, Path) and (out == root or root in out.parents):
                raise SourceError(f"{source}: -o {output_dir} is inside it; write elsewhere")
            for found in _walk(root):
                yield found, _under(out, found.relative_to(root)) if out else None
        elif path.is_file() and path.suffix.lower() not in SUFFIXES:
            with open(path, encoding="utf-8", errors="replace") as listing:
                yield from _listed(listing, out)
        elif path.exists():
            yield path, _mirrored(path, out)
        else:
            matches = sorted(glob.glob(source, recursive=True))
            if not matches:
                raise SourceError(f"{source}: no such file, directory or match")
            for match in matches:
                if Path(match).is_file() and Path(match).suffix.lower() in SUFFIXES:
                    yield Path(match), _mirrored(Path(match), out)


def _walk(root: Path) -> Iterator[Path]:
    for folder, folders, files in os.walk(root):  # os.walk does not follow symlinked folders
        folders.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix.lower() not in SUFFIXES:
                continue
            if path.is_symlink() and root not in path.resolve().parents:
                continue  # a link out of the source
            if path.is_file():  # not a FIFO, socket or device
                yield path


def _listed(lines, out: Path | str | None) -> Iterator[tuple[Path | str, Path | str | None]]:
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        local = remote.local_path(line) if remote.is_url(line) else line
        if local is None:  # a URL
            yield line, remote.mirrored(line, out)
        else:
            yield Path(local), _mirrored(Path(local), out)


def _outdir(output_dir: str | None) -> Path | str | None:
    """OUTDIR: a resolved local Path, or a URL (str)."""
    if not output_dir:
        return None
    if remote.is_url(output_dir):
        local = remote.local_path(output_dir)
        return output_dir.rstrip("/") if local is None else Path(local).resolve()
    return Path(output_dir).resolve()


def _under(out: Path | str, relative: Path) -> Path | str:
    return remote.join(out, relative) if isinstance(out, str) else out / relative


def _mirrored(path: Path, out: Path | str | None) -> Path | str | None:
    if out is None:
        return None
    absolute = path.resolve()
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        relative = absolute.relative_to(absolute.anchor)
    return _under(out, relative)


def sha256(path: Path | str) -> tuple[str, int]:
    """The archive's digest and size; OSError for what is not a regular file
    (a FIFO would block `open`, a device never end). `path` may be a URL."""
    if remote.is_url(path):
        return remote.sha256(path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path}: not a regular file; give the path of a .keras or .h5 file")
    with open(path, "rb") as f:
        return remote.digest(f)


# ------------------------------------------------------------------ the pool


def _worker(conn, settings: Settings) -> None:
    """A worker process: archives in, report lines out, until told to stop or
    orphaned (its parent killed: the archive at hand is finished, whole)."""
    while True:
        try:
            job = conn.recv()
            if job is None:
                return
            conn.send(run_one(job, settings))
        except (EOFError, OSError):  # the parent is gone: no one to report to
            return
        if job.size > BIG:  # reference cycles of a big archive's walk go at once
            gc.collect()


class LocalPool:
    """`jobs` worker processes, each given one archive at a time; a worker that
    dies, or overruns `timeout` seconds, is recorded, killed and replaced."""

    def __init__(self, settings: Settings, jobs: int, timeout: float | None):
        self.settings = settings
        self.size = max(1, jobs)
        self.timeout = timeout
        # a fresh interpreter per worker, with this process's sys.path and
        # working directory (Python 3.11's forkserver starts from the working
        # directory's modules: a checkout of kerasrepair there would shadow
        # the installed one); fork would copy the progress bar's thread state
        self.context = multiprocessing.get_context("spawn")

    def _start(self) -> dict:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(child, self.settings), daemon=True)
        process.start()
        child.close()
        return {"process": process, "conn": parent, "job": None, "since": 0.0}

    def run(self, jobs: Iterable[Job]) -> Iterator[dict]:
        pending = iter(jobs)
        workers = [self._start() for _ in range(self.size)]
        running = 0
        try:
            while True:
                for worker in workers:
                    if worker["job"] is None:
                        job = next(pending, None)
                        if job is None:
                            break
                        try:
                            worker["conn"].send(job)
                        except OSError:  # it died idle: a new one takes the job
                            self._stop(worker)
                            worker.update(self._start())
                            worker["conn"].send(job)
                        worker["job"], worker["since"] = job, time.monotonic()
                        running += 1
                if not running:
                    return
                busy = [w for w in workers if w["job"] is not None]
                waits = [w["conn"] for w in busy] + [w["process"].sentinel for w in busy]
                ready = wait(waits, timeout=self._next_deadline(busy))
                for index, worker in enumerate(workers):
                    if worker["job"] is None:
                        continue
                    job, failure = worker["job"], None
                    if worker["conn"] in ready:
                        try:
                            record = worker["conn"].recv()
                        except (EOFError, OSError):
                            failure = "the worker died"
                        else:
                            worker["job"] = None
                            running -= 1
                            yield record
                            continue
                    elif worker["process"].sentinel in ready:
                        failure = f"the worker died (exit code {worker['process'].exitcode})"
                    elif self.timeout and time.monotonic() - worker["since"] > self.timeout:
                        failure = f"no result after {self.timeout:g} s (--timeout): killed"
                    if failure is None:
                        continue
                    self._stop(worker)
                    workers[index] = self._start()
                    running -= 1
                    yield failed(job, self.settings, failure, time.monotonic() - worker["since"])
        finally:
            for worker in workers:
                self._stop(worker, politely=worker["job"] is None)

    def _next_deadline(self, busy: list[dict]) -> float | None:
        if not self.timeout:
            return None
        now = time.monotonic()
        return max(0.0, min(w["since"] + self.timeout - now for w in busy))

    @staticmethod
    def _stop(worker: dict, politely: bool = False) -> None:
        process = worker["process"]
        if politely and process.is_alive():
            try:
                worker["conn"].send(None)
                process.join(2)
            except OSError:
                pass
        if process.is_alive():
            process.kill()
            process.join()
        worker["conn"].close()


# ------------------------------------------------------------------ a run


def done_before(report: str | os.PathLike | None, settings: Settings) -> dict[str, str]:
    """path -> sha256 of what the report already has, for the same settings."""
    if report is None or not os.path.exists(report):
        return {}
    done = {}
    with open(report, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                record = json.loads(line)
                if record.get("settings") == settings.key() and record["status"] != "error":
                    done[record["path"]] = record["sha256"]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by an interrupted run
    return done


def batch(
    sources: Iterable[str],
    settings: Settings,
    jobs: int | None = None,
    timeout: float | None = None,
    resume_from: str | os.PathLike | None = None,
    summary: Summary | None = None,
    executor: str = "local",
    scheduler: str | None = None,
) -> Iterator[dict]:
    """Check or repair every archive of `sources`; a report line per archive,
    as they are done. A duplicate (a sha256 met before) gets a `duplicate`
    line at once; an archive `resume_from` has with the same sha256 and
    settings is skipped (counted in `summary.resumed`). Raises SourceError
    before anything runs for a source that names nothing."""
    summary = summary if summary is not None else Summary()
    listed = list(archives(sources, settings.output_dir))
    summary.found = len(listed)
    if not settings.check_only:  # what a killed run left beside the outputs goes
        from .writer import remove_leftovers

        remove_leftovers(*(output for _, output in listed if isinstance(output, Path)))
    done = done_before(resume_from, settings)
    seen: dict[str, str] = {}
    early: list[dict] = []  # decided without a worker: duplicates, unreadable paths

    def todo() -> Iterator[Job]:
        for path, output in listed:
            try:
                digest, size = sha256(path)
            except OSError as e:
                early.append(failed(Job(str(path), None, "", 0), settings, one_line(e), 0))
                continue
            if done.get(str(path)) == digest:
                summary.resumed += 1
                continue
            if digest in seen:
                record = failed(Job(str(path), None, digest, size), settings, None, 0)
                record.update(status="duplicate", duplicate_of=seen[digest])
                early.append(record)
                continue
            seen[digest] = str(path)
            yield Job(str(path), str(output) if output else None, digest, size)

    for record in _pool(settings, jobs, timeout, executor, scheduler).run(todo()):
        while early:
            yield _counted(early.pop(0), summary)
        yield _counted(record, summary)
    while early:
        yield _counted(early.pop(0), summary)


def _pool(settings: Settings, jobs, timeout, executor: str, scheduler: str | None):
    """The workers: `local` processes, or a Dask cluster (`scheduler`'s, else a
    LocalCluster of `jobs` workers; the `dask` extra)."""
    if executor == "dask":
        from .zoo_dask import DaskPool

        return DaskPool(settings, jobs, timeout, scheduler)
    if executor != "local":
        raise SourceError(f"--executor {executor}: expected local or dask")
    return LocalPool(settings, jobs or os.cpu_count() or 1, timeout)


def _counted(record: dict, summary: Summary) -> dict:
    summary.add(record)
    return record


BatchSettings = Settings  # its name in the package's API
