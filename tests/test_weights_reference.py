"""KR901: model.weights.h5 links outside itself (CVE-2026-1669, CVE-2026-9335,
CVE-2026-12480). Keras never writes soft or external links, external storage
or virtual datasets, and h5py follows them when Keras loads the weights: a
crafted archive reads the files of whoever loads it into the model. `check`,
`fix` and `batch` report each one as an error, wherever it stands, and nothing
it names is ever opened."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, HOSTILE, MODELS
from kerasrepair import ArchiveError, check_archive, fix_archive, open_archive, write_archive
from kerasrepair.cli import app
from kerasrepair.context import Context
from kerasrepair.passes import weights_reference

VICTIM = "/tmp/victim.weights.h5"
# hostile file -> (the link's path in model.weights.h5, what the finding says of it)
HOSTILE_LINKS = {
    "h5_external_link.keras": ("passwd", "external link to '/etc/passwd:/' (not followed)"),
    "h5_soft_link.keras": ("loop", "soft link to '/' (not followed)"),
    "h5_external_storage.keras": (
        "layers/dense/vars/0",
        "data stored in external files: /etc/passwd (not read)",
    ),
    "h5_soft_link_layer.keras": ("layers/dense_1", "soft link to '/layers/dense' (not followed)"),
    "h5_external_link_vars.keras": (
        "layers/dense/vars/1",
        f"external link to '{VICTIM}:/layers/dense/vars/1' (not followed)",
    ),
    "h5_virtual_dataset.keras": (
        "layers/dense/vars/0",
        f"virtual dataset mapping '{VICTIM}:/layers/dense/vars/0' (not read)",
    ),
}


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _findings(result, code="KR901"):
    return [(f.code, f.severity, f.location, f.message) for f in result if f.code == code]


@pytest.mark.parametrize("name", sorted(HOSTILE_LINKS))
def test_check_reports_each_hostile_link_as_an_error_and_nothing_else(name):
    path, what = HOSTILE_LINKS[name]
    result = check_archive(HOSTILE / name)
    assert [(f.code, f.severity, f.location, f.message) for f in result.findings] == [
        ("KR901", "error", f"model.weights.h5:{path}", f"{path}: {what}")
    ]
    ran = _run("check", HOSTILE / name, "--json")
    assert ran.exit_code == 1, ran.output
    [found] = json.loads(ran.output)["results"][0]["findings"]
    assert found["code"] == "KR901" and found["location"] == f"model.weights.h5:{path}"


@pytest.mark.parametrize("name", sorted(HOSTILE_LINKS))
def test_fix_never_removes_the_link_and_says_it_is_left(name, tmp_path):
    out = tmp_path / "out.keras"
    result = fix_archive(HOSTILE / name, out)
    assert result.changes == []
    assert [f.code for f in result.left] == ["KR901"]
    assert _findings(check_archive(out).findings) == _findings(result.remaining)
    assert _run("fix", HOSTILE / name, "--dry-run").exit_code == 1


def test_inspect_still_shows_them_as_warnings_of_the_weights():
    report = _run("inspect", HOSTILE / "h5_soft_link_layer.keras", "--json")
    assert report.exit_code == 0
    [warning] = json.loads(report.output)["warnings"]
    assert (warning["kind"], warning["code"]) == ("weights_problem", "KR901")


def _edited(tmp_path: Path, edit, source: Path = MODELS / "sequential_mlp.keras") -> Path:
    """`source` with its model.weights.h5 changed by `edit(h5file)`."""
    target = tmp_path / f"{edit.__name__}.keras"
    with open_archive(source) as archive:
        buffer = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(buffer, "a") as h5:
            edit(h5)
        write_archive(archive, target, {"model.weights.h5": buffer.getvalue()})
    return target


def _replace(h5, path, link):
    del h5[path]
    h5[path] = link


def root_link(h5):
    h5["extra"] = h5py.ExternalLink("other.h5", "/layers")


def layer_group_link(h5):
    _replace(h5, "layers/dense_1", h5py.SoftLink("/layers/dense"))


def vars_group_link(h5):
    _replace(h5, "layers/dense/vars", h5py.ExternalLink("other.h5", "/layers/dense/vars"))


def variable_link(h5):
    _replace(h5, "layers/batch_normalization/vars/3", h5py.SoftLink("/layers/dense/vars/1"))


def optimizer_link(h5):
    _replace(h5, "optimizer/vars/3", h5py.ExternalLink("other.h5", "/optimizer/vars/3"))


def dangling_link(h5):
    _replace(h5, "layers/dense_1/vars/1", h5py.SoftLink("/no/such/dataset"))


def optimizer_group_link(h5):
    _replace(h5, "optimizer", h5py.SoftLink("/layers"))


@pytest.mark.parametrize(
    "edit, path, what",
    [
        (root_link, "extra", "external link to 'other.h5:/layers'"),
        (layer_group_link, "layers/dense_1", "soft link to '/layers/dense'"),
        (vars_group_link, "layers/dense/vars", "external link to 'other.h5:/layers/dense/vars'"),
        (variable_link, "layers/batch_normalization/vars/3", "soft link to '/layers/dense/vars/1'"),
        (optimizer_link, "optimizer/vars/3", "external link to 'other.h5:/optimizer/vars/3'"),
        (dangling_link, "layers/dense_1/vars/1", "soft link to '/no/such/dataset'"),
        (optimizer_group_link, "optimizer", "soft link to '/layers'"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_a_link_is_found_wherever_it_stands(edit, path, what, tmp_path):
    """At the root, as a layer's group, as its `vars`, as a variable, in the
    optimizer's state, pointing nowhere: one KR901 at the link, no other error
    (what the link stands for is not reported missing: it is not read)."""
    result = check_archive(_edited(tmp_path, edit))
    assert [(f.code, f.severity, f.location, f.message) for f in result.findings] == [
        ("KR901", "error", f"model.weights.h5:{path}", f"{path}: {what} (not followed)")
    ]


def test_what_a_link_names_is_never_opened(tmp_path):
    """Every reference points at a FIFO: opening it would block for ever. `check`
    and `fix` end, each reference reported, the FIFO never opened."""
    fifo = tmp_path / "victim.h5"
    os.mkfifo(fifo)

    def everything_points_at_a_fifo(h5):
        _replace(h5, "layers/dense/vars/1", h5py.ExternalLink(str(fifo), "/data"))
        del h5["layers/dense_1/vars/0"]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_external(str(fifo).encode(), 0, 8 * 3 * 4)
        h5py.h5d.create(
            h5["layers/dense_1/vars"].id,
            b"0",
            h5py.h5t.py_create("float32"),
            h5py.h5s.create_simple((8, 3)),
            dcpl,
        )
        layout = h5py.VirtualLayout(shape=(8,), dtype="float32")
        layout[:] = h5py.VirtualSource(str(fifo), "data", shape=(8,))
        del h5["layers/batch_normalization/vars/0"]
        h5.create_virtual_dataset("layers/batch_normalization/vars/0", layout)

    path = _edited(tmp_path, everything_points_at_a_fifo)
    for command in (["check", "--json"], ["fix", "-o", str(tmp_path / "out.keras"), "--json"]):
        ran = subprocess.run(
            [sys.executable, "-m", "kerasrepair", command[0], str(path), *command[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 1, ran.stderr
        document = json.loads(ran.stdout)
        found = (
            document["results"][0]["findings"] if command[0] == "check" else document["remaining"]
        )
        assert sorted(f["location"] for f in found if f["code"] == "KR901") == [
            "model.weights.h5:layers/batch_normalization/vars/0",
            "model.weights.h5:layers/dense/vars/1",
            "model.weights.h5:layers/dense_1/vars/0",
        ]


def test_batch_reports_them(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for name in HOSTILE_LINKS:
        shutil.copyfile(HOSTILE / name, zoo / name)
    shutil.copyfile(MODELS / "sequential_mlp.keras", zoo / "healthy.keras")
    report = tmp_path / "report.jsonl"
    ran = _run("batch", zoo, "--check-only", "--report", report, "--jobs", "1")
    assert ran.exit_code == 1, ran.output
    records = {Path(r["path"]).name: r for r in map(json.loads, report.read_text().splitlines())}
    assert records.pop("healthy.keras")["status"] == "clean"
    assert {name: (r["status"], r["codes"]) for name, r in records.items()} == {
        name: ("unfixable", ["KR901"]) for name in HOSTILE_LINKS
    }


REAL = sorted(
    [p for p in FIXTURES.rglob("*.keras") if "hostile" not in p.parts and ".venvs" not in p.parts]
    + list((FIXTURES / "keras2").glob("*.h5"))
)


def test_archives_real_releases_saved_have_no_links():
    """Over every fixture a real Keras (or tf.keras) saved: no KR901."""
    assert len(REAL) > 100
    for path in REAL:
        with open_archive(path) as archive:
            assert weights_reference.detect(Context(archive, archive.config)) == [], path


LEGACY = FIXTURES / "keras2" / "mlp_trained.h5"


def _legacy_with(tmp_path: Path, edit) -> Path:
    target = tmp_path / f"{edit.__name__}.h5"
    shutil.copyfile(LEGACY, target)
    with h5py.File(target, "a") as h5:
        edit(h5)
    return target


def legacy_root_link(h5):
    h5["extra"] = h5py.ExternalLink("other.h5", "/")


def legacy_layer_link(h5):
    _replace(h5, "model_weights/dense_1", h5py.SoftLink("/model_weights/dense"))


def legacy_weight_link(h5):
    _replace(h5, "model_weights/dense/dense/kernel:0", h5py.ExternalLink("other.h5", "/k"))


def legacy_optimizer_link(h5):
    _replace(h5, "optimizer_weights/Adam/m/dense/bias:0", h5py.SoftLink("/nowhere"))


@pytest.mark.parametrize(
    "edit, path",
    [
        (legacy_root_link, "extra"),
        (legacy_layer_link, "model_weights/dense_1"),
        (legacy_weight_link, "model_weights/dense/dense/kernel:0"),
        (legacy_optimizer_link, "optimizer_weights/Adam/m/dense/bias:0"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_a_legacy_h5_model_with_a_link_anywhere_is_refused(edit, path, tmp_path):
    """A Keras 2 `.h5` is read by looking names up in the same HDF5 file, so
    one link anywhere refuses it whole (exit 2), naming the link: nothing of
    it is read, let alone converted."""
    target = _legacy_with(tmp_path, edit)
    with pytest.raises(ArchiveError) as refused:
        open_archive(target)
    assert refused.value.where == f"{target}:{path}"
    assert "link" in refused.value.what and "not followed" in refused.value.what
    ran = subprocess.run(
        [sys.executable, "-m", "kerasrepair", "check", str(target)], capture_output=True, text=True
    )
    assert ran.returncode == 2 and len(ran.stderr.splitlines()) == 1, ran.stderr


def test_a_link_in_a_scratch_copy_is_seen_too(tmp_path):
    """The tree `fix` reads back from the weights it edited is walked the same way."""
    from kerasrepair.weights import read_h5_file

    weights = tmp_path / "model.weights.h5"
    with h5py.File(weights, "w") as h5:
        h5.create_dataset("layers/dense/vars/0", data=np.zeros((2, 2), "float32"))
        h5["layers/dense/vars/1"] = h5py.SoftLink("/layers/dense/vars/0")
    tree = read_h5_file(weights, "model.weights.h5")
    assert [(p.path, p.code) for p in tree.problems] == [("layers/dense/vars/1", "KR901")]
    assert [v.path for v in tree.variables] == ["layers/dense/vars/0"]
