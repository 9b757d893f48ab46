"""The Keras releases of the project's development: pins, cached environments, a probe.

Development only (not in the wheel): shared by the tests (``tests/conftest.py`` puts
this folder on ``sys.path``), ``dev/generate_schemas.py`` and the fixture scripts of
``fixtures/``. ``RELEASES`` is the one pin table; ``PROVING`` the releases the test
suite loads archives in.

A repair is only proven when the Keras release that fails on the original archive
loads the repaired one. This module builds (once, cached under ``<repo>/.venvs/``) a
minimal environment per release -- Keras, the JAX CPU backend and a jax/numpy/h5py of
the same period, no TensorFlow -- and runs ``kerasrepair/probe_child.py`` in it, in a fresh
child process::

    from releases import probe

    result = probe("3.4.1", "fixed.keras", reference="model.npz")
    assert result["status"] == "ok", result  # within probe_child's tolerance

    # the original and its repair, in one process of one release: bit for bit
    result = probe("3.15.1", "fixed.keras", compare_with="original.keras")
    assert result["compared"]["identical"], result

Standard library only at import (release mode of fixtures/make_release_models.py runs
it under any Keras 3 interpreter); no keras import here: the calling process may run
any Keras version (or none).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venvs"
FIXTURES = ROOT / "fixtures"
PROBE = ROOT / "kerasrepair" / "probe_child.py"  # also what `kerasrepair verify` runs
MARKER = ".kerasrepair-env.json"  # written last: an env without it is rebuilt

# Keras version -> pip requirements (Python 3.11, Linux x86_64, wheels only).
# Each set pins jax/jaxlib of the same period as the Keras release, and the packages
# whose newer releases break that jax: ml-dtypes (float8 names), scipy (jax < 0.4.25
# imports scipy.linalg.tril, removed in scipy 1.13) and numpy (< 2 before jax 0.4.31).
# h5py is the newest release with a cp311 wheel built against that numpy. Keras 3.0, 3.1,
# 3.2 and 3.3 import `packaging` without declaring it (3.4 declares it).
RELEASES: dict[str, list[str]] = {
    "3.0.0": [
        "keras==3.0.0",  # the first Keras 3: unlike 3.0.5, it cannot find keras.DTypePolicy
        "packaging==24.0",  # imported by keras 3.0, not declared
        "jax==0.4.23",
        "jaxlib==0.4.23",
        "ml-dtypes==0.3.2",
        "numpy==1.26.4",
        "scipy==1.12.0",
        "h5py==3.11.0",
    ],
    "3.0.5": [
        "keras==3.0.5",
        "packaging==24.0",  # imported by keras 3.0, not declared
        "jax==0.4.23",
        "jaxlib==0.4.23",
        "ml-dtypes==0.3.2",
        "numpy==1.26.4",
        "scipy==1.12.0",
        "h5py==3.11.0",
    ],
    "3.1.1": [
        "keras==3.1.1",
        "packaging==24.0",  # imported by keras 3.1, not declared
        "jax==0.4.25",
        "jaxlib==0.4.25",
        "ml-dtypes==0.3.2",
        "numpy==1.26.4",
        "scipy==1.12.0",
        "h5py==3.11.0",
    ],
    "3.2.1": [
        "keras==3.2.1",
        "packaging==24.0",  # imported by keras 3.2, not declared
        "jax==0.4.26",
        "jaxlib==0.4.26",
        "ml-dtypes==0.4.0",
        "numpy==1.26.4",
        "scipy==1.13.1",
        "h5py==3.11.0",
    ],
    "3.3.3": [
        "keras==3.3.3",
        "packaging==24.0",  # imported by keras 3.3, not declared
        "jax==0.4.26",
        "jaxlib==0.4.26",
        "ml-dtypes==0.4.0",
        "numpy==1.26.4",
        "scipy==1.13.1",
        "h5py==3.11.0",
    ],
    "3.4.1": [
        "keras==3.4.1",
        "jax==0.4.30",
        "jaxlib==0.4.30",
        "ml-dtypes==0.4.0",
        "numpy==1.26.4",
        "scipy==1.13.1",
        "h5py==3.11.0",
    ],
    "3.5.0": [
        "keras==3.5.0",
        "jax==0.4.31",
        "jaxlib==0.4.31",
        "ml-dtypes==0.4.0",
        "numpy==1.26.4",
        "scipy==1.13.1",
        "h5py==3.11.0",
    ],
    "3.6.0": [
        "keras==3.6.0",
        "jax==0.4.34",
        "jaxlib==0.4.34",
        "ml-dtypes==0.5.0",
        "numpy==2.1.3",
        "scipy==1.14.1",
        "h5py==3.12.1",
    ],
    "3.7.0": [
        "keras==3.7.0",
        "jax==0.4.35",
        "jaxlib==0.4.35",
        "ml-dtypes==0.5.0",
        "numpy==2.1.3",
        "scipy==1.14.1",
        "h5py==3.12.1",
    ],
    "3.8.0": [
        "keras==3.8.0",
        "jax==0.4.38",
        "jaxlib==0.4.38",
        "ml-dtypes==0.5.0",
        "numpy==2.2.1",
        "scipy==1.14.1",
        "h5py==3.12.1",
    ],
    "3.9.2": [
        "keras==3.9.2",
        "jax==0.5.3",
        "jaxlib==0.5.3",
        "ml-dtypes==0.5.1",
        "numpy==2.2.4",
        "scipy==1.15.2",
        "h5py==3.13.0",
    ],
    "3.10.0": [
        "keras==3.10.0",
        "jax==0.6.0",
        "jaxlib==0.6.0",
        "ml-dtypes==0.5.1",
        "numpy==2.2.5",
        "scipy==1.15.3",
        "h5py==3.13.0",
    ],
    "3.11.3": [
        "keras==3.11.3",
        "jax==0.7.1",
        "jaxlib==0.7.1",
        "ml-dtypes==0.5.3",
        "numpy==2.3.2",
        "scipy==1.16.1",
        "h5py==3.14.0",
    ],
    "3.12.4": [
        "keras==3.12.4",
        "jax==0.8.0",  # of the 3.12 line (Oct 2025); 3.12.4 itself is a later backport
        "jaxlib==0.8.0",
        "ml-dtypes==0.5.3",
        "numpy==2.3.4",
        "scipy==1.16.2",
        "h5py==3.15.1",
    ],
    "3.13.2": [
        "keras==3.13.2",
        "jax==0.9.0",
        "jaxlib==0.9.0",
        "ml-dtypes==0.5.4",
        "numpy==2.4.1",
        "scipy==1.17.0",
        "h5py==3.15.1",
    ],
    "3.14.1": [
        "keras==3.14.1",
        "jax==0.10.0",
        "jaxlib==0.10.0",
        "ml-dtypes==0.5.4",
        "numpy==2.4.4",
        "scipy==1.17.1",
        "h5py==3.16.0",
    ],
    "3.15.1": ["keras==3.15.1", "jax==0.10.2", "jaxlib==0.10.2"],
}

# The releases the test suite loads archives in (each a cached env of ~1.3 GB, ~45 s
# to build): where the repairs and the checks are proven. The others in RELEASES
# saved fixtures; what they did with them is recorded in fixtures/manifest.json.
PROVING = ("3.0.0", "3.0.5", "3.2.1", "3.3.3", "3.4.1", "3.6.0", "3.7.0", "3.10.0", "3.15.1")

STATUSES = ("ok", "load_error", "call_error", "mismatch", "crashed", "timeout", "probe_error")


def _installed_keras() -> str | None:
    try:
        return importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return None


def venv_dir(version: str) -> Path:
    return VENVS / f"keras-{version}"


def _interpreter(env: Path) -> Path:
    return env / "bin" / "python"


def _ready(env: Path, requirements: list[str]) -> bool:
    try:
        marker = json.loads((env / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("requirements") == requirements and _interpreter(env).exists()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def python_for(version: str) -> Path:
    """The interpreter of an environment with Keras ``version`` (built on first use).

    The current interpreter when it already has exactly that Keras installed.
    Otherwise ``<repo>/.venvs/keras-<version>/bin/python``: created with
    ``sys.executable -m venv`` and the pins of ``RELEASES[version]``, under a file
    lock so parallel test processes build it once. A marker file written last
    records the pins; an env without it (a half-built one) or with other pins is
    removed and rebuilt. Raises ``KeyError`` for an unknown version and
    ``RuntimeError`` (with pip's output) when the build fails.
    """
    if _installed_keras() == version:
        return Path(sys.executable)
    requirements = RELEASES[version]
    env = venv_dir(version)
    if _ready(env, requirements):
        return _interpreter(env)
    with _locked(VENVS / f"keras-{version}.lock"):
        if _ready(env, requirements):  # another process built it while we waited
            return _interpreter(env)
        shutil.rmtree(env, ignore_errors=True)
        commands = [
            [sys.executable, "-m", "venv", str(env)],
            [
                str(_interpreter(env)),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                *requirements,
            ],
        ]
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(
                    f"building the Keras {version} env failed: {' '.join(command)}\n"
                    f"{done.stdout}\n{done.stderr}"
                )
        freeze = subprocess.run(
            [str(_interpreter(env)), "-m", "pip", "freeze", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
        ).stdout.split()
        marker = {"keras": version, "requirements": requirements, "freeze": freeze}
        tmp = env / (MARKER + ".tmp")
        tmp.write_text(json.dumps(marker, indent=1) + "\n")
        tmp.replace(env / MARKER)
    return _interpreter(env)


def _child_env(custom_objects_module: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONHASHSEED="0")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if custom_objects_module:
        env["PYTHONPATH"] = str(FIXTURES)
    return env


def probe(
    version: str,
    archive: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    custom_objects_module: str | None = None,
    safe_mode: bool = True,
    timeout: float = 600,
    write_reference: str | os.PathLike | None = None,
    compare_with: str | os.PathLike | None = None,
    tolerance: float | None = None,
) -> dict:
    """Load ``archive`` with Keras ``version`` in a fresh process; predict and compare.

    Returns ``{"keras", "status", "exception", "message", "max_abs_diff", "warnings"}``
    plus ``requested`` (``version``), ``jax``, ``python``, ``stage`` (``reference``,
    ``import``, ``load`` or ``predict``: how far the child got) and ``detail`` (the
    root cause when the first line of the error is only a wrapper such as
    "Exception encountered when calling Rescaling.call()."). ``keras`` is the version
    the child actually imported (``None`` if it never reported).

    ``status`` is ``ok``, ``load_error``, ``call_error`` (load worked, predict
    raised), ``mismatch`` (predictions differ from the reference beyond the tolerance
    of ``kerasrepair/probe_child.py``: rtol = atol = 1e-6 for float32), ``crashed``
    (the child died: ``returncode`` and the last line of stderr), ``timeout`` or
    ``probe_error`` (the reference could not be read, or keras could not be
    imported). Without ``reference`` (or ``compare_with``) a successful load is ``ok``.
    ``tolerance`` widens rtol = atol (a reference made by another framework: tf.keras).

    ``custom_objects_module`` is imported from ``fixtures/`` before loading (e.g.
    ``"custom_objects"``, which registers the fixture classes). ``write_reference``
    saves generated inputs and this release's predictions on them there (an
    ``.npz`` to compare another archive with, in the same release).

    ``compare_with`` (another archive, e.g. the original of a repaired ``archive``) is
    loaded in the same child after ``archive``, and both predict on the same inputs
    (the reference's, else generated ones): ``compared`` holds its status and the
    ``max_abs_diff``, ``within_tolerance`` and ``identical`` of the two predictions
    (``None`` without ``compare_with``). Without ``reference``, ``status`` and
    ``max_abs_diff`` are against its predictions.
    """
    from kerasrepair.verify import run_probe

    result = run_probe(
        python_for(version),
        archive,
        reference=reference,
        write_reference=write_reference,
        compare_with=compare_with,
        unsafe=not safe_mode,
        custom_objects_module=custom_objects_module,
        env=_child_env(custom_objects_module),
        timeout=timeout,
        tolerance=tolerance,
    )
    return {"requested": version, "warnings": [], "compared": None, **result}


def probe_many(version: str, jobs: list[dict], timeout: float = 3600) -> list[dict]:
    """`probe` of each ``{"archive", "reference"}`` job, all in one process of
    Keras ``version`` (dev/probe_many.py): the same statuses, a few seconds of
    startup for the lot. A job the child did not reach (it died or ran out of
    ``timeout``) is probed on its own."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kerasrepair-probe-many-") as scratch:
        jobs_file = Path(scratch) / "jobs.json"
        out = Path(scratch) / "out.json"
        jobs_file.write_text(json.dumps([{k: str(v) for k, v in job.items()} for job in jobs]))
        command = [str(python_for(version)), str(ROOT / "dev" / "probe_many.py"), str(jobs_file)]
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [*command, str(out)],
                cwd=scratch,
                env=_child_env(None),
                capture_output=True,
                timeout=timeout,
            )
        try:
            results = json.loads(out.read_text())
        except (OSError, ValueError):
            results = []
    for job in jobs[len(results) :]:
        results.append(probe(version, job["archive"], job.get("reference")))
    return [{"requested": version, **result} for result in results]
