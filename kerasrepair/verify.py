"""`verify`: load an archive with real Keras, in a child process, and check it.

The child is `probe_child.py`, run as a script by any interpreter (another
virtual environment is another Keras release), so that nothing from the
archive is loaded into this process and a crash there cannot take us down.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .archive import open_archive, refuse_unreadable
from .errors import ArchiveError

CHILD = Path(__file__).resolve().with_name("probe_child.py")


def run_probe(
    python: str | os.PathLike,
    archive: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    write_reference: str | os.PathLike | None = None,
    compare_with: str | os.PathLike | None = None,
    unsafe: bool = False,
    custom_objects_module: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Run the child on one archive; its JSON result, or why there is none.
    `compare_with` (another archive) is loaded in the same child and predicted on
    the same inputs: its result is under "compared" (see probe_child.py).
    `env` replaces this process's environment for the child."""
    empty = dict.fromkeys(("keras", "exception", "max_abs_diff", "variables", "compared"))
    with tempfile.TemporaryDirectory(prefix="kerasrepair-probe-") as cwd:
        out = Path(cwd) / "result.json"
        args = [str(python), str(CHILD), "--out", str(out), os.path.abspath(archive)]
        if reference is not None:
            args += ["--reference", os.path.abspath(reference)]
        if write_reference is not None:
            args += ["--write-reference", os.path.abspath(write_reference)]
        if compare_with is not None:
            args += ["--compare-with", os.path.abspath(compare_with)]
        if custom_objects_module:
            args += ["--custom-objects", custom_objects_module]
        if unsafe:
            args.append("--unsafe")
        if tolerance:
            args += ["--tolerance", repr(tolerance)]
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("KERAS_BACKEND", "jax")
        child_env.setdefault("JAX_PLATFORMS", "cpu")
        try:
            done = subprocess.run(
                args, cwd=cwd, env=child_env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {**empty, "status": "timeout", "message": f"no result after {timeout} s"}
        except OSError as e:
            return {**empty, "status": "probe_error", "message": f"cannot run {python}: {e}"}
        try:
            return json.loads(out.read_text())
        except (OSError, ValueError):
            last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "")
            return {
                **empty,
                "status": "crashed",
                "returncode": done.returncode,
                "message": last or f"the child exited with code {done.returncode}",
            }


def verify(
    archive: str | os.PathLike,
    against: str | os.PathLike | None = None,
    python: str | os.PathLike | None = None,
    unsafe: bool = False,
    custom_objects_module: str | None = None,
) -> dict[str, Any]:
    """Load `archive` with the Keras of `python`; check its weights were restored
    and, with `against` (the original `.keras`, or a reference `.npz` with `x`
    and `y`), that it predicts what the original did. `custom_objects_module`
    is imported first (from the current directory or PYTHONPATH)."""
    python = Path(python).absolute() if python else Path(sys.executable)
    if not python.is_file():
        raise ArchiveError(str(python), "no such interpreter", "give a python that has keras")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    probe = functools.partial(
        run_probe, python, unsafe=unsafe, custom_objects_module=custom_objects_module, env=env
    )
    with open_archive(archive) as opened:  # bad input fails here, with one line
        tree = opened.weights()
        stored = None if tree.pickled else len(tree.model_variables)
    if against is not None:  # and a bad original or reference here, not in the child
        refuse_unreadable(against)
    report: dict[str, Any] = {"archive": str(archive), "python": str(python), "against": None}
    compared = False  # predictions were compared with the original's or a reference's
    if against is None:
        report["load"] = probe(archive)
    elif str(against).endswith(".npz"):
        report["against"] = str(against)
        report["load"] = probe(archive, reference=against)
        compared = True
    else:
        # The original is loaded in the same child, after the archive, and both
        # predict on the same inputs: a repair that changes nothing the model
        # computes gives identical predictions there (another process, or another
        # machine, may differ in the last bits).
        report["against"] = str(against)
        report["load"] = probe(archive, compare_with=against)
        original = report["load"].get("compared")
        if original is not None:
            report["original"] = original
            compared = original["status"] == "ok"
    loaded = report["load"].get("variables")
    report["weights"] = {
        "stored": stored,
        "loaded": loaded,
        "restored": stored is None or loaded == stored,
    }
    report["ok"] = (
        report["load"]["status"] == "ok"
        and report["weights"]["restored"]
        and (against is None or compared)
    )
    return report
