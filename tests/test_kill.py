"""SIGKILL at random moments: nothing is ever lost.

Each command runs as a real `kerasrepair` process, killed with SIGKILL after
a random delay (seeded) spanning its whole run: half of the delays anywhere
in it, half from when the write shows (its first temporary file), within as
long as the write lasted in an un-killed run. After each kill
the target is absent, the old file or complete (equal bytes to an un-killed
run's output: outputs are deterministic; a .keras one reads back with
zipfile, every CRC good) and the input is intact (sha256). When a kill left
something beside the target (a temporary, a backup, a weights scratch), the
next run on the same target, un-killed, removes it: no leftovers after it.

`batch` is killed as a whole (its process group), and, one time in four, its
parent alone: the worker, orphaned, finishes the archive at hand (whole) and
exits quietly. KERASREPAIR_KILLS=N sets the kills per command (a longer run), and
KERASREPAIR_KILL_SEED the seed.
"""

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from conftest import FIXTURES, MODELS

KILLS = int(os.environ.get("KERASREPAIR_KILLS", "20"))
SEED = int(os.environ.get("KERASREPAIR_KILL_SEED", "14"))
BROKEN = MODELS / "numpy_rescaling.keras"  # `fix --keras 3.4` repairs it (KR601, KR203)
KERAS2 = FIXTURES / "keras2" / "mlp_trained.h5"  # a Keras 2 model: converted, weights re-laid
BLOB = 24 << 20  # a stored asset this big: the write lasts long enough for kills to land in it
OLD = b"the previous output\n"
ENV = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}


def _big_archive(path: Path) -> Path:
    """The broken fixture with a 24 MB stored asset: a big archive `fix` repairs."""
    shutil.copyfile(BROKEN, path)
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("assets/blob.bin", (1980, 1, 1, 0, 0, 0))
        zf.writestr(info, random.Random(SEED).randbytes(BLOB))
    return path


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _found(root: Path) -> set[str]:
    """Every file and directory under `root`, relative to it."""
    found = set()
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


class Command:
    """A command, its targets and inputs in `root`, and what an un-killed run writes."""

    def __init__(self, root: Path, args: list, targets: list[Path], inputs: list[Path]):
        self.root, self.args, self.targets, self.inputs = (
            root,
            [str(a) for a in args],
            targets,
            inputs,
        )
        self.expected = {os.path.relpath(p, root) for p in targets + inputs}
        self.expected |= {os.path.relpath(p.parent, root) for p in targets + inputs} - {"."}
        self.digests = {p: _digest(p) for p in inputs}
        self.reference: dict[Path, bytes] = {}
        self.window = (0.0, 0.0)  # when leftovers were seen in an un-killed run (s from its start)
        self.duration = 0.0

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "kerasrepair", *self.args],
            cwd=self.root,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: batch's workers with it
        )

    def leftovers(self) -> set[str]:
        return _found(self.root) - self.expected

    def run(self) -> None:
        """An un-killed run: it succeeds and leaves nothing but its targets."""
        process = self.start()
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
        assert self.leftovers() == set()
        for target, contents in self.reference.items():
            assert target.read_bytes() == contents, f"{target} differs from an un-killed run's"

    def measure(self, runs: int = 2) -> None:
        """The un-killed run's output, how long it takes, and when its write happens."""
        seen: list[float] = []
        for _ in range(runs):
            stop = threading.Event()
            started = time.monotonic()

            def watch(started=started, stop=stop):
                while not stop.is_set():
                    if self.leftovers():
                        seen.append(time.monotonic() - started)
                    time.sleep(0.001)

            watcher = threading.Thread(target=watch)
            process = self.start()
            watcher.start()
            _, stderr = process.communicate(timeout=120)
            self.duration = max(self.duration, time.monotonic() - started)
            stop.set()
            watcher.join()
            assert process.returncode == 0, stderr.decode()
            self.reference = {t: t.read_bytes() for t in self.targets}
        assert seen, "no run was seen writing"
        self.window = (min(seen), max(seen))


def _leftover_kind(name: str) -> str:
    name = next((part for part in Path(name).parts if part.startswith(".")), name)
    if name.endswith(".partial"):
        return "temporary"
    if name.endswith(".kerasrepair-backup"):
        return "backup"
    if name.startswith(".kerasrepair-weights-"):
        return "weights scratch"
    return name  # and the next run, un-killed, fails on it


def _check_after_kill(command: Command, old: dict[Path, bytes | None]) -> str:
    """Assert what a kill may leave; return when it landed, as the files say."""
    complete = 0
    for target in command.targets:
        if not target.exists():
            assert old[target] is None, f"{target} was removed"
            continue
        contents = target.read_bytes()
        if contents == command.reference[target]:
            complete += contents != old[target]
            if target.suffix == ".keras":
                with zipfile.ZipFile(target) as zf:
                    assert zf.testzip() is None
        else:
            assert contents == old[target], f"{target} is neither old nor complete"
    for path, digest in command.digests.items():
        if path not in command.targets:  # --in-place: the input is the target
            assert _digest(path) == digest, f"the input {path} changed"
    if command.leftovers():
        return "during the write"
    return "after the rename" if complete == len(command.targets) else "before the write"


def _kill_many(command: Command, prepare, name: str, parent_alone=lambda kill: False) -> Counter:
    """KILLS kills at seeded random moments; a Counter of when they landed.
    Should none land during the write (a loaded machine), up to KILLS more
    aimed ones are made until one does."""
    rng = random.Random(SEED + zlib.crc32(name.encode()))
    command.measure()
    start, end = command.window
    moments: Counter = Counter()
    left: Counter = Counter()  # kills that left a temporary, a backup, a weights scratch
    for kill in range(2 * KILLS):
        if kill >= KILLS and moments["during the write"]:
            break
        old = prepare(kill)
        aimed = kill % 2 == 0 or kill >= KILLS
        delay = rng.uniform(0, end - start if aimed else command.duration * 1.1)
        process = command.start()
        if aimed:  # from when the write shows (its first leftover)
            deadline = time.monotonic() + 2 * command.duration
            while not command.leftovers() and process.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.0005)
        time.sleep(delay)
        alone = parent_alone(kill)
        try:
            if alone:
                os.kill(process.pid, signal.SIGKILL)
            else:
                os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, stderr = process.communicate(timeout=120)  # an orphaned worker's too
        if alone:  # its orphaned workers end on their own, quietly
            assert b"Traceback" not in stderr, stderr.decode()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    os.killpg(process.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("an orphaned worker did not end")
        if process.returncode == -signal.SIGKILL:
            moment = _check_after_kill(command, old)
        else:
            assert process.returncode == 0, f"finished with {process.returncode}"
            moment = "finished before the kill"
            _check_after_kill(command, old)
        moments[moment] += 1
        left.update({_leftover_kind(name) for name in command.leftovers()})
        if command.leftovers():  # the next run on the target cleans them
            command.run()
    command.run()
    kills = sum(moments.values())
    print(f"\n{name}: {kills} kills, {dict(moments)}; left {dict(left)}")
    print(f"(an un-killed run writes from {start:.2f} to {end:.2f} s)")
    return moments


def _reset(target: Path, contents: bytes | None) -> bytes | None:
    if contents is None:
        target.unlink(missing_ok=True)
    else:
        target.write_bytes(contents)
    return contents


def test_kills_during_fix_to_a_new_or_old_output(tmp_path):
    source = _big_archive(tmp_path / "big.keras")
    target = tmp_path / "out.keras"
    command = Command(tmp_path, ["fix", source, "-o", target, "--keras", "3.4"], [target], [source])
    moments = _kill_many(
        command, lambda kill: {target: _reset(target, OLD if kill % 4 >= 2 else None)}, "fix -o"
    )
    assert moments["during the write"] >= 1


def test_kills_during_a_keras2_conversion(tmp_path):
    """The Keras 2 path: weights re-laid in a scratch directory, then zipped."""
    source = tmp_path / "keras2.h5"
    shutil.copyfile(KERAS2, source)
    target = tmp_path / "out.keras"
    command = Command(tmp_path, ["fix", source, "-o", target], [target], [source])
    moments = _kill_many(
        command,
        lambda kill: {target: _reset(target, OLD if kill % 4 >= 2 else None)},
        "fix keras2.h5 -o",
    )
    assert moments["during the write"] >= 1


def test_kills_during_fix_in_place(tmp_path):
    source = _big_archive(tmp_path / "big.keras")
    original = source.read_bytes()
    command = Command(tmp_path, ["fix", source, "--in-place", "--keras", "3.4"], [source], [source])

    def prepare(kill):
        return {source: _reset(source, original)}

    prepare(0)
    moments = _kill_many(command, prepare, "fix --in-place")
    assert moments["during the write"] >= 1


def test_kills_during_batch(tmp_path):
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    zoo.mkdir()
    sources = [_big_archive(zoo / "big.keras"), zoo / "keras2.h5"]
    shutil.copyfile(KERAS2, sources[1])
    targets = [out / "big.keras", out / "keras2.h5"]
    args = ["batch", zoo, "-o", out, "--keras", "3.4", "-j", "1"]
    command = Command(tmp_path, args, targets, sources)

    def prepare(kill):
        out.mkdir(exist_ok=True)
        return {t: _reset(t, OLD if kill % 4 >= 2 else None) for t in targets}

    moments = _kill_many(command, prepare, "batch", parent_alone=lambda kill: kill % 4 == 1)
    assert moments["during the write"] >= 1
