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
# and says, after it, whether this process imported h5py, and whether it read
# a weights tree itself (`hdf5_tree` or h5py imported)
# (ENTRY: the CLI's main, or the command's own entry point, which forks the
# child before the CLI's imports), whether any child is left unreaped
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from kerasrepair.ENTRY import MAIN as main
    sys.argv = ["kerasrepair", *sys.argv[1:]]
    try:
        main()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    import atexit
    atexit._run_exitfuncs()  # what the interpreter runs as it exits
    try:
        os.waitpid(-1, os.WNOHANG)
        left = True
    except ChildProcessError:
        left = False
    read_here = "kerasrepair.hdf5_tree" in sys.modules or "h5py" in sys.modules
    said = {"code": code, "h5py": "h5py" in sys.modules, "read_here": read_here,
            "children_left": left}
    print(json.dumps(said), file=sys.stderr)
    """
)


def _driver(entry: str) -> str:
    # the console entry (`__main__.main`) ends the process at once, so the
    # driver runs what it runs before that (`run`)
    return DRIVER.replace("ENTRY", entry).replace("MAIN", "run" if entry == "__main__" else "main")


def drive(*args, prefetch=True, entry="cli"):
    env = dict(os.environ, KERASREPAIR_PREFETCH="1" if prefetch else "0")
    done = subprocess.run(
        [sys.executable, "-c", _driver(entry), *map(str, args)],
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
    assert with_child[2]["read_here"] is False and alone[2]["read_here"] is True
    assert with_child[2]["h5py"] is False
    assert not with_child[2]["children_left"]


@pytest.mark.parametrize("entry", ["cli", "__main__"], ids=["forked by inspect", "forked first"])
def test_inspect_says_the_same_with_the_child_which_reads_the_layer_names_too(entry):
    """`inspect` shows the layer names stored on the `vars` groups: the child
    reads them with the tree, so the parent never imports h5py."""
    with_child = drive("inspect", FUNCTIONAL, "--json", "--weights", entry=entry)
    alone = drive("inspect", FUNCTIONAL, "--json", "--weights", prefetch=False)
    assert with_child[:2] == alone[:2] and with_child[2]["code"] == alone[2]["code"] == 0
    assert json.loads(with_child[0])["weights"]  # it has weights to show
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
    replacement = MODELS / "sequential_mlp.keras"
    # the replacement's variables, read by the parent
    assert _tree_read_with(sent=path, replace_with=replacement) == [_variables(replacement), "True"]


def test_a_usage_error_ends_the_child_reading_the_first_argument():
    """The child forked first reads the archive named first at once; a command
    that ends before sending it the path (no -o, --in-place or --dry-run)
    ends it too, as the process exits."""
    stdout, stderr, said = drive("fix", FUNCTIONAL, entry="__main__")
    assert said["code"] == 2 and "give exactly one of -o OUT" in stderr
    assert not said["children_left"]


@pytest.mark.parametrize(
    "arguments",
    [("fix", FUNCTIONAL, "--keras", "3.0", "--json", "-o", "OUT"), ("fix", FUNCTIONAL)],
    ids=["a fix", "a usage error"],
)
def test_the_console_entry_ends_at_once_having_said_all_and_left_no_child(arguments, tmp_path):
    """`kerasrepair check/fix/inspect` ends its process without the
    interpreter's teardown (`__main__._exit`): the same status and output as
    the CLI run to its end, the same file written, and no child of it alive."""
    here = [str(tmp_path / "here.keras") if a == "OUT" else a for a in arguments]
    ended = [str(tmp_path / "ended.keras") if a == "OUT" else a for a in arguments]
    stdout, stderr, said = drive(*here)
    entry = "import sys; from kerasrepair.__main__ import main; sys.argv[0] = 'kerasrepair'; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", entry, *map(str, ended)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its children are in its process group
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == said["code"]
    assert out.replace("ended.keras", "here.keras") == stdout
    assert err.replace("ended.keras", "here.keras").splitlines() == stderr.splitlines()
    if "-o" in arguments:
        assert (tmp_path / "ended.keras").read_bytes() == (tmp_path / "here.keras").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ended.keras", "here.keras"] if "-o" in arguments else []
    )  # no temporary left
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def _tree_read_with(sent, early=None, replace_with=None) -> list[str]:
    """The number of variables of the tree the Archive at `sent` reads, and
    whether the parent read the tree itself (`hdf5_tree` or h5py imported): the
    child forked by `prefetch.early(likely=early)`, or by `prefetch.start(sent)`
    without `early`; and, if `replace_with`, the file at `sent` replaced by
    that one once the child had read it."""
    script = textwrap.dedent(
        f"""
        import os, shutil, sys, time
        from kerasrepair import prefetch
        if {early is not None}:
            prefetch.early(likely={str(early)!r})
        else:
            prefetch.start({str(sent)!r})
        if {replace_with is not None}:
            time.sleep(1)  # the child has read it
            shutil.copyfile({str(replace_with)!r}, {str(sent)!r} + ".new")
            os.replace({str(sent)!r} + ".new", {str(sent)!r})
        if {early is not None}:
            prefetch.start({str(sent)!r})
        from kerasrepair import open_archive
        with open_archive({str(sent)!r}) as archive:
            tree = archive.weights()
        print(len(tree.variables), "kerasrepair.hdf5_tree" in sys.modules or "h5py" in sys.modules)
        """
    )
    env = dict(os.environ, KERASREPAIR_PREFETCH="1")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _variables(path) -> str:
    from kerasrepair import open_archive

    with open_archive(path) as archive:
        return str(len(archive.weights().variables))


def test_the_child_answers_for_the_path_sent_not_the_one_it_read_first():
    """The first argument was not the archive: the child reads the one sent,
    and the parent still never imports h5py."""
    other = MODELS / "sequential_mlp.keras"
    assert _variables(other) != _variables(FUNCTIONAL)
    assert _tree_read_with(early=other, sent=FUNCTIONAL) == [_variables(FUNCTIONAL), "False"]


def test_the_archive_read_before_its_path_was_sent_is_not_used_once_replaced(tmp_path):
    """The child reads the first argument's archive before the CLI has parsed
    its arguments: another file put at that path since is read by the parent."""
    path = tmp_path / "model.keras"
    path.write_bytes(FUNCTIONAL.read_bytes())
    replacement = MODELS / "sequential_mlp.keras"
    said = _tree_read_with(early=path, sent=path, replace_with=replacement)
    assert said == [_variables(replacement), "True"]
    path.write_bytes(FUNCTIONAL.read_bytes())
    assert _tree_read_with(early=path, sent=path) == [_variables(FUNCTIONAL), "False"]


def test_layer_names_the_child_cannot_read_are_left_for_the_parent(monkeypatch):
    """Damage met reading the names alone is not the answer's error: the
    parent meets it if it reads them, and says it as without the child."""
    from kerasrepair import prefetch, weights

    def damaged(file, groups, where):
        raise OSError("Unable to synchronously open attribute (bad object header)")

    read = prefetch._read(str(FUNCTIONAL), names=True)
    assert read["tree"]["unread"] == [] and any(read["tree"]["names"].values())
    monkeypatch.setattr(weights, "read_names", damaged)
    left = prefetch._read(str(FUNCTIONAL), names=True)
    assert "error" not in left
    assert left["tree"]["unread"] == list(read["tree"]["names"])


def _options_with_values() -> set[str]:
    import typer.main

    from kerasrepair import cli

    group = typer.main.get_command(cli.app)
    return {
        name
        for command in ("check", "fix", "inspect")
        for param in group.commands[command].params
        if param.param_type_name == "option" and not param.is_flag
        for name in param.opts + param.secondary_opts
    }


def test_the_options_the_entry_skips_are_the_cli_options_that_take_values():
    from kerasrepair.__main__ import OPTIONS_WITH_VALUES

    assert _options_with_values() == OPTIONS_WITH_VALUES


@pytest.mark.parametrize(
    "command",
    [
        ["fix", "m.keras", "--keras", "3.10", "-o", "out.keras"],
        ["fix", "--keras", "3.10", "-o", "out.keras", "m.keras"],
        ["fix", "-o", "out.keras", "--define", "A=1", "m.keras", "--diff"],
        ["fix", "--keras=3.10", "-oout.keras", "--only", "KR203", "m.keras"],
        ["fix", "--dry-run", "--", "-m.keras"],
        ["check", "--sarif", "s.json", "--strict", "m.keras", "n.keras"],
        ["check", "--json", "m.keras"],
        ["inspect", "--weights", "m.keras", "--json"],
    ],
)
def test_the_archive_the_entry_reads_first_is_the_one_typer_parses(command):
    """The child starts on `archive_named`'s guess; typer's parse decides. On
    command lines typer accepts, they agree (else the child's first read is
    only wasted, never used: see the tests above)."""
    import typer.main

    from kerasrepair import cli
    from kerasrepair.__main__ import archive_named

    name, *arguments = command
    click_command = typer.main.get_command(cli.app).commands[name]
    parsed = click_command.make_context(name, list(arguments)).params
    first = parsed["paths"][0] if name == "check" else parsed["path"]
    assert archive_named(arguments) == str(first)
