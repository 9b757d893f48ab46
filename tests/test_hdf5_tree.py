"""`hdf5_tree` reads the weights tree from the HDF5 bytes themselves: what it
reads is what h5py reads (the variables, the `vars` groups in order and their
layer names, soft links, shape bombs, the optimizer's step count), on the
weights of every fixture; it reads every file a real Keras release wrote;
and on damaged bytes it reads nothing (h5py then reads, and says what is
wrong) or what h5py reads, never something else."""

import io
import random
import zipfile

import pytest

from conftest import FIXTURES
from kerasrepair import hdf5_tree, weights
from kerasrepair.archive import WEIGHTS_H5

ARCHIVES = sorted(FIXTURES.rglob("*.keras"))
REAL = [p for p in ARCHIVES if p.relative_to(FIXTURES).parts[0] in ("models", "releases")]


def _weights_bytes(path) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read(WEIGHTS_H5)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, NotImplementedError):
        return None


WEIGHTS = {path: data for path in ARCHIVES if (data := _weights_bytes(path)) is not None}


def _read_names(data):
    return lambda groups: weights.read_names(io.BytesIO(data), groups, "w")


def _described(tree) -> dict:
    """Everything a tree says, its layer names read."""
    return {
        "variables": tree.variables,
        "var_groups": list(tree.var_groups.items()),
        "problems": tree.problems,
        "optimizer_iterations": tree.optimizer_iterations,
        "format": (tree.format, tree.entry),
    }


def _by_h5py(data):
    return weights.read_h5(io.BytesIO(data), WEIGHTS_H5, "w", _read_names(data))


def _here(data):
    return hdf5_tree.read(io.BytesIO(data), WEIGHTS_H5, _read_names(data))


def test_every_archive_a_real_release_wrote_is_read_here_as_h5py_reads_it():
    real = [path for path in REAL if path in WEIGHTS]
    assert len(real) > 100
    for path in real:
        data = WEIGHTS[path]
        here = _here(data)
        assert here is not None, path
        assert _described(here) == _described(_by_h5py(data)), path


def test_every_other_fixture_is_read_as_h5py_reads_it_or_not_at_all():
    others = [path for path in WEIGHTS if path not in REAL]
    assert others
    read = 0
    for path in others:
        data = WEIGHTS[path]
        here = _here(data)
        try:
            theirs = _by_h5py(data)
        except Exception:  # noqa: BLE001 (h5py's words for damage: then nothing is read here)
            assert here is None, path
            continue
        if here is not None:
            assert _described(here) == _described(theirs), path
            read += 1
    assert read > 0


class _Recorded(io.BytesIO):
    """A file that notes the ranges read from it (the metadata a reader needs)."""

    def __init__(self, data):
        super().__init__(data)
        self.ranges = []

    def readinto(self, buffer):
        at = self.tell()
        count = super().readinto(buffer)
        self.ranges.append((at, count))
        return count

    def read(self, size=-1):
        at = self.tell()
        data = super().read(size)
        self.ranges.append((at, len(data)))
        return data


def _metadata_offsets(data) -> list[int]:
    recorded = _Recorded(data)
    hdf5_tree._Reader(recorded).tree(WEIGHTS_H5)
    return sorted({at + n for at, count in recorded.ranges for n in range(count)})


# small files of real releases, with soft links, attributes (layer names), an optimizer
FUZZED = [
    FIXTURES / "models" / "shared_layer_reused_later.keras",
    FIXTURES / "releases" / "keras-3.15.1" / "mixed_precision_mlp.keras",
    FIXTURES / "releases" / "keras-3.6.0" / "layer_zoo.keras",
    FIXTURES / "releases" / "keras-3.0.0" / "layer_zoo.keras",
]


@pytest.mark.parametrize("path", FUZZED, ids=lambda p: p.name)
def test_on_damaged_bytes_it_reads_what_h5py_reads_or_nothing(path):
    data = WEIGHTS[path]
    offsets = _metadata_offsets(data)
    rng = random.Random(path.name)
    outcomes = {"declined": 0, "read": 0}
    for _ in range(400):
        damaged = bytearray(data)
        at = rng.choice(offsets)
        damaged[at] = rng.choice([0, 0xFF, damaged[at] ^ (1 << rng.randrange(8))])
        damaged = bytes(damaged)
        here = _here(damaged)
        if here is None:
            outcomes["declined"] += 1
            continue
        assert _outcome(here) == _outcome(_by_h5py, damaged), at
        outcomes["read"] += 1
    assert min(outcomes.values()) > 20, outcomes  # both, many times


def _outcome(tree, data=None):
    """What a tree (or `tree(data)`) says, its layer names read; or that
    reading failed. The names are read by h5py either way, when first used:
    damage to them (a global heap) fails h5py's walk, and the reading of
    names here."""
    try:
        return _described(tree if data is None else tree(data))
    except Exception:  # noqa: BLE001 (h5py's words for damage, or kerasrepair's)
        return "damaged"


def test_a_root_that_is_no_group_is_left_to_h5py():
    """The superblock names a dataset's header as the root: declined, not
    an error of this reader's own (h5py then says what it makes of it)."""
    data = WEIGHTS[FUZZED[0]]
    datasets = []
    reader = hdf5_tree._Reader(io.BytesIO(data))
    real_header = reader._header

    def header(address):
        found = real_header(address)
        if found.symbol_table is None:
            datasets.append(address)
        return found

    reader._header = header
    reader.tree(WEIGHTS_H5)
    assert datasets and _here(data) is not None
    damaged = data[:64] + datasets[0].to_bytes(8, "little") + data[72:]
    assert _here(damaged) is None
