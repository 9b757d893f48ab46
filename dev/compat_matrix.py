"""The compatibility matrix: archives saved by every Keras 3 minor release,
checked, ported and loaded in each target release (issue 11's proof).

    .venv/bin/python dev/compat_matrix.py                     # layer_zoo, the proving releases
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

Each release's environment is built on first use (dev/releases.py). The
figures go to stdout; `--json FILE` keeps every cell.
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
LOADS = ("ok",)  # probe statuses that count as "loads with the reference predictions"


def saved_by(name: str) -> list[str]:
    found = [path.parent.name.removeprefix("keras-") for path in FIXTURES.glob(f"*/{name}.keras")]
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def cell(archive: Path, saver: str, target: str, original_iterations) -> dict:
    reference = archive.with_suffix(".npz")
    found = check_archive(archive, target).findings
    errors = [f.code for f in found if f.severity == "error"]
    real = releases.probe(target, archive, reference)
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
    if loads:
        result["port"] = "-"
        return result
    with tempfile.TemporaryDirectory() as scratch:
        fixed = Path(scratch) / "fixed.keras"
        fixing = fix_archive(archive, fixed, Options(keras=target))
        if fixing.left:
            result["port"] = "left"
            result["left"] = sorted({f.code for f in fixing.left})
            return result
        after = releases.probe(target, fixed, reference)
    iterations_equal = after.get("optimizer_iterations") == original_iterations
    result["port"] = "ok" if after["status"] in LOADS and iterations_equal else "FAIL"
    result["after"] = after["status"]
    result["after_error"] = after.get("detail") or after.get("message")
    result["iterations"] = [after.get("optimizer_iterations"), original_iterations]
    return result


def table(rows: dict, targets: list[str], key: str) -> str:
    width = max(7, *(len(t) for t in targets))
    lines = ["saved by  " + " ".join(t.rjust(width) for t in targets)]
    for saver, cells in rows.items():
        lines.append(saver.ljust(9) + " " + " ".join(cells[t][key].rjust(width) for t in targets))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=["layer_zoo"])
    parser.add_argument("--targets", nargs="+", default=list(releases.PROVING))
    parser.add_argument("--saved-by", nargs="+", help="only the archives of these releases")
    parser.add_argument("--json", type=Path, help="write every cell here")
    args = parser.parse_args(argv)
    everything = {}
    for name in args.names:
        rows: dict[str, dict] = {}
        for saver in saved_by(name):
            if args.saved_by and saver not in args.saved_by:
                continue
            archive = FIXTURES / f"keras-{saver}" / f"{name}.keras"
            started = time.monotonic()
            own = releases.probe(saver, archive, archive.with_suffix(".npz"))
            iterations = own.get("optimizer_iterations")
            rows[saver] = {t: cell(archive, saver, t, iterations) for t in args.targets}
            print(f"# {name} saved by {saver}: {time.monotonic() - started:.0f} s", flush=True)
        everything[name] = rows
        cells = [c for row in rows.values() for c in row.values()]
        right = sum(c["check"] == "ok" for c in cells)
        ported = [c for c in cells if c["port"] != "-"]
        print(f"\n{name}: check predicts the real load in {right} of {len(cells)} pairs")
        print(table(rows, args.targets, "check"))
        good = sum(c["port"] in ("ok", "left") for c in ported)
        print(
            f"\n{name}: of {len(ported)} pairs that fail as saved, {good} are ported "
            "(loads with the predictions and iterations) or reported unfixable"
        )
        print(table(rows, args.targets, "port"))
        for saver, row in rows.items():
            for target, c in row.items():
                if c["check"] != "ok" or c["port"] == "FAIL":
                    print(f"  {saver} -> {target}: {json.dumps(c)[:400]}")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
