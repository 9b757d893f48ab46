"""Shared test set-up: real Keras on the JAX CPU backend, archive helpers, and the
assertions that compare predictions.

Tests that load archives in a Keras release environment (``releases.probe``,
``releases.python_for``, the schema generator) are marked ``releases``:
``pytest -m "not releases"`` runs the rest offline without building any
environment (an unmarked test that asks for one fails, see below).
"""

import os
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
MODELS = FIXTURES / "models"
HOSTILE = FIXTURES / "hostile"
DEV = ROOT / "dev"  # releases.py: the pin table, the cached envs, the probe
if str(DEV) not in sys.path:
    sys.path.insert(0, str(DEV))


@pytest.fixture(autouse=True)
def _release_envs_only_with_the_marker(request, monkeypatch):
    """Outside tests marked `releases`, asking for a release environment fails at once
    (instead of building one): `-m "not releases"` never builds or runs one."""
    if request.node.get_closest_marker("releases") is not None:
        return
    import releases

    def refuse(version):
        raise RuntimeError(
            f"{request.node.nodeid} asks for the Keras {version} environment: "
            "mark it @pytest.mark.releases"
        )

    monkeypatch.setattr(releases, "python_for", refuse)


@pytest.fixture(scope="session")
def keras():
    import keras

    assert keras.backend.backend() == "jax"
    return keras


@pytest.fixture(scope="session")
def saved(tmp_path_factory, keras):
    """Save a real Keras model; returns the archive path."""
    directory = tmp_path_factory.mktemp("saved")

    def save(model, name: str) -> Path:
        path = directory / f"{name}.keras"
        model.save(path)
        return path

    return save


def raw_entries(path: Path) -> dict[str, bytes]:
    """Each entry's local header and compressed bytes, exactly as stored."""
    from kerasrepair import open_archive

    data = path.read_bytes()
    with open_archive(path) as archive:
        return {e.name: data[e.header_offset : e.end_offset] for e in archive.entries}


def rezip(source: Path, target: Path, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """The same entries, re-compressed: what a user's `zip -r` produces."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    return target


# -- predictions
#
# A saved reference (.npz beside a fixture) was computed on the machine that made the
# fixtures; XLA's CPU results differ in the last bits between processors (and at times
# between runs), so predictions made now can only match it within a tolerance: the one
# of kerasrepair/probe_child.py (`tolerance`: rtol = atol = 1e-6 for float32, about 8
# ulps for outputs of order 1; a wiring or weight error shows as 1e-3 and more).
# Bit-for-bit equality is demanded only of two predictions made in one process: an
# archive and its original, loaded by the same release (`releases.probe(...,
# compare_with=original)`), or two models in this process.


def assert_matches_reference(result, context=None):
    """`result` of `releases.probe(..., reference)`: the archive loaded and predicted
    the saved reference's outputs within the tolerance (the child's `status`)."""
    assert result["status"] == "ok", (context, result)
    assert result["max_abs_diff"] is not None, (context, result)  # it was compared


def assert_identical_to_original(result, context=None):
    """`result` of `releases.probe(..., compare_with=original)`: both loaded in the
    same child, and predicted exactly the same on the same inputs."""
    compared = result["compared"]
    assert result["status"] == "ok" and compared is not None, (context, result)
    assert compared["status"] == "ok", (context, compared)
    assert compared["identical"] and compared["max_abs_diff"] == 0.0, (context, compared)


def assert_predicts_reference(predicted, expected):
    """Predictions made in this process against a saved reference's: the probe's rule."""
    from kerasrepair.probe_child import compare, tolerance

    worst, within, _ = compare(expected, predicted)
    assert worst is not None, "predictions do not have the reference's structure or shapes"
    assert within, f"max abs diff {worst} beyond the tolerance ({tolerance('float32')} f32)"


def codes_of(items) -> list:
    """The codes of findings or changes, in order."""
    return [item.code for item in items]
