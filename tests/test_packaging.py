"""What `pip install .` installs: every module the commands import, and nothing
of the development tools (dev/, the schema generator, the tests)."""

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_the_wheel_holds_every_module(tmp_path):
    # with this environment's setuptools (of the `test` extra): no network needed
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("kerasrepair-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "kerasrepair").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= names, sorted(sources - names)
    assert "kerasrepair/passes/shared_layer_call_order.py" in names
    schemas = {
        f"kerasrepair/schemas/{p.relative_to(ROOT / 'schemas').as_posix()}"
        for p in (ROOT / "schemas").rglob("*.json")
    }
    assert {
        "kerasrepair/schemas/config.schema.json",
        "kerasrepair/schemas/keras/3.15.json",
    } <= schemas
    assert schemas <= names, sorted(schemas - names)
    assert any(Path(n).name == "entry_points.txt" for n in names)
    # schemas/ ships data only: its generator lives in dev/, which stays out
    assert not [n for n in names if Path(n).name in ("generate.py", "generate_schemas.py")]
    assert not [n for n in names if n.startswith(("dev/", "tests/", "fixtures/"))]
    assert {n for n in names if n.startswith("kerasrepair/schemas/")} == schemas | {
        "kerasrepair/schemas/__init__.py"
    }


def test_batch_workers_of_an_installed_kerasrepair_run_in_a_checkout(tmp_path):
    """`pip install .` then `kerasrepair batch` from the checkout (the README's
    setting): the workers must import the installed package, not the
    checkout's `kerasrepair/` in the working directory (Python 3.11's
    forkserver did, and every archive failed: no kerasrepair.schemas)."""
    import site

    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("kerasrepair-*.whl")
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    # -S: not this environment's site (its editable install maps kerasrepair to the
    # checkout); its site-packages for the dependencies, after the installed copy
    paths = [str(installed), *site.getsitepackages()]
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "import kerasrepair\n"
        "assert kerasrepair.__file__.startswith(sys.argv[1]), kerasrepair.__file__\n"
        "from kerasrepair import batch, BatchSettings\n"
        "records = list(batch(['fixtures/releases/keras-3.4.1'], BatchSettings(), jobs=2))\n"
        "print(sorted({r['status'] for r in records}), [r['error'] for r in records][:2])\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "error" not in done.stdout.split("]")[0], done.stdout
    assert "'clean'" in done.stdout, done.stdout
