"""`fix` on the command line writes its output in a forked child, begun
before it knows what it writes and finished while it checks the result
(`writer.written_ahead`, `writer.staged_archive(ahead=True)`): the same bytes as
written in one go, nothing left behind when the result is not written, the
same error when writing fails, and a child that dies is written again by the
parent. Only a process of one thread forks, so each case runs in a fresh
interpreter (this one has JAX's threads)."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

from conftest import MODELS
from kerasrepair import WriteError, fix_archive, open_archive, write_archive
from kerasrepair.context import Options

SOURCE = MODELS / "sequential_mlp.keras"

# stages SOURCE's archive with config.json from CONFIG at TARGET, committing
# it or not; prints the error, how many children were forked and whether
# any is left unreaped
DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from kerasrepair import WriteError, forked, open_archive, writer

    source, target, config, commit = sys.argv[1:5]
    forks = []
    run = forked.run

    def dies_half_way():  # leaves more bytes than the archive has, and no answer
        [partial] = [n for n in os.listdir(os.path.dirname(target)) if n.endswith(".partial")]
        with open(os.path.join(os.path.dirname(target), partial), "r+b") as out:
            out.write(os.urandom(1 << 20))
        os.kill(os.getpid(), signal.SIGKILL)

    def counted(work, close=()):
        child = run(dies_half_way if os.environ.get("KILL_CHILD") else work, close)
        forks.append(child)
        return child

    forked.run = counted
    said = {"error": None}
    try:
        with (
            open_archive(source) as archive,
            writer.staged_archive(
                archive, target, {"config.json": open(config, "rb").read()}, ahead=True
            ) as staged,
        ):
            if commit == "commit":
                staged.commit()
    except WriteError as e:
        said["error"] = str(e)
    try:
        os.waitpid(-1, os.WNOHANG)
        said["children_left"] = True
    except ChildProcessError:
        said["children_left"] = False
    said["forks"] = len(forks)
    print(json.dumps(said))
    """
)


def stage(tmp_path, config: bytes, commit=True, kill_child=False):
    (tmp_path / "out").mkdir()
    config_path = tmp_path / "config.json"
    config_path.write_bytes(config)
    target = tmp_path / "out" / "written.keras"
    env = dict(os.environ, KILL_CHILD="1" if kill_child else "")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, SOURCE, target, config_path, "commit" if commit else "-"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout), target


def renamed_config() -> bytes:
    with open_archive(SOURCE) as archive:
        config = json.loads(archive.config_bytes)
    config["config"]["name"] = "renamed"
    return json.dumps(config).encode()


def written_in_one_go(tmp_path, config: bytes) -> bytes:
    target = tmp_path / "one_go.keras"
    with open_archive(SOURCE) as archive:
        write_archive(archive, target, {"config.json": config})
    return target.read_bytes()


@pytest.mark.parametrize("kill_child", [False, True], ids=["child", "child died half way"])
def test_written_ahead_is_the_archive_written_in_one_go(tmp_path, kill_child):
    config = renamed_config()
    said, target = stage(tmp_path, config, kill_child=kill_child)
    assert said == {"error": None, "children_left": False, "forks": 1}
    assert target.read_bytes() == written_in_one_go(tmp_path, config)
    assert os.listdir(target.parent) == [target.name]  # no temporary left beside it


def test_an_output_not_committed_leaves_nothing(tmp_path):
    said, target = stage(tmp_path, renamed_config(), commit=False)
    assert said == {"error": None, "children_left": False, "forks": 1}
    assert os.listdir(target.parent) == []


def test_a_failing_write_ahead_is_the_error_of_one_written_here(tmp_path):
    said, target = stage(tmp_path, b"{not json")
    with pytest.raises(WriteError) as here, open_archive(SOURCE) as archive:
        write_archive(archive, tmp_path / "here.keras", {"config.json": b"{not json"})
    assert said["error"] == str(here.value) and "is not valid JSON" in said["error"]
    assert said["forks"] == 1 and not said["children_left"]
    assert os.listdir(target.parent) == []


def kerasrepair(*args):
    return subprocess.run(
        [sys.executable, "-m", "kerasrepair", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_writes_what_fix_archive_writes(tmp_path):
    source = MODELS / "numpy_rescaling.keras"
    ran = kerasrepair("fix", source, "--keras", "3.4", "-o", tmp_path / "cli.keras")
    assert ran.returncode == 0, ran.stderr
    here = fix_archive(source, tmp_path / "here.keras", Options(keras="3.4"))
    assert here.changes  # something was repaired, and written both ways
    assert (tmp_path / "cli.keras").read_bytes() == (tmp_path / "here.keras").read_bytes()


@pytest.mark.parametrize(
    "source, keras",
    [
        # the port moves weight groups (KR405): the child begun at once is
        # stopped, and the output written by the command itself
        (MODELS.parent / "releases" / "keras-3.15.1" / "nested_container_model.keras", "3.14"),
        # nothing to repair: the archive in its own order, written by the command
        (MODELS / "sequential_mlp.keras", None),
    ],
    ids=["weights edited", "nothing repaired"],
)
def test_what_the_child_begun_at_once_does_not_write_the_command_writes(tmp_path, source, keras):
    options = ["--keras", keras] if keras else []
    ran = kerasrepair("fix", source, *options, "-o", tmp_path / "cli.keras")
    assert ran.returncode == 0, ran.stderr
    here = fix_archive(source, tmp_path / "here.keras", Options(keras=keras))
    assert bool(here.changes) == bool(keras)
    assert (here.weights_after is not None) == bool(keras)  # the weights are edited
    assert (tmp_path / "cli.keras").read_bytes() == (tmp_path / "here.keras").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["cli.keras", "here.keras"]  # no temporary left
    if not keras:
        assert (tmp_path / "cli.keras").read_bytes() == source.read_bytes()


def test_a_port_the_target_would_reject_leaves_nothing_written_ahead(tmp_path):
    source = MODELS.parent / "releases" / "keras-3.6.0" / "sequential_nested_functional.keras"
    (tmp_path / "out").mkdir()
    ran = kerasrepair("fix", source, "--keras", "3.0", "-o", tmp_path / "out" / "port.keras")
    assert ran.returncode == 1, ran.stderr
    assert "nothing written: the port from Keras 3.6.0 to 3.0.5 is incomplete" in ran.stdout
    assert os.listdir(tmp_path / "out") == []


def test_an_output_that_cannot_be_made_is_said_only_when_it_is_written(tmp_path):
    """Writing ahead starts before `fix` knows whether it writes: a directory
    that does not exist is said when the output is written (exit 2, one line),
    and a port that is not written says why it is not, as without writing ahead."""
    missing = tmp_path / "missing" / "out.keras"
    ported = kerasrepair("fix", MODELS / "numpy_rescaling.keras", "--keras", "3.4", "-o", missing)
    assert ported.returncode == 2 and ported.stderr.count("\n") == 1, ported.stderr
    assert ported.stderr.startswith("kerasrepair: error: ") and "missing" in ported.stderr
    source = MODELS.parent / "releases" / "keras-3.6.0" / "sequential_nested_functional.keras"
    withheld = kerasrepair("fix", source, "--keras", "3.0", "-o", missing)
    assert withheld.returncode == 1, withheld.stderr
    assert "nothing written: the port from Keras 3.6.0 to 3.0.5 is incomplete" in withheld.stdout
    assert not (tmp_path / "missing").exists()


def flip_a_weight_byte(source, target):
    """A copy of `source` with one byte of its largest weight flipped: the
    weights tree reads the same, the entry's CRC-32 no longer holds."""
    import io
    import zipfile

    import h5py

    target.write_bytes(source.read_bytes())
    with zipfile.ZipFile(source) as zf:
        assert zf.getinfo("model.weights.h5").compress_type == zipfile.ZIP_STORED
        weights = zf.read("model.weights.h5")
    found = []
    with h5py.File(io.BytesIO(weights), "r") as h5:
        h5.visititems(
            lambda _, obj: (
                found.append((obj.nbytes, obj.id.get_offset()))
                if isinstance(obj, h5py.Dataset) and obj.id.get_offset()
                else None
            )
        )
    size, offset = max(found)
    with open_archive(source) as archive:
        at = archive.entry("model.weights.h5").data_offset + offset + size // 2
    data = bytearray(target.read_bytes())
    data[at] ^= 0xFF
    target.write_bytes(bytes(data))


@pytest.mark.parametrize("ahead", [True, False], ids=["written ahead", "written here"])
def test_an_input_failing_its_crc_is_said_to_be_the_input(tmp_path, ahead):
    """The copied weights fail their CRC-32 in the new archive because they
    fail it in the input: the line says the input is damaged, not the writing."""
    damaged = tmp_path / "damaged.keras"
    flip_a_weight_byte(MODELS / "shared_layer_reused_later.keras", damaged)
    (tmp_path / "out").mkdir()
    env = dict(os.environ, KERASREPAIR_PREFETCH="1")
    command = [
        sys.executable,
        "-m",
        "kerasrepair",
        "fix",
        damaged,
        "-o",
        tmp_path / "out" / "f.keras",
    ]
    if not ahead:  # numpy imported first: a process of more than one thread writes itself
        command[1:3] = [
            "-c",
            "import numpy, sys; from kerasrepair.cli import main\n"
            "sys.argv[0] = 'kerasrepair'; main()",
        ]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr == (
        f"kerasrepair: error: nothing was written: {damaged}:model.weights.h5: fails its "
        "CRC check (its bytes are not those it was zipped with): the input is damaged, and "
        "a copy would be too; re-download or re-save the model\n"
    )
    assert os.listdir(tmp_path / "out") == []


def test_an_early_archive_finished_with_another_entry_is_written_by_the_parent(tmp_path):
    """`Early.finish` given more than config.json and metadata.json (the
    weights, whose copy the child began): the child is stopped and the
    archive written here, as `write_archive` writes it."""
    weights = tmp_path / "weights.h5"
    with zipfile.ZipFile(SOURCE) as zf:
        weights.write_bytes(zf.read("model.weights.h5"))
    config = renamed_config()
    script = textwrap.dedent(
        """
        import sys
        from kerasrepair import open_archive, writer
        source, target, config, weights = sys.argv[1:5]
        replacements = {"config.json": open(config, "rb").read(),
                        "model.weights.h5": open(weights, "rb").read()}
        with open_archive(source) as archive, writer.written_ahead(archive, target) as early:
            assert early is not None
            early.finish(replacements).commit()
        """
    )
    (tmp_path / "config.json").write_bytes(config)
    target = tmp_path / "early.keras"
    subprocess.run(
        [sys.executable, "-c", script, SOURCE, target, tmp_path / "config.json", weights],
        check=True,
        timeout=120,
    )
    here = tmp_path / "here.keras"
    with open_archive(SOURCE) as archive:
        replacements = {"config.json": config, "model.weights.h5": weights.read_bytes()}
        write_archive(archive, here, replacements)
    assert target.read_bytes() == here.read_bytes()
