"""The `kerasrepair` command (and `python -m kerasrepair`).

`check`, `fix` and `inspect` fork the child that reads the weights tree first
of all (`prefetch.early`), before the CLI's imports, which it overlaps: it
starts on the archive the command line names (`archive_named`); the path the
CLI parses decides. Their process ends without the interpreter's teardown
(`_exit`): what a config builds is freed at once."""

import atexit
import os
import sys

# the options of check, fix and inspect that take a value: the word after one
# is not the archive (tests/test_prefetch.py holds this to the CLI's options)
OPTIONS_WITH_VALUES = frozenset(
    ("--keras", "--sarif", "--output", "-o", "--only", "--skip", "--define")
)


def archive_named(arguments: list[str]) -> str | None:
    """The first argument that is neither an option nor an option's value: the
    archive, as typer will parse it from a command line it accepts."""
    value_next = False
    for i, argument in enumerate(arguments):
        if value_next:
            value_next = False
        elif argument == "--":  # what follows is positional, dashes and all
            return arguments[i + 1] if i + 1 < len(arguments) else None
        elif argument.startswith("-"):
            value_next = argument in OPTIONS_WITH_VALUES  # not "--keras=3.10", nor "-oout"
        else:
            return argument
    return None


# the commands whose process ends at once when they are done (`_exit`)
ENDED_AT_ONCE = frozenset(("check", "fix", "inspect"))


def main() -> None:
    """The `kerasrepair` command: `run`; a check, fix or inspect then ends
    the process at once (`_exit`)."""
    if (sys.argv[1:2] or [""])[0] not in ENDED_AT_ONCE:
        run()
        return
    try:
        run()
    except SystemExit as e:
        _exit(e.code)
    _exit(0)


def run() -> None:
    """The CLI, with the children of check, fix and inspect forked first."""
    command, *arguments = sys.argv[1:] or [""]
    if command in ENDED_AT_ONCE:  # the commands that read an archive's weights tree
        from . import prefetch

        prefetch.early(likely=archive_named(arguments), names=command == "inspect")
    from .cli import main as cli_main

    cli_main()


def _exit(code) -> None:
    """End the process as the interpreter would (the exit functions run, the
    output is flushed, `code` as SystemExit takes it), but without freeing
    its objects one by one: a big config is hundreds of thousands (0.02 s
    for EfficientNetB7's), and the system frees them at once. Should the
    output not flush (a closed pipe), the interpreter ends it as it would."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        raise SystemExit(status) from None
    atexit._run_exitfuncs()
    os._exit(status)


if __name__ == "__main__":
    main()
