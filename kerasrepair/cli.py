"""The `kerasrepair` command line: parses arguments, calls the API, renders.

Exit status: 0 clean, 1 findings left, 2 unreadable input or usage error.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__
from .errors import ArchiveError

EXIT_UNREADABLE = 2

app = typer.Typer(
    name="kerasrepair",
    help="Inspect, check and repair Keras .keras model archives, as files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kerasrepair {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="The .keras archive.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    weights: Annotated[
        bool, typer.Option("--weights", help="List every stored variable, too.")
    ] = False,
) -> None:
    """Show what is inside an archive, without loading it in Keras."""
    from .inspection import inspect_archive

    report = _or_exit(inspect_archive, path)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from .render import render_inspection

    render_inspection(report, show_weights=weights)


def _or_exit(function, *args: Any) -> Any:
    """Run `function`; turn bad input into one line on stderr and exit 2."""
    try:
        return function(*args)
    except ArchiveError as e:
        typer.echo(f"kerasrepair: error: {e}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from None


def main() -> None:
    # A big config is hundreds of thousands of small objects, built once and
    # never cyclic: the cycle collector would only walk them again, during the
    # run and at exit. So it stays off, and the process ends without tearing
    # them down, once what it printed is flushed.
    gc.disable()
    try:
        app()
        status = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        status = e.code if isinstance(e.code, int) else int(e.code is not None)
    except KeyboardInterrupt:
        status = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
