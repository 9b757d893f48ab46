"""The CLI reads the weights tree in a forked child while it checks config.json
(`kerasrepair.prefetch`): the same findings, the same errors, the same output
as reading it in one process; the parent never imports h5py when the child
answers, and reads the tree itself when the child's file is not its own."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

from conftest import MODELS

FUNCTIONAL = MODELS / "functional_nested_shared.keras"

# runs the CLI in a fresh interpreter (no h5py loaded: the child is forked)
# and says, after it, whether this process imported h5py
# (ENTRY: the CLI's main, or the command's own entry point, which forks the
# child before the CLI's imports), whether any child is left unreaped
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from kerasrepair.ENTRY import main
    sys.argv = ["kerasrepair", *sys.argv[1:]]
    try:
        main()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    try:
        os.waitpid(-1, os.WNOHANG)
        left = True
    except ChildProcessError:
        left = False
    said = {"code": code, "h5py": "h5py" in sys.modules, "children_left": left}
    print(json.dumps(said), file=sys.stderr)
    """
)


def drive(*args, prefetch=True, entry="cli"):
    env = dict(os.environ, KERASREPAIR_PREFETCH="1" if prefetch else "0")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER.replace("ENTRY", entry), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    *said, last = done.stderr.splitlines()
    return done.stdout, "\n".join(said), json.loads(last)


@pytest.mark.parametrize("entry", ["cli", "__main__"], ids=["forked by check", "forked first"])
@pytest.mark.parametrize("keras", ["3.0", "3.10"])
def test_check_says_the_same_with_the_child_and_never_imports_h5py(keras, entry):
    with_child = drive("check", FUNCTIONAL, "--keras", keras, "--json", entry=entry)
    alone = drive("check", FUNCTIONAL, "--keras", keras, "--json", prefetch=False)
    assert with_child[:2] == alone[:2]
    assert with_child[2]["code"] == alone[2]["code"]
    assert json.loads(with_child[0])["results"][0]["findings"]  # it has something to say
    assert with_child[2]["h5py"] is False and alone[2]["h5py"] is True
    assert not with_child[2]["children_left"]


def test_the_child_forked_first_ends_when_check_reads_many_archives():
    """`check` of two archives reads each tree itself: the child forked before
    the path was known is ended, not left waiting."""
    paths = (FUNCTIONAL, MODELS / "sequential_mlp.keras")
    with_child = drive("check", *paths, "--json", entry="__main__")
    alone = drive("check", *paths, "--json", prefetch=False)
    assert with_child[:2] == alone[:2] and with_child[2]["code"] == alone[2]["code"]
    assert len(json.loads(with_child[0])["results"]) == 2
    assert not with_child[2]["children_left"]


def test_fix_writes_the_same_bytes_with_the_child(tmp_path):
    outputs = []
    for prefetch in (True, False):
        output = tmp_path / f"fixed_{prefetch}.keras"
        stdout, stderr, said = drive(
            "fix",
            MODELS / "numpy_rescaling.keras",
            "--keras",
            "3.4",
            "-o",
            output,
            prefetch=prefetch,
        )
        assert said["code"] == 0, stderr
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]


def test_damaged_weights_are_the_same_one_line_from_the_child(tmp_path):
    damaged = tmp_path / "damaged.keras"
    with zipfile.ZipFile(FUNCTIONAL) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "model.weights.h5":
                data = bytes(8) + data[8:]  # no HDF5 signature
            target.writestr(info, data)
    with_child = drive("check", damaged)
    alone = drive("check", damaged, prefetch=False)
    assert with_child[2]["code"] == alone[2]["code"] == 2
    assert with_child[1] == alone[1]
    assert with_child[1].startswith(f"kerasrepair: error: {damaged}:model.weights.h5: ")


def test_a_file_replaced_after_the_child_read_it_is_read_again(tmp_path):
    """The child reads one file; the parent opens another put at the same
    path since: the child's tree is not that file's, and is not used."""
    path = tmp_path / "model.keras"
    path.write_bytes(FUNCTIONAL.read_bytes())
    script = textwrap.dedent(
        f"""
        import os, shutil, sys, time
        from kerasrepair import prefetch, open_archive
        path = {str(path)!r}
        prefetch.start(path)
        time.sleep(1)  # the child has read it
        shutil.copyfile({str(MODELS / "sequential_mlp.keras")!r}, path + ".new")
        os.replace(path + ".new", path)
        with open_archive(path) as archive:
            tree = archive.weights()
        print(len(tree.variables), "h5py" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    # sequential_mlp's variables, read by the parent (which imported h5py to do it)
    from kerasrepair import open_archive

    with open_archive(MODELS / "sequential_mlp.keras") as archive:
        expected = len(archive.weights().variables)
    assert done.stdout.split() == [str(expected), "True"]
