"""`batch --executor dask`: the same work (`zoo_job.run_one` per archive) on a
Dask distributed cluster: the one at `--scheduler tcp://HOST:PORT`, whose
workers must see the same storage (paths, or URLs they can open), or else a
`LocalCluster` of `--jobs` single-threaded worker processes started for the
run and closed at its end.

Archives are streamed: at most `PER_THREAD` tasks per worker thread are in
flight, and a record is yielded as each finishes (`as_completed`). Results
are fetched here, not by `as_completed`: a result held by a worker that dies
before it is fetched is computed again (the task is waited for again), where
`as_completed(with_results=True)` would return the future as "lost", or drop
it and wait forever if the second run failed.

A worker that dies (crash, killed, over its memory limit: the nanny restarts
it) costs no archive: the scheduler runs its tasks again elsewhere, and only
a task that `distributed.scheduler.allowed-failures` (default 3) + 1 workers
died running is given up (KilledWorker); it is recorded as an `error`, as is
a task that failed in Dask itself (e.g. a worker without kerasrepair).

`--timeout` is best effort: a task with no result `timeout` seconds after it
was submitted (with a timeout, one task per worker thread is in flight, so
that is about when it started) is recorded as an `error` and cancelled.
Dask cannot interrupt a task that is running (a thread cannot be killed): it
keeps its worker thread busy until it returns, or until the cluster is
closed; the local executor kills and replaces the worker instead.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator

from .errors import SourceError
from .zoo_job import Job, Settings, failed, one_line, run_one

PER_THREAD = 2  # tasks in flight per worker thread (one with --timeout)
CONNECT_TIMEOUT = 10.0  # seconds to reach --scheduler
POLL = 0.01  # seconds between looks for results, with --timeout
# seconds to fetch one finished task's record: as long as Dask's default connect
# timeout, which the scheduler may spend on a worker that has just died
FETCH_TIMEOUT = 30.0
FETCHES = 3  # tries to fetch a task's record (its result lost each time) before an error
RECOUNT = 2.0  # seconds between counts of the cluster's threads


class DaskPool:
    """Runs `run_one` for each job on a Dask cluster; one record per job, as
    they finish (the contract of `zoo.LocalPool`)."""

    def __init__(
        self, settings: Settings, jobs: int | None, timeout: float | None, scheduler: str | None
    ):
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise SourceError(
                "--executor dask needs Dask: pip install 'kerasrepair[dask]'"
            ) from None
        self.settings = settings
        self.size = max(1, jobs or os.cpu_count() or 1)  # LocalCluster workers
        self.timeout = timeout
        self.scheduler = scheduler

    def run(self, jobs: Iterable[Job]) -> Iterator[dict]:
        client, cluster = self._connect()
        try:
            yield from self._stream(client, iter(jobs))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def _connect(self):
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                return Client(self.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False), None
            except (OSError, TimeoutError, ValueError) as e:
                raise SourceError(
                    f"--scheduler {self.scheduler}: cannot connect ({one_line(e)})"
                ) from None
        cluster = LocalCluster(
            n_workers=self.size,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        try:
            return Client(cluster, set_as_default=False), cluster
        except BaseException:
            cluster.close()
            raise

    def _stream(self, client, jobs: Iterator[Job]) -> Iterator[dict]:
        from distributed import as_completed

        done = as_completed(loop=client.loop)
        flight: dict = {}  # future -> (job, when submitted, fetches of its record so far)
        window, counted = self._window(client), time.monotonic()
        more = True
        while True:
            while more and len(flight) < window:
                job = next(jobs, None)
                if job is None:
                    more = False
                    break
                future = client.submit(run_one, job, self.settings, pure=False)
                flight[future] = (job, time.monotonic(), 0)
                done.add(future)
            if not flight:
                return
            for future in self._finished(done, flight):
                job, since, fetches = flight[future]
                record = self._record(future, job, since, fetches + 1)
                if record is None:  # its result was lost with its worker: computed again
                    flight[future] = (job, since, fetches + 1)
                    done.add(future)
                    continue
                del flight[future]
                yield record
            if self.timeout:
                now = time.monotonic()
                for future, (job, since, _) in list(flight.items()):
                    if now - since > self.timeout:
                        del flight[future]
                        future.cancel()
                        why = f"no result after {self.timeout:g} s (--timeout): cancelled"
                        yield failed(job, self.settings, why, now - since)
            if time.monotonic() - counted > RECOUNT:
                window, counted = self._window(client), time.monotonic()

    def _window(self, client) -> int:
        """Tasks in flight: a few per worker thread, at least a few while the
        cluster has no worker yet (they wait for one)."""
        threads = sum(client.nthreads().values())
        if self.timeout:
            return max(1, threads)
        return PER_THREAD * max(1, threads)

    def _finished(self, done, flight: dict) -> list:
        """What finished, of what is in flight: waits for one without a
        timeout; with one, until one finishes or the next deadline passes."""
        if not self.timeout:
            return [f for f in done.next_batch(block=True) if f in flight]
        deadline = min(since for _, since, _ in flight.values()) + self.timeout
        while True:
            ready = [f for f in done.next_batch(block=False) if f in flight]
            if ready or time.monotonic() > deadline:
                return ready
            time.sleep(POLL)

    def _record(self, future, job: Job, since: float, fetches: int) -> dict | None:
        """The task's record, or None when it is to be waited for again: its
        result was lost with its worker before it was fetched (the scheduler
        computes it again), at most `FETCHES` times."""
        from distributed import KilledWorker

        fetch_error = None
        if future.status == "finished":
            try:
                return future.result(timeout=FETCH_TIMEOUT)
            except Exception as e:  # lost meanwhile, failed since, or unreachable
                fetch_error = e
        seconds = time.monotonic() - since
        if future.status == "error":
            error = future.exception(timeout=FETCH_TIMEOUT)
            if isinstance(error, KilledWorker):
                died = error.allowed_failures + 1
                why = f"its worker died (Dask KilledWorker: {died} died running it)"
            else:
                why = f"the Dask task failed: {one_line(error)}"
        elif future.status == "cancelled":
            why = "the Dask task was cancelled"
        elif fetches < FETCHES:
            return None
        else:
            why = f"its result could not be fetched {fetches} times"
            if fetch_error is not None:
                why += f" ({one_line(fetch_error)})"
        return failed(job, self.settings, why, seconds)
