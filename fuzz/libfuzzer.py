"""The atheris entry point `fuzz/run.py` starts: `python -m fuzz.libfuzzer TARGET
[libFuzzer options] CORPUS...`. kerasrepair's modules are instrumented for
coverage as they are imported; the libraries it calls (zipfile, json, h5py,
numpy) are not."""

import contextlib
import hashlib
import importlib
import os
import pkgutil
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["kerasrepair"]):
    import kerasrepair

    for module in pkgutil.walk_packages(kerasrepair.__path__, "kerasrepair."):
        if module.name.endswith("__main__"):  # it runs the command line
            continue
        with contextlib.suppress(ImportError):  # an optional extra (dask) not installed
            importlib.import_module(module.name)

from fuzz.harness import innermost_frame  # noqa: E402
from fuzz.targets import TARGETS  # noqa: E402


def main() -> None:
    target = TARGETS[sys.argv[1]]
    keep_going = os.environ.get("KERASREPAIR_FUZZ_KEEP_GOING")
    if keep_going:
        target = _keep_going(target, Path(keep_going))
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


def _keep_going(target, crashes: Path):
    """`target`, saving the first input of each kind of exception (its type and
    the innermost frame of kerasrepair it passed) instead of stopping."""
    seen: set[str] = set()

    def run(data: bytes) -> None:
        try:
            target(data)
        except Exception as e:  # noqa: BLE001 (every crash is recorded)
            kind = f"{type(e).__name__} at {innermost_frame(e)}"
            if kind not in seen:
                seen.add(kind)
                name = hashlib.sha1(data).hexdigest()
                (crashes / f"crash-{name}").write_bytes(data)
                print(f"NEW CRASH {kind}: {str(e)[:200]!r} (crash-{name})", flush=True)

    return run


if __name__ == "__main__":
    main()
