"""KR910: a weight that declares far more than its file stores (CVE-2026-0897,
CVE-2026-12570). A chunked dataset whose chunks were never written reads back
as its fill value: 22 KB of model.weights.h5 can declare 4 TiB, and Keras
allocates what is declared when it loads the weights. kerasrepair reads the
headers only: the finding comes without reading the data, memory stays flat,
and the threshold never fires on a weight that holds its data, even all zeros
and gzip'd to deflate's limit."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS
from kerasrepair import check_archive, fix_archive, open_archive, write_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import weights_shape_bomb
from kerasrepair.weights import BOMB_FLOOR, BOMB_RATIO

BOMB = HOSTILE / "h5_shape_bomb.keras"


def _found(path: Path) -> list[tuple[str, str, str, str]]:
    return [(f.code, f.severity, f.location, f.message) for f in check_archive(path).findings]


def test_the_hostile_bomb_is_an_error_at_the_kernel_and_nothing_else():
    [(code, severity, location, message)] = _found(BOMB)
    assert (code, severity, location) == ("KR910", "error", "model.weights.h5:layers/dense/vars/0")
    assert re.fullmatch(
        r"layers/dense/vars/0: declares \(1048576, 1048576\) float32 \(4\.0 TiB\) but "
        r"stores 0 bytes in a file of \d+\.\d KiB \(not read\)",
        message,
    ), message
    ran = CliRunner().invoke(app, ["check", str(BOMB)])
    assert ran.exit_code == 1 and "KR910 error" in ran.output


def test_fix_leaves_it_and_says_so(tmp_path):
    result = fix_archive(BOMB, tmp_path / "out.keras")
    assert result.changes == [] and [f.code for f in result.left] == ["KR910"]
    assert [f[0] for f in _found(tmp_path / "out.keras")] == ["KR910"]


# kerasrepair's CLI in a child, which then says its own peak resident memory:
# VmHWM of the process image exec made (getrusage's ru_maxrss would count the
# pages of a big parent, pytest with Keras loaded, shared until the exec)
_MEASURED = """
import sys
from kerasrepair.cli import main
try:
    main()
except SystemExit as exit:
    status = exit.code
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(peak.split()[1], file=sys.stderr)
sys.exit(status)
"""


def _peak_rss_mib(*args: str) -> tuple[int, float]:
    """Run kerasrepair in a child; its exit status and peak resident memory."""
    ran = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, timeout=300
    )
    return ran.returncode, int(ran.stderr.splitlines()[-1]) / 1024  # kB


@pytest.mark.parametrize("command", ["check", "inspect", "fix"])
def test_memory_stays_flat(command, tmp_path):
    """4 TiB declared: a single read of it would need all of that. Every command
    stays within what it needs for a 25 KB archive (~75 MiB of Python, h5py
    and jsonschema)."""
    args = {"check": [], "inspect": ["--weights"], "fix": ["-o", str(tmp_path / "o.keras")]}
    status, peak = _peak_rss_mib(command, str(BOMB), *args[command])
    assert status == (0 if command == "inspect" else 1), (command, status)
    assert peak < 250, f"{command}: {peak:.0f} MiB"


def _with_weights(tmp_path: Path, name: str, build) -> Path:
    """sequential_mlp.keras with a dataset `layers/dense/vars/0` made by
    `build(vars_group)` in place of its kernel."""
    target = tmp_path / f"{name}.keras"
    with open_archive(MODELS / "sequential_mlp.keras") as archive:
        buffer = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(buffer, "a") as h5:
            del h5["layers/dense/vars/0"]
            build(h5["layers/dense/vars"])
        write_archive(archive, target, {"model.weights.h5": buffer.getvalue()})
    return target


def test_an_all_zero_weight_gzipped_to_deflates_limit_is_no_bomb(tmp_path):
    """80 MiB of zeros in one gzip'd chunk stores ~80 KB (1029x, deflate's
    ceiling is ~1032x): a real weight (an untrained optimizer slot, a zero
    embedding), re-packed by someone. No KR910."""
    zeros = np.zeros((80, 2**18), "float32")

    def build(group):
        group.create_dataset("0", data=zeros, chunks=zeros.shape, compression="gzip")

    path = _with_weights(tmp_path, "zeros", build)
    with open_archive(path) as archive:
        [variable] = [v for v in archive.weights().variables if v.path == "layers/dense/vars/0"]
        with h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as h5:
            stored = h5["layers/dense/vars/0"].id.get_storage_size()
    assert variable.nbytes > BOMB_FLOOR and variable.nbytes / stored > 1000
    assert variable.nbytes < BOMB_RATIO * stored
    assert "KR910" not in {f.code for f in check_archive(path).findings}


@pytest.mark.parametrize(
    "name, build, declared",
    [
        # contiguous, never written: HDF5 allocates it late, it stores nothing
        ("contiguous_unwritten", lambda g: g.create_dataset("0", (2**25,), "float32"), "128.0 MiB"),
        # raw chunks, one written: the rest cannot be in a 30 KB file
        (
            "chunked_partly_written",
            lambda g: g.create_dataset("0", (2**25,), "float32", chunks=(2**16,)).__setitem__(
                slice(0, 2**16), 1.0
            ),
            "128.0 MiB",
        ),
        # dimensions whose product overflows 64 bits (numpy cannot even say it)
        (
            "overflowing_shape",
            lambda g: g.create_dataset("0", (2**40, 2**40), "float32", chunks=(1, 1)),
            "4,194,304.0 EiB",
        ),
    ],
)
def test_other_bombs(name, build, declared, tmp_path):
    [(code, _, location, message)] = _found(_with_weights(tmp_path, name, build))
    assert (code, location) == ("KR910", "model.weights.h5:layers/dense/vars/0")
    assert f"({declared})" in message


def test_below_the_floor_the_storage_is_not_even_asked(tmp_path):
    """32 MiB declared and nothing stored: a lie that costs at most 32 MiB, below
    the floor: a variable like any other (no storage lookup on the thousands of
    small weights of a big model)."""
    path = _with_weights(
        tmp_path, "small", lambda g: g.create_dataset("0", (2**23,), "float32", chunks=(2**16,))
    )
    assert "KR910" not in {f.code for f in check_archive(path).findings}


def test_an_npz_member_whose_header_declares_what_it_does_not_hold(tmp_path):
    """numpy allocates the array an `.npy` header declares before reading it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)}
    )
    source = MODELS / "weights_npz.keras"
    with open_archive(source) as archive:
        npz = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(archive.read("model.weights.npz"))) as old,
            zipfile.ZipFile(npz, "w") as new,
        ):
            for info in old.infolist():
                new.writestr(info, old.read(info))
            new.writestr("bomb.npy", header.getvalue())
        target = tmp_path / "npz_bomb.keras"
        write_archive(archive, target, {"model.weights.npz": npz.getvalue()})
    [(code, severity, location, message)] = [f for f in _found(target) if f[0] == "KR910"]
    assert (code, severity, location) == ("KR910", "error", "model.weights.npz:bomb")
    assert message == (
        f"bomb: declares (1048576, 1048576) float32 (4.0 TiB) but its .npy member holds "
        f"{len(header.getvalue())} bytes (not read)"
    )


REAL = sorted(
    [p for p in FIXTURES.rglob("*.keras") if "hostile" not in p.parts and ".venvs" not in p.parts]
    + list((FIXTURES / "keras2").glob("*.h5"))
)


def test_archives_real_releases_saved_are_no_bombs():
    assert len(REAL) > 100
    for path in REAL:
        with open_archive(path) as archive:
            assert weights_shape_bomb.detect(Context(archive, archive.config)) == [], path


def test_the_explanation_states_the_thresholds_in_force():
    explanation = weights_shape_bomb.RULE.explanation
    assert f"{BOMB_FLOOR >> 20} MiB" in explanation and f"1/{BOMB_RATIO}" in explanation


def test_a_legacy_h5_model_with_a_bomb_is_refused(tmp_path):
    """A Keras 2 `.h5` holds its weights in the same file: one bomb refuses it
    whole (exit 2), as a link does, before a conversion would copy 16 GiB."""
    target = tmp_path / "bomb.h5"
    target.write_bytes((FIXTURES / "keras2" / "mlp_trained.h5").read_bytes())
    with h5py.File(target, "a") as h5:
        del h5["model_weights/dense/dense/kernel:0"]
        h5["model_weights/dense/dense"].create_dataset(
            "kernel:0", (2**16, 2**16), "float32", chunks=(256, 256), compression="gzip"
        )
    ran = subprocess.run(
        [sys.executable, "-m", "kerasrepair", "fix", str(target), "-o", str(tmp_path / "o.keras")],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2 and not (tmp_path / "o.keras").exists()
    [line] = ran.stderr.splitlines()
    assert f"{target}:model_weights/dense/dense/kernel:0: declares 17179869184 bytes" in line
    assert "a shape bomb" in line
