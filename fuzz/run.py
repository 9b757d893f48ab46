"""Run the fuzzers for a while and say what they found.

    python fuzz/run.py atheris archive --seconds 300      # or: config, marshal
    python fuzz/run.py mutants --examples 2000 [--kinds config,hdf5] [--seed 0]
    python fuzz/run.py replay FILE...                     # what is still broken

`atheris TARGET`: coverage-guided fuzzing of one target of `fuzz/targets.py` (pip
installs atheris first if it is missing), seeded with a corpus built from the
fixtures; libFuzzer prints `cov:` (edges covered) and `exec/s` as it goes, and
the last lines are repeated at the end. Crashing inputs land in
`WORK/crashes-TARGET/` (WORK: `--work`, default `build/fuzz/`, which git ignores);
libFuzzer stops at the first, unless `--keep-going` (then the first input of each
kind of exception is saved, `NEW CRASH ...` printed, and fuzzing goes on).

`mutants`: the mutations of `fuzz/mutations.py` (`--examples` per kind, seeded)
through every command of `fuzz/harness.py` in this process; each distinct problem
is counted, and its first reproducer saved in `WORK/mutants/` with a line saying
what was done to which fixture.

Run it niced on a shared machine: `nice -n 10 python fuzz/run.py ...`.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "fuzz")
    commands = parser.add_subparsers(dest="command", required=True)
    fuzz = commands.add_parser("atheris", help="coverage-guided fuzzing of one target")
    fuzz.add_argument("target", choices=["archive", "config", "marshal"])
    fuzz.add_argument("--seconds", type=int, default=60)
    fuzz.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    fuzz.add_argument("--rss-limit-mb", type=int, default=2048)
    fuzz.add_argument(
        "--keep-going",
        action="store_true",
        help="go on after an exception, saving the first input of each kind (a hang still stops)",
    )
    mutants = commands.add_parser("mutants", help="mutants of the fixtures, every command")
    mutants.add_argument("--examples", type=int, default=200, help="per kind")
    mutants.add_argument("--kinds", default="zip_bytes,zip_fields,config,hdf5,npz")
    mutants.add_argument("--seed", type=int, default=0)
    replay = commands.add_parser("replay", help="every command on saved inputs, again")
    replay.add_argument("files", nargs="+", type=Path)
    one = commands.add_parser("replay-one", help=argparse.SUPPRESS)
    one.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "replay":
        return run_replay(args.files)
    if args.command == "replay-one":
        return _replay_one(args.file)
    if args.command == "atheris":
        limits = (args.timeout, args.rss_limit_mb, args.keep_going)
        return run_atheris(args.target, args.seconds, args.work, *limits)
    return run_mutants(args.kinds.split(","), args.examples, args.seed, args.work)


def run_atheris(
    target: str, seconds: int, work: Path, timeout: int, rss_limit_mb: int, keep_going: bool
) -> int:
    if importlib.util.find_spec("atheris") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "atheris"], check=True)
    from fuzz.targets import seeds

    corpus, crashes = work / f"corpus-{target}", work / f"crashes-{target}"
    crashes.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, data in seeds(target):
        (corpus / name).write_bytes(data)
        count += 1
    print(f"{target}: {count} seeds in {corpus}, crashes go to {crashes}/", flush=True)
    environment = {**os.environ, "KERASREPAIR_FUZZ_KEEP_GOING": str(crashes) if keep_going else ""}
    deadline = time.monotonic() + seconds
    runs, executions, last_stats = 0, 0, ""
    while True:  # with --keep-going, libFuzzer starts again on the corpus after a hang
        command = [
            sys.executable,
            "-m",
            "fuzz.libfuzzer",
            target,
            f"-max_total_time={max(1, int(deadline - time.monotonic()))}",
            f"-timeout={timeout}",
            f"-rss_limit_mb={rss_limit_mb}",
            f"-artifact_prefix={crashes}/",
            "-print_final_stats=1",
            str(corpus),
        ]
        status, stats, executed = _libfuzzer(command, environment)
        runs, executions, last_stats = runs + 1, executions + executed, stats or last_stats
        if status == 0 or not keep_going or deadline - time.monotonic() < 10:
            break
    found = sorted(p.name for p in crashes.iterdir())
    print(f"\n{target}: {runs} run(s), {executions} executions; exit {status}; last: {last_stats}")
    print(f"{target}: {len(found)} crashing inputs in {crashes}/: {', '.join(found[:10])}")
    return status


def _libfuzzer(command: list[str], environment: dict[str, str]) -> tuple[int, str, int]:
    """Run libFuzzer, passing its output on: its exit status, its last `cov:`
    line, and how many inputs it ran."""
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        bufsize=1,
        env=environment,
    )
    stats, executed = "", 0
    for line in child.stderr:
        sys.stderr.write(line)
        if " cov: " in line:
            stats = line.strip()
        if line.startswith("stat::number_of_executed_units:"):
            executed = int(line.split(":")[-1])
    return child.wait(), stats, executed


def run_mutants(kinds: list[str], examples: int, seed: int, work: Path) -> int:
    from fuzz import harness, mutations

    saved = work / "mutants"
    saved.mkdir(parents=True, exist_ok=True)
    tally: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    runs = 0
    for kind in kinds:
        for number in range(seed, seed + examples):
            draw = mutations.RandomDraw(zlib.crc32(f"{kind}-{number}".encode()))
            base = draw.choice(harness.bases_for(kind))
            mutant, what = mutations.MUTATORS[kind]((harness.FIXTURES / base).read_bytes(), draw)
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / f"mutant{Path(base).suffix}"
                path.write_bytes(mutant)
                found = harness.run_commands(path, Path(directory))
            runs += 1
            for violation in {v.signature: v for v in found}.values():
                tally[violation.signature] += 1
                if tally[violation.signature] == 1:
                    name = f"{kind}-{number}-{_slug(violation.signature)}{Path(base).suffix}"
                    (saved / name).write_bytes(mutant)
                    print(f"NEW {violation.signature}\n  {violation}\n  {base}: {what[:300]}")
                    print(f"  reproducer: {saved / name}", flush=True)
        print(f"{kind}: {examples} mutants done ({time.monotonic() - started:.0f} s)", flush=True)
    print(
        f"\n{runs} mutants x {len(harness.COMMANDS)} commands, "
        f"{time.monotonic() - started:.0f} s; distinct problems: {len(tally)}"
    )
    for signature, count in tally.most_common():
        print(f"{count:6}  {signature}")
    return 1 if tally else 0


def run_replay(files: list[Path], seconds: int = 120, memory: int = 4 << 30) -> int:
    """Every command on each file (reproducers, crashing inputs), each file in a
    child process (a hang or a crash in native code cannot be caught), with
    faulthandler on and `memory` bytes of address space (native code that
    allocates forever ends too): what is still broken."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    broken = 0
    for path in files:
        try:
            child = subprocess.run(
                [sys.executable, "-X", "faulthandler", __file__, "replay-one", str(path)],
                capture_output=True,
                text=True,
                timeout=seconds,
                preexec_fn=limited,
            )
            found = child.stdout.splitlines() or _died(child)
        except subprocess.TimeoutExpired:
            found = [f"hang: still running after {seconds} s"]
        broken += bool(found)
        print(f"{'BROKEN' if found else 'ok    '} {path}")
        for line in found:
            print(f"         {line.strip()[-300:]}")
    print(f"{broken} of {len(files)} still broken")
    return 1 if broken else 0


def _died(child: subprocess.CompletedProcess) -> list[str]:
    """How a replay child that printed nothing ended: nothing, or where it died
    (faulthandler's traceback of a hang in native code lists the innermost first)."""
    if child.returncode == 0:
        return []
    frames = [line.strip() for line in child.stderr.splitlines() if "/kerasrepair/" in line]
    where = frames[0].split("/kerasrepair/")[-1] if frames else child.stderr.strip()[-200:]
    if child.returncode < 0:  # a signal: SIGSEGV in native code, or SIGKILL
        return [f"died of signal {-child.returncode} at {where}"]
    return [f"died (exit {child.returncode}; out of memory, or a hang in native code?) at {where}"]


def _replay_one(path: Path) -> int:
    from fuzz import harness

    with tempfile.TemporaryDirectory() as directory:
        found = harness.run_commands(path, Path(directory))
    for signature in sorted({v.signature for v in found}):
        print(signature)
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text)[:60].strip("_")


if __name__ == "__main__":
    sys.exit(main())
