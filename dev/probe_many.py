"""Probe many archives in one process of one Keras release (the compatibility matrix's loads).

    python probe_many.py JOBS.json OUT.json

Run by `releases.probe_many` in a release's environment. JOBS.json is a list of
``{"archive": ..., "reference": ...}``; each is judged exactly as
`kerasrepair/probe_child.py` judges one archive (its `run`, the same statuses
and tolerance), after `keras.backend.clear_session()`, under an alarm of
``PROBE_MANY_TIMEOUT`` seconds (default 300: a load that loops is a
``timeout``). OUT.json gets one result per job, in order, rewritten after each
job, so a child that dies leaves the results it had. Starting Keras and JAX
costs a few seconds a process; one process per release makes the thousands of
loads of the matrix affordable.
"""

import argparse
import json
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "kerasrepair"))  # probe_child, as a module

import probe_child  # noqa: E402


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("no result in time")


def main() -> int:
    jobs_path, out_path = sys.argv[1:3]
    with open(jobs_path, encoding="utf-8") as f:
        jobs = json.load(f)
    limit = int(os.environ.get("PROBE_MANY_TIMEOUT", "300"))
    signal.signal(signal.SIGALRM, _alarm)
    results = []
    for job in jobs:
        args = argparse.Namespace(
            archive=job["archive"],
            reference=job.get("reference"),
            write_reference=None,
            compare_with=None,
            custom_objects=job.get("custom_objects"),
            unsafe=False,
            tolerance=0.0,
        )
        signal.alarm(limit)
        try:
            import keras

            keras.backend.clear_session()
            record = probe_child.run(args)
        except Timeout:
            record = {"status": "timeout", "message": f"no result after {limit} s"}
        finally:
            signal.alarm(0)
        results.append(record)
        with open(out_path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(results, f, sort_keys=True, default=str)
        os.replace(out_path + ".tmp", out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
