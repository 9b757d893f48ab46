"""The compatibility matrix: archives saved by every Keras 3 minor release,
checked, ported and loaded in each target release (issue 11's proof).

    .venv/bin/python dev/compat_matrix.py                     # every model, every release
    .venv/bin/python dev/compat_matrix.py --names layer_zoo healthy_mlp --targets 3.0.0 3.3.3

For every archive `fixtures/releases/keras-<saved by>/<name>.keras` and every
target release it prints two matrices:

1. `check --keras target` against the real load there (fresh process,
   `releases.probe`): `ok` when check predicts the outcome (no error and it
   loads with the reference predictions, or an error and it does not), `MISS`
   when check says nothing and the load fails, `FALSE` when check reports an
   error and the load works.
2. after `fix --keras target`: `ok` when the port loads there with the
   reference predictions and the optimizer's iteration count of the original
   (as loaded by the release that saved it), `left` when fix reports what the
   target cannot express (and writes nothing), `FAIL` otherwise; `-` where the
   original already loads (nothing to port).

Each release's environment is built on first use (dev/releases.py); the
loads of one release run in one process of it (`releases.probe_many`), each
judged as `releases.probe` judges it. The figures go to stdout; `--json FILE`
keeps every cell.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import releases  # noqa: E402

from kerasrepair import check_archive, fix_archive  # noqa: E402
from kerasrepair.context import Options  # noqa: E402

FIXTURES = ROOT / "fixtures" / "releases"
LOADS = ("ok",)
# the models the matrix is made of (issue 11's list): saved by every minor release
# (fixtures/make_release_models.py); healthy_mlp by the PROVING releases
NAMES = (
    "layer_zoo",
    "mixed_precision_mlp",
    "sequential_nested_functional",
    "ops_graph",
    "healthy_mlp",
)  # probe statuses that count as "loads with the reference predictions"


def saved_by(name: str) -> list[str]:
    found = [path.parent.name.removeprefix("keras-") for path in FIXTURES.glob(f"*/{name}.keras")]
    return sorted(found, key=version_key)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def judge(archive: Path, target: str, real: dict) -> dict:
    """`check --keras target` against the real load there (`real`, a probe)."""
    found = check_archive(archive, target).findings
    errors = [f.code for f in found if f.severity == "error"]
    loads = real["status"] in LOADS
    result = {
        "check_errors": sorted(set(errors)),
        "real": real["status"],
        "real_error": real.get("detail") or real.get("message"),
    }
    if loads == (not errors):
        result["check"] = "ok"
    else:
        result["check"] = "FALSE" if loads else "MISS"
    result["port"] = "-" if loads else None
    return result


def port(archive: Path, target: str, fixed: Path, result: dict) -> bool:
    """`fix --keras target` into `fixed`; False (and the cell decided) when fix
    reports what the target cannot express."""
    fixing = fix_archive(archive, fixed, Options(keras=target))
    if fixing.left:
        result["port"] = "left"
        result["left"] = sorted({f.code for f in fixing.left})
        return False
    return True


def ported(result: dict, after: dict, original_iterations) -> None:
    iterations_equal = after.get("optimizer_iterations") == original_iterations
    result["port"] = "ok" if after["status"] in LOADS and iterations_equal else "FAIL"
    result["after"] = after["status"]
    result["after_error"] = after.get("detail") or after.get("message")
    result["iterations"] = [after.get("optimizer_iterations"), original_iterations]


def table(rows: dict, targets: list[str], key: str) -> str:
    width = max(7, *(len(t) for t in targets))
    lines = ["saved by  " + " ".join(t.rjust(width) for t in targets)]
    for saver, cells in rows.items():
        lines.append(saver.ljust(9) + " " + " ".join(cells[t][key].rjust(width) for t in targets))
    return "\n".join(lines)


def job(archive: Path) -> dict:
    return {"archive": archive, "reference": archive.with_suffix(".npz")}


def matrix(names: list[str], targets: list[str], savers: list[str] | None, scratch: Path):
    """Every cell of every name: name -> saved by -> target -> cell. The loads
    run in one process per release (`releases.probe_many`)."""
    archives = {
        (name, saver): FIXTURES / f"keras-{saver}" / f"{name}.keras"
        for name in names
        for saver in saved_by(name)
        if not savers or saver in savers
    }
    started = time.monotonic()
    iterations = {}
    for saver in sorted({s for _, s in archives}, key=version_key):
        keys = [key for key in archives if key[1] == saver]
        own = releases.probe_many(saver, [job(archives[key]) for key in keys])
        iterations.update(
            {key: r.get("optimizer_iterations") for key, r in zip(keys, own, strict=True)}
        )
    cells = {key: {} for key in archives}
    for target in targets:
        keys = list(archives)
        real = releases.probe_many(target, [job(archives[key]) for key in keys])
        jobs, pending = [], []
        for key, probed in zip(keys, real, strict=True):
            result = cells[key][target] = judge(archives[key], target, probed)
            if result["port"] is None:
                fixed = scratch / f"{key[0]}-{key[1]}-{target}.keras"
                if port(archives[key], target, fixed, result):
                    jobs.append({"archive": fixed, "reference": archives[key].with_suffix(".npz")})
                    pending.append(key)
        for key, after in zip(pending, releases.probe_many(target, jobs), strict=True):
            ported(cells[key][target], after, iterations[key])
        print(f"# target {target}: {time.monotonic() - started:.0f} s", flush=True)
    everything: dict = {}
    for (name, saver), row in cells.items():
        everything.setdefault(name, {})[saver] = row
    return everything


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=list(NAMES))
    parser.add_argument("--targets", nargs="+", default=list(releases.RELEASES))
    parser.add_argument("--saved-by", nargs="+", help="only the archives of these releases")
    parser.add_argument("--json", type=Path, help="write every cell here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kerasrepair-matrix-") as scratch:
        everything = matrix(args.names, args.targets, args.saved_by, Path(scratch))
    for name, rows in everything.items():
        report(name, rows, args.targets)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


def report(name: str, rows: dict, targets: list[str]) -> None:
    cells = [c for row in rows.values() for c in row.values()]
    right = sum(c["check"] == "ok" for c in cells)
    ported = [c for c in cells if c["port"] != "-"]
    print(f"\n{name}: check predicts the real load in {right} of {len(cells)} pairs")
    print(table(rows, targets, "check"))
    good = sum(c["port"] in ("ok", "left") for c in ported)
    print(
        f"\n{name}: of {len(ported)} pairs that fail as saved, {good} are ported "
        "(loads with the predictions and iterations) or reported unfixable"
    )
    print(table(rows, targets, "port"))
    for saver, row in rows.items():
        for target, c in row.items():
            if c["check"] != "ok" or c["port"] == "FAIL":
                print(f"  {saver} -> {target}: {json.dumps(c)[:400]}")


if __name__ == "__main__":
    sys.exit(main())
