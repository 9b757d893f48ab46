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
