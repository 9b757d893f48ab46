"""The `kerasrepair` command (and `python -m kerasrepair`).

`check`, `fix` and `inspect` fork the child that reads the weights tree first
of all (`prefetch.early`), before the CLI's imports, which it overlaps: it
starts on the archive the command line names (`archive_named`); the path the
CLI parses decides."""

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


def main() -> None:
    command, *arguments = sys.argv[1:] or [""]
    if command in ("check", "fix", "inspect"):
        from . import prefetch

        prefetch.early(likely=archive_named(arguments), names=command == "inspect")
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
