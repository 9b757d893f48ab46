"""The `kerasrepair` command (and `python -m kerasrepair`).

`check` and `fix` fork the child that reads the weights tree first of all
(`prefetch.early`), before the CLI's imports, which it overlaps."""

import sys


def main() -> None:
    if sys.argv[1:2] in (["check"], ["fix"]):
        from . import prefetch

        prefetch.early()
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
