"""Shared test set-up: real Keras on the JAX CPU backend, and archive helpers."""

import os
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
MODELS = FIXTURES / "models"
HOSTILE = FIXTURES / "hostile"


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
