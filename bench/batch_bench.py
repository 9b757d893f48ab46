"""`kerasrepair batch` over a zoo of 1,000 archives, against a Keras loop.

    .venv/bin/python bench/make_archives.py      # once: EfficientNetB7 (~269 MB)
    .venv/bin/python bench/batch_bench.py        # builds bench/cache/zoo/, then times

The zoo: every archive of fixtures/ made by a real Keras release (healthy ones,
each broken kind kerasrepair repairs, saved by 3.0.0-3.15.1), copied under
varied names until there are 1,000, each copy made distinct (its
metadata.json's `date_saved` differs, so no copy is a duplicate to skip), the
hostile files of fixtures/hostile/, and the 269 MB EfficientNetB7 (a hard
link). Each run is one `kerasrepair batch` process; printed: archives per
second for `--check-only` and for fixing (`-o`), with `--jobs 1` and `--jobs 2`,
and with a Dask LocalCluster of 2 workers when Dask is installed; the peak RSS
of the largest process of the run; and the rate of a Keras loop (`load_model`
on each archive of a sample, one process) with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / "cache"
ZOO = CACHE / "zoo"
BIG = CACHE / "efficientnetb7.keras"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}


def real_archives() -> list[Path]:
    """The fixtures made by real Keras releases (not the hostile ones, not Keras 2)."""
    found = sorted((ROOT / "fixtures" / "models").glob("*.keras"))
    found += sorted((ROOT / "fixtures" / "releases").glob("keras-*/*.keras"))
    return found


def distinct_copy(source: Path, target: Path, number: int) -> None:
    """`source` with another `date_saved` in metadata.json; every other entry as it is."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "metadata.json":  # the date as Keras writes it, another one
                saved = json.loads(data)
                hours, minutes = divmod(number, 60)
                saved["date_saved"] = (
                    f"2026-01-{1 + hours % 28:02d}@{hours % 24:02d}:{minutes:02d}:00"
                )
                data = json.dumps(saved).encode()
            zout.writestr(info, data)


def build(count: int) -> int:
    """bench/cache/zoo/ with `count` real archives, the hostile ones and the big one."""
    shutil.rmtree(ZOO, ignore_errors=True)
    sources = real_archives()
    for number in range(count):
        source = sources[number % len(sources)]
        target = ZOO / f"team-{number % 7}" / f"{source.parent.name}-{source.stem}-{number}.keras"
        target.parent.mkdir(parents=True, exist_ok=True)
        distinct_copy(source, target, number)
    for hostile in sorted((ROOT / "fixtures" / "hostile").glob("*.keras")):
        (ZOO / "hostile").mkdir(exist_ok=True)
        shutil.copyfile(hostile, ZOO / "hostile" / hostile.name)
    if BIG.exists():
        (ZOO / "big").mkdir(exist_ok=True)
        try:
            os.link(BIG, ZOO / "big" / BIG.name)
        except OSError:
            shutil.copyfile(BIG, ZOO / "big" / BIG.name)
    return sum(1 for _ in ZOO.rglob("*.keras"))


def run(args: list[str]) -> tuple[float, float, float]:
    """Seconds, the peak RSS (MiB) of the batch process itself and the largest
    peak a worker reported (`worker_peak_mib` of the report), for one run."""
    with tempfile.TemporaryDirectory(prefix="kerasrepair-zoo-report-") as scratch:
        report = Path(scratch) / "report.jsonl"
        start = time.perf_counter()
        child = subprocess.Popen(
            [str(BIN / "kerasrepair"), "batch", str(ZOO), *args, "--report", str(report)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) not in (0, 1, 2):
            raise SystemExit(f"batch {' '.join(args)} exited {status}")
        peaks = [json.loads(line).get("worker_peak_mib") or 0 for line in report.open()]
    return seconds, usage.ru_maxrss / 1024, max(peaks, default=0.0)


def keras_loop(sample: int) -> float:
    """Archives per second of a loop that loads each archive with Keras."""
    paths = [str(p) for p in sorted(ZOO.glob("team-*/*.keras"))[:sample]]
    code = (
        "import sys, time, keras\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "start = time.perf_counter()\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        keras.saving.load_model(path)\n"
        "    except Exception:\n"
        "        pass\n"
        "print(len(sys.argv[1:]) / (time.perf_counter() - start))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import custom_objects\n" + code, *paths],
        env={**ENV, "PYTHONPATH": str(ROOT / "fixtures")},
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="real archives in the zoo")
    parser.add_argument("--sample", type=int, default=100, help="archives the Keras loop loads")
    args = parser.parse_args()
    total = build(args.count)
    print(f"zoo: {total} archives ({args.count} real, hostile ones, the big one: {BIG.exists()})")
    runs = [
        ("check-only, --jobs 1", ["--check-only", "--jobs", "1"]),
        ("check-only, --jobs 2", ["--check-only", "--jobs", "2"]),
        ("fix, --jobs 1", ["-o", "{out}", "--jobs", "1"]),
        ("fix, --jobs 2", ["-o", "{out}", "--jobs", "2"]),
    ]
    try:
        import distributed  # noqa: F401

        runs.append(
            ("fix, Dask LocalCluster of 2", ["-o", "{out}", "--executor", "dask", "-j", "2"])
        )
    except ImportError:
        print("(no Dask: pip install 'kerasrepair[dask]' to time its executor)")
    rates = {}
    for name, command in runs:
        with tempfile.TemporaryDirectory(prefix="kerasrepair-zoo-out-") as out:
            seconds, own, worker = run([part.format(out=Path(out) / "fixed") for part in command])
        rates[name] = total / seconds
        print(
            f"{name:<30} {seconds:7.2f} s  {rates[name]:7.1f} archives/s  "
            f"peak RSS: batch {own:.0f} MiB, a worker {worker:.0f} MiB"
        )
    for jobs in ("check-only", "fix"):
        one, two = rates[f"{jobs}, --jobs 1"], rates[f"{jobs}, --jobs 2"]
        print(f"{jobs}: 2 workers are {two / one:.2f}x 1 worker")
    keras_rate = keras_loop(args.sample)
    print(f"Keras load_model loop ({args.sample} archives): {keras_rate:.1f} archives/s")
    print(f"batch fix --jobs 2 is {rates['fix, --jobs 2'] / keras_rate:.1f}x the Keras loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
