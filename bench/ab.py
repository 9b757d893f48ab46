"""Commands compared on a machine whose speed drifts: run one after the other,
round after round, each as its own process, and their medians printed (wall
time, and the CPU of the process and the children it waited for).

    .venv/bin/python bench/ab.py 25 \\
        "before=PYTHONPATH=/tmp/old;.venv/bin/python -m kerasrepair fix A.keras -o /tmp/o.keras" \\
        "after=;.venv/bin/python -m kerasrepair fix A.keras -o /tmp/o.keras"

(/tmp/old: a worktree of the commit before, `git worktree add /tmp/old HEAD~1`,
whose kerasrepair the interpreter then imports first.)

Each command is LABEL=ENV;COMMAND, ENV being NAME=VALUE pairs joined by ","
(or nothing). Every run starts with no write pending (os.sync, not timed),
and with /tmp/o.keras removed (what the example writes).
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUTPUT = Path("/tmp/o.keras")


def parse(spec: str) -> tuple[str, dict[str, str], list[str]]:
    label, _, rest = spec.partition("=")
    assignments, _, command = rest.partition(";")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    for assignment in filter(None, assignments.split(",")):
        name, _, value = assignment.partition("=")
        env[name] = value
    return label, env, shlex.split(command)


def main() -> int:
    rounds, specs = int(sys.argv[1]), [parse(spec) for spec in sys.argv[2:]]
    wall: dict[str, list[float]] = {label: [] for label, _, _ in specs}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in specs}
    for _ in range(rounds):
        for label, env, command in specs:
            OUTPUT.unlink(missing_ok=True)
            os.sync()
            start = time.perf_counter()
            child = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _, _, usage = os.wait4(child.pid, 0)
            wall[label].append(time.perf_counter() - start)
            cpu[label].append(usage.ru_utime + usage.ru_stime)
    for label, times in wall.items():
        low, _, high = statistics.quantiles(times, n=4)
        print(
            f"{label:<16} wall median {statistics.median(times):.3f} s "
            f"(quartiles {low:.3f}-{high:.3f}, min {min(times):.3f})  "
            f"cpu median {statistics.median(cpu[label]):.3f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
