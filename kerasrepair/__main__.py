"""The `kerasrepair` command (and `python -m kerasrepair`).

`check`, `fix` and `inspect` fork the child that reads the weights tree first of all
(`prefetch.early`), before the CLI's imports, which it overlaps: it starts on
the command's first argument, the archive as commands are usually written
(`kerasrepair fix model.keras ...`); the path the CLI parses decides."""

import sys


def main() -> None:
    command, *arguments = sys.argv[1:] or [""]
    if command in ("check", "fix", "inspect"):
        from . import prefetch

        first = arguments[0] if arguments and not arguments[0].startswith("-") else None
        prefetch.early(likely=first, names=command == "inspect")
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
