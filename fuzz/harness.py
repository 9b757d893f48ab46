"""Every command on one input, in this process, and what each must keep.

Whatever the bytes are, each command (`COMMANDS`) ends with exit status 0, 1 or 2
and no traceback; on 2 it says one line on stderr (`kerasrepair: error: ...`),
prints nothing on stdout and writes nothing; `fix` writes either nothing or an
archive that zipfile and kerasrepair read back; no temporary file is left behind,
the input is not changed, and the command ends within `time_limit` seconds and
`memory_limit` bytes of growth of this process's peak RSS.

The commands run in-process through typer's `CliRunner` (about 30 ms each): an
exception the CLI lets escape is caught there, with its traceback. A hang in
native code (h5py), which no signal handler interrupts, ends the process
`NATIVE_GRACE` seconds later with every thread's traceback: a failure, not a wait.
"""

from __future__ import annotations

import faulthandler
import hashlib
import resource
import signal
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from kerasrepair.cli import app

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("inspect",),
    ("inspect", "--json"),
    ("check",),
    ("check", "--keras", "3.0"),
    ("fix", "-o"),
    ("fix", "--keras", "3.0", "-o"),
)
OUTPUT = "fixed.keras"
NATIVE_GRACE = 30  # seconds past the time limit before a hang in native code ends the process

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# The archives mutated: which mutators apply to each
BASES: dict[str, tuple[str, ...]] = {
    "models/functional_nested_shared.keras": ("zip_bytes", "zip_fields", "config", "hdf5"),
    "models/sequential_mlp.keras": ("zip_bytes", "zip_fields", "config", "hdf5"),
    "releases/keras-3.0.5/lambda_global.keras": ("zip_bytes", "zip_fields", "config", "hdf5"),
    "models/weights_npz.keras": ("zip_bytes", "zip_fields", "config", "npz"),
    "keras2/mlp_trained.keras": ("zip_bytes", "zip_fields", "config", "hdf5"),
    "keras2/mlp_trained.h5": ("zip_bytes", "config", "hdf5"),
}


def bases_for(mutator: str) -> list[str]:
    return [base for base, mutators in BASES.items() if mutator in mutators]


class Hang(BaseException):
    """A command ran past its time limit (a BaseException: the tool's own
    `except Exception` must not swallow it)."""


@dataclass
class Violation:
    """A property a command broke on an input."""

    command: str
    kind: str  # "crash", "hang", "memory", "exit status", "stderr", ...
    detail: str
    exception: BaseException | None = None

    def __str__(self) -> str:
        return f"`kerasrepair {self.command}`: {self.kind}: {self.detail}"

    @property
    def signature(self) -> str:
        """What tells one bug from another: the kind, and for a crash the
        exception's type and the innermost frame of kerasrepair it passed."""
        if self.exception is None:
            return f"{self.kind}: {self.detail[:80]}"
        frame = innermost_frame(self.exception)
        return f"{self.kind}: {type(self.exception).__name__} at {frame}"


def innermost_frame(exception: BaseException) -> str:
    tb, where = exception.__traceback__, "?"
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if "/kerasrepair/" in filename:
            where = f"{filename.rsplit('/kerasrepair/', 1)[1]}:{tb.tb_lineno}"
            where += f" ({tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return where


def run_commands(
    path: Path,
    workdir: Path,
    commands: tuple[tuple[str, ...], ...] = COMMANDS,
    time_limit: float = 20.0,
    memory_limit: int = 512 << 20,
) -> list[Violation]:
    """Run each of `commands` on `path` (its outputs in `workdir`); what they broke."""
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    violations: list[Violation] = []
    runner = CliRunner()
    for command in commands:
        out_dir = workdir / f"out-{len(violations)}-{'-'.join(command)}"
        out_dir.mkdir()
        args = list(command)
        args += [str(out_dir / OUTPUT), str(path)] if command[-1] == "-o" else [str(path)]
        name = " ".join(command)
        violations += _run_one(runner, args, name, out_dir, time_limit, memory_limit)
        if hashlib.sha256(path.read_bytes()).hexdigest() != before:
            violations.append(Violation(name, "input changed", str(path)))
    return violations


def _run_one(runner, args, name, out_dir, time_limit, memory_limit) -> list[Violation]:
    peak = _peak_rss()
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    # SIGALRM interrupts Python code only: a hang in native code (h5py, zlib) ends
    # the whole process, with every thread's traceback, rather than never ending
    faulthandler.dump_traceback_later(time_limit + NATIVE_GRACE, exit=True)
    try:
        result = runner.invoke(app, args)
    except Hang:
        return [Violation(name, "hang", f"still running after {time_limit:.0f} s")]
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.monotonic() - started
    found = []
    grown = _peak_rss() - peak
    if grown > memory_limit:
        found.append(Violation(name, "memory", f"peak RSS grew {grown >> 20} MiB"))
    exception = result.exception
    if exception is not None and not isinstance(exception, SystemExit):
        exception = exception.with_traceback(result.exc_info[2])
        message = str(exception).splitlines()[0][:160] if str(exception) else ""
        found.append(Violation(name, "crash", f"{type(exception).__name__}: {message}", exception))
        return found
    code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    if code not in (0, 1, 2):
        found.append(Violation(name, "exit status", str(code)))
    if "Traceback" in stdout + stderr:
        found.append(Violation(name, "traceback", stderr[-300:]))
    if "internal error" in stderr:  # the CLI's last-resort guard: a crash all the same
        found.append(Violation(name, "crash", stderr.strip()[:300]))
    lines = stderr.splitlines()
    if code == 2 and (len(lines) != 1 or not lines[0].startswith("kerasrepair: error: ")):
        found.append(Violation(name, "stderr", f"exit 2 with {stderr!r:.300}"))
    if code == 2 and stdout:
        found.append(Violation(name, "stdout", f"exit 2 with output {stdout[:200]!r}"))
    left = sorted(p.name for p in out_dir.iterdir())
    output = out_dir / OUTPUT
    if code == 2 and left:
        found.append(Violation(name, "output", f"exit 2 but the directory holds {left}"))
    elif left not in ([], [OUTPUT]):
        found.append(Violation(name, "leftovers", f"the directory holds {left}"))
    elif output.exists():
        problem = _unreadable(output)
        if problem:
            found.append(Violation(name, "output", f"the written archive {problem}"))
    if seconds > time_limit:
        found.append(Violation(name, "hang", f"took {seconds:.1f} s"))
    return found


def _unreadable(path: Path) -> str:
    """Why the written archive is not one (``""`` when zipfile and kerasrepair read it)."""
    from kerasrepair import open_archive

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            return f"has a bad CRC in {bad}"
        with open_archive(path) as archive:
            archive.weights()
    except Exception as e:  # noqa: BLE001 (any failure to read it back is the finding)
        return f"does not read back ({type(e).__name__}: {e})"
    return ""


def _alarm(signum, frame):
    raise Hang


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
