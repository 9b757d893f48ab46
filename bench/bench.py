"""Benchmarks against the real alternatives, whole process, median of runs.

    .venv/bin/python bench/make_archives.py    # once: ~269 MB archives in bench/cache/
    .venv/bin/python bench/bench.py [--runs 5]

Compares
  * `kerasrepair inspect` with Keras `load_model` + `model.summary()`;
  * `kerasrepair check` (against the release that saved it, and against 3.10,
    where every layer has findings) with Keras `load_model`, the other way to
    learn whether an archive loads, and with itself reading the weights tree in
    the same process (KERASREPAIR_PREFETCH=0) rather than in a forked child;
  * the raw-copy writer (copy, then re-open and CRC-check) with `cp`, and
    `kerasrepair fix --keras 3.10` (a port: 1,038 arguments dropped) with `cp`;
  * `kerasrepair fix` of an archive with one numpy literal, which its own
    release (3.15.1, the default target) loads: nothing to repair, so a
    checked copy (the literal breaks 3.0-3.4 only), with `cp` and with a Keras
    `load_model` + `save` round trip;
  * `kerasrepair fix old.h5 -o new.keras` of a Keras 2 EfficientNetB0 (saved by
    tf.keras 2.15: `.venvs/tf-2.15/bin/python dev/keras2_applications.py --save`)
    with Keras's load_model + save, which fails on that file (timed on the
    `.h5` kerasrepair repaired as HDF5) and with `cp`;
and prints each median and the ratio. Every command runs as its own process,
as a user would run it, so start-up and imports count.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
PYTHON = sys.executable
BIN = Path(PYTHON).parent
ENV = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}


def compile_kerasrepair() -> None:
    """Write the bytecode of the kerasrepair that `kerasrepair` runs, as pip does
    at install: an editable install under PYTHONDONTWRITEBYTECODE=1 would
    compile every module changed since its bytecode was written, at each run
    (0.1-0.2 s), which no installed copy does."""
    import kerasrepair

    compileall.compile_dir(Path(kerasrepair.__file__).parent, quiet=1)


def timed(command: list[str], runs: int, before=None, statuses=(0,), env=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        # no write of an earlier run left pending: the kernel's writeback of
        # the 270 MB outputs before (2.7 GB by the `fix` runs) throttles the
        # writes of the next (0.05-0.1 s a run here, and seconds at times)
        os.sync()
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, env=env or ENV)
        times.append(time.perf_counter() - start)
        if done.returncode not in statuses:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}")
    return statistics.median(times)


def peak_rss(command: list[str], before=None) -> float:
    """The peak resident memory of one run of `command`, in MiB."""
    if before:
        before()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=ENV)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def report(label: str, ours: float, theirs: float, their_label: str) -> None:
    print(
        f"{label:<34} {ours:8.3f} s   {their_label:<30} {theirs:8.3f} s   "
        f"ratio {theirs / ours:6.1f}x faster"
        if ours < theirs
        else f"{label:<34} {ours:8.3f} s   {their_label:<30} {theirs:8.3f} s   "
        f"ratio {ours / theirs:6.2f}x of theirs"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--archive", type=Path, default=CACHE / "efficientnetb7.keras")
    args = parser.parse_args()
    archive = args.archive
    if not archive.exists():
        print(f"{archive} is missing: run bench/make_archives.py first", file=sys.stderr)
        return 2
    print(f"archive: {archive} ({archive.stat().st_size:,} bytes), median of {args.runs} runs")
    compile_kerasrepair()
    kerasrepair = [str(BIN / "kerasrepair")]
    subprocess.run([*kerasrepair, "inspect", str(archive)], check=True, stdout=subprocess.DEVNULL)

    inspect = timed([*kerasrepair, "inspect", str(archive)], args.runs)
    inspect_json = timed([*kerasrepair, "inspect", "--json", str(archive)], args.runs)
    keras_load = timed(
        [
            PYTHON,
            "-c",
            "import sys, keras; m = keras.saving.load_model(sys.argv[1]); m.summary()",
            str(archive),
        ],
        max(1, min(args.runs, 3)),
    )
    report("kerasrepair inspect", inspect, keras_load, "keras load_model + summary")
    report("kerasrepair inspect --json", inspect_json, keras_load, "keras load_model + summary")
    check = timed([*kerasrepair, "check", str(archive)], args.runs)
    check_old = timed(
        [*kerasrepair, "check", "--keras", "3.10", str(archive)], args.runs, None, (1,)
    )
    keras_load_only = timed(
        [PYTHON, "-c", "import sys, keras; keras.saving.load_model(sys.argv[1])", str(archive)],
        max(1, min(args.runs, 3)),
    )
    one_process = dict(ENV, KERASREPAIR_PREFETCH="0")  # the weights read in the same process
    check_alone = timed(
        [*kerasrepair, "check", "--keras", "3.10", str(archive)], args.runs, None, (1,), one_process
    )
    report("kerasrepair check", check, keras_load_only, "keras load_model")
    report("kerasrepair check --keras 3.10", check_old, keras_load_only, "keras load_model")
    report("kerasrepair check --keras 3.10", check_old, check_alone, "the same in one process")

    with tempfile.TemporaryDirectory(dir=HERE) as scratch:
        copy_target = Path(scratch) / "copy.keras"
        written = Path(scratch) / "written.keras"

        def clear():
            for path in (copy_target, written):
                path.unlink(missing_ok=True)

        cp = timed(["cp", str(archive), str(copy_target)], args.runs, clear)
        write = timed(
            [
                PYTHON,
                "-c",
                "import sys; from kerasrepair import open_archive, write_archive\n"
                "with open_archive(sys.argv[1]) as a: write_archive(a, sys.argv[2])",
                str(archive),
                str(written),
            ],
            args.runs,
            clear,
        )
        report("writer (raw copy + CRC check)", write, cp, "cp")
        copy_only = timed(
            [
                PYTHON,
                "-c",
                "import sys; from kerasrepair import open_archive\n"
                "from kerasrepair.writer import _write\nfrom pathlib import Path\n"
                "with open_archive(sys.argv[1]) as a:\n"
                "    Path(sys.argv[2]).touch()  # _write fills the temporary the writer makes\n"
                "    _write(a, Path(sys.argv[2]), {}, set(), durable=False)",
                str(archive),
                str(written),
            ],
            args.runs,
            clear,
        )
        report("writer, copy only (no check)", copy_only, cp, "cp")
        port = timed(
            [*kerasrepair, "fix", str(archive), "--keras", "3.10", "-o", str(written)],
            args.runs,
            clear,
        )
        report("kerasrepair fix --keras 3.10", port, cp, "cp")

        numpy_archive = CACHE / "efficientnetb7_numpy.keras"
        if numpy_archive.exists():
            fix = timed(
                [*kerasrepair, "fix", str(numpy_archive), "-o", str(written)], args.runs, clear
            )
            cp_numpy = timed(["cp", str(numpy_archive), str(copy_target)], args.runs, clear)
            keras_round_trip = timed(
                [
                    PYTHON,
                    "-c",
                    "import sys, keras\nkeras.saving.load_model(sys.argv[1]).save(sys.argv[2])",
                    str(numpy_archive),
                    str(copy_target),
                ],
                max(1, min(args.runs, 3)),
                clear,
            )
            print(f"kerasrepair fix, nothing to repair - cp = {fix - cp_numpy:.3f} s")
            fix_command = [*kerasrepair, "fix", str(numpy_archive), "-o", str(written)]
            print(f"kerasrepair fix peak RSS: {peak_rss(fix_command, clear):.0f} MiB")
            report("kerasrepair fix, nothing to repair", fix, keras_round_trip, "keras load + save")
        keras2_h5 = CACHE / "keras2-apps" / "EfficientNetB0.h5"
        if keras2_h5.exists():
            bench_keras2(keras2_h5, Path(scratch), args.runs, kerasrepair)
        else:
            print(f"{keras2_h5} is missing: see bench/make_archives.py for the Keras 2 model")
    shutil.rmtree(CACHE / "__pycache__", ignore_errors=True)
    return 0


def bench_keras2(source: Path, scratch: Path, runs: int, kerasrepair: list[str]) -> None:
    """A Keras 2 (tf.keras 2.15) EfficientNetB0 .h5 converted to .keras: kerasrepair,
    against Keras 3's own load_model + save, which fails on the original; timed on
    the .h5 kerasrepair repaired in place (`fix -o new.h5`), which it reads."""
    converted = scratch / "converted.keras"
    repaired = scratch / "repaired.h5"
    saved = scratch / "saved.keras"

    def clear():
        for path in (converted, saved):
            path.unlink(missing_ok=True)

    print(f"Keras 2 model: {source} ({source.stat().st_size:,} bytes)")
    convert = [*kerasrepair, "fix", str(source), "-o", str(converted)]
    fix = timed(convert, runs, clear)
    cp = timed(["cp", str(source), str(saved)], runs, clear)
    print(f"kerasrepair fix .h5 -> .keras peak RSS: {peak_rss(convert, clear):.0f} MiB")
    round_trip = [
        PYTHON,
        "-c",
        "import sys, keras\nkeras.saving.load_model(sys.argv[1]).save(sys.argv[2])",
    ]
    original = subprocess.run(
        [*round_trip, str(source), str(saved)], capture_output=True, text=True, env=ENV
    )
    said = (original.stderr.strip().splitlines() or ["?"])[-1][:100]
    print(f"keras load_model + save of the original .h5: exit {original.returncode} ({said})")
    subprocess.run(
        [*kerasrepair, "fix", str(source), "-o", str(repaired)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    keras_round_trip = timed([*round_trip, str(repaired), str(saved)], max(1, min(runs, 3)), clear)
    report("kerasrepair fix .h5 -> .keras", fix, keras_round_trip, "keras load + save (repaired)")
    report("kerasrepair fix .h5 -> .keras", fix, cp, "cp")


if __name__ == "__main__":
    sys.exit(main())
