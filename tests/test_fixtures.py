"""The committed fixtures are what the manifest says: made by the script kept
beside them, with the Keras version recorded, and (for healthy models) loading
in that Keras release with the predictions saved at creation time."""

import hashlib
import importlib.metadata
import json
import sys

import numpy as np
import pytest
from releases import PROVING

from conftest import FIXTURES, assert_matches_reference, assert_predicts_reference
from kerasrepair import ArchiveError, inspect_archive

MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
MODELS = {path: entry for path, entry in MANIFEST.items() if entry["kind"] != "hostile"}
HEALTHY = sorted(path for path, entry in MODELS.items() if entry["kind"] == "healthy")
INSTALLED = importlib.metadata.version("keras")


def _loads_in_a_release_env(path):
    """Saved by a release the suite proves with, other than this process's."""
    saved_by = MODELS[path]["keras_version"]
    return saved_by != INSTALLED and saved_by in PROVING


def _reference_inputs(reference):
    if "x" in reference:
        return reference["x"]
    if "x0" in reference:
        return [reference[f"x{i}"] for i in range(sum(k.startswith("x") for k in reference))]
    return {key[2:]: reference[key] for key in reference if key.startswith("x_")}


@pytest.mark.parametrize("path", sorted(MANIFEST))
def test_each_fixture_is_recorded(path):
    entry = MANIFEST[path]
    file = FIXTURES / path
    assert hashlib.sha256(file.read_bytes()).hexdigest() == entry["sha256"]
    assert (FIXTURES / entry["script"]).is_file()
    assert entry["kind"] in {"healthy", "broken", "hostile"}
    assert file.stat().st_size < 256 * 1024, "committed fixtures stay small"
    if entry["kind"] != "hostile":
        assert entry["keras_version"].startswith("3.")
        assert (FIXTURES / entry["reference"]["path"]).is_file()


@pytest.mark.parametrize("path", sorted(MODELS))
def test_every_model_fixture_is_inspectable(path):
    try:
        report = inspect_archive(FIXTURES / path)
    except ArchiveError as e:  # pragma: no cover - the message is the point
        pytest.fail(f"{path}: {e}")
    assert report["metadata"]["keras_version"] == MODELS[path]["keras_version"]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(path, marks=pytest.mark.releases) if _loads_in_a_release_env(path) else path
        for path in HEALTHY
    ],
)
def test_healthy_fixture_loads_and_predicts_its_reference(keras, path, monkeypatch):
    """In the release that saved it when the suite proves with that release;
    else the manifest's record of that load, and a load in the newest release.
    The reference was predicted on the machine that made the fixtures: equal
    within the tolerance of kerasrepair/probe_child.py, not bit for bit."""
    entry = MODELS[path]
    saved_by = entry["keras_version"]
    if keras.__version__ != saved_by:
        reference = FIXTURES / entry["reference"]["path"]
        if saved_by in PROVING:
            from releases import probe

            assert _loads_in_a_release_env(path)  # marked `releases`
            custom = (entry.get("custom_objects") or "").removesuffix(".py") or None
            assert_matches_reference(probe(saved_by, FIXTURES / path, reference, custom))
            return
        [observed] = entry["observed"][saved_by]["attempts"]
        assert_matches_reference(observed)
        assert entry["observed"][saved_by]["sha256"] == entry["sha256"]
    monkeypatch.syspath_prepend(str(FIXTURES))
    if entry.get("custom_objects"):
        __import__(entry["custom_objects"].removesuffix(".py"))
    model = keras.saving.load_model(FIXTURES / path)
    with np.load(FIXTURES / entry["reference"]["path"]) as reference:
        expected = reference["y"]
        predicted = model.predict(_reference_inputs(reference), verbose=0)
    assert_predicts_reference(predicted, expected)
    report = inspect_archive(FIXTURES / path)
    if report["weights"]["format"] == "h5":
        assert report["weights"]["params"] == model.count_params()
    sys.modules.pop("custom_objects", None)
