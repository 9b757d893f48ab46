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
from .writer import WriteError

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


@app.command()
def fix(
    path: Annotated[Path, typer.Argument(help="The .keras archive to repair.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write the repaired archive.")
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Replace PATH (a backup stays until verified).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show a diff of config.json.")] = False,
    only: Annotated[
        str | None, typer.Option("--only", help="Run only these passes (KR301,KR601).")
    ] = None,
    skip: Annotated[str | None, typer.Option("--skip", help="Skip these passes.")] = None,
    unsafe_fixes: Annotated[
        bool, typer.Option("--unsafe-fixes", help="Also apply fixes that change behaviour.")
    ] = False,
    define: Annotated[
        list[str] | None,
        typer.Option(
            "--define",
            help="NAME=VALUE: a value for a global a Lambda reads (a Python literal, "
            "or module:NAME); repeatable.",
        ),
    ] = None,
    keras: Annotated[
        str | None,
        typer.Option(
            "--keras",
            help="Also make it load in this older Keras release (3.10): drop the arguments "
            "it does not know that are at their defaults (KR203).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Repair an archive: every pass that applies, then a verified re-zip."""
    from .context import Options
    from .repair import fix_archive, fix_in_place, select_passes

    if sum((output is not None, in_place, dry_run)) != 1:
        _usage("give exactly one of -o OUT, --in-place or --dry-run")
    try:
        passes = select_passes(_codes(only), _codes(skip))
    except KeyError as e:
        _usage(f"unknown pass code {e}; `kerasrepair rules` lists them")
    options = Options(
        unsafe_fixes=unsafe_fixes, defines=_defines(define or []), keras=_release(keras)
    )
    if in_place:
        result = _or_exit(fix_in_place, path, passes, options)
    else:
        result = _or_exit(fix_archive, path, None if dry_run else output, passes, options)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        from .render import render_fix

        render_fix(result, show_diff=diff)
    if any(finding.severity == "error" for finding in result.remaining):
        raise typer.Exit(1)


@app.command()
def verify(
    path: Annotated[Path, typer.Argument(help="The archive to load, e.g. a repaired one.")],
    against: Annotated[
        Path | None,
        typer.Option("--against", help="The original .keras, or a reference .npz (x, y)."),
    ] = None,
    python: Annotated[
        Path | None,
        typer.Option("--python", help="Interpreter whose Keras loads it (another release)."),
    ] = None,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Load with safe_mode=False (runs Lambda code).")
    ] = False,
    custom_objects: Annotated[
        str | None,
        typer.Option("--custom-objects", help="Module to import first (registers classes)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load an archive with real Keras in a child process and check it (needs Keras)."""
    from .verify import verify as verify_archive

    report = _or_exit(verify_archive, path, against, python, unsafe, custom_objects)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        from .render import render_verify

        render_verify(report)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="The .keras archives.")],
    keras: Annotated[
        str | None,
        typer.Option(
            "--keras",
            help="Check against this Keras release (3.4 or 3.4.1): will it load there? "
            "Default: the release that saved each archive.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    sarif: Annotated[
        Path | None, typer.Option("--sarif", help="Also write SARIF 2.1.0 to this file.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 for warnings too, not only errors.")
    ] = False,
) -> None:
    """Validate config.json against the schemas of a Keras release; run every pass's detect."""
    from .check import check_archive

    keras = _release(keras)
    results, unreadable = [], False
    for path in paths:
        try:
            results.append(check_archive(path, keras))
        except (ArchiveError, OSError) as e:
            unreadable = True
            _error_line(e)
    if sarif is not None and not unreadable:
        from .sarif import to_sarif
        from .writer import write_text_atomically

        write_text_atomically(sarif, json.dumps(to_sarif(results), indent=2) + "\n")
    if as_json:
        document = {"report_version": 1, "results": [r.to_dict() for r in results]}
        typer.echo(json.dumps(document, indent=2))
    elif results:  # an unreadable archive has said its one line on stderr
        from .render import render_check

        render_check(results)
    if unreadable:
        raise typer.Exit(EXIT_UNREADABLE)
    if any(result.failed(strict) for result in results):
        raise typer.Exit(1)


@app.command()
def explain(code: Annotated[str, typer.Argument(help="A code, e.g. KR301.")]) -> None:
    """Explain what a check or pass detects, and how `fix` repairs it."""
    from .rules import by_code

    try:
        rule = by_code(code)
    except KeyError:
        _usage(f"unknown code {code!r}; `kerasrepair rules` lists them")
    typer.echo(f"{rule.CODE} {rule.NAME} (fix: {rule.FIX or 'none'})\n{rule.SUMMARY}\n")
    typer.echo(rule.EXPLANATION)


@app.command()
def rules() -> None:
    """List every code: the checks of `check` and the repair passes, and their fixes."""
    from .rules import ALL_RULES, severity

    for rule in ALL_RULES:
        typer.echo(
            f"{rule.CODE}  {rule.NAME:<28} {severity(rule):<8} {rule.FIX or '-':<7} {rule.SUMMARY}"
        )


def _defines(items: list[str]) -> dict[str, str]:
    """--define NAME=VALUE options, checked here so that a typo is a usage error."""
    import ast

    defines = {}
    for item in items:
        name, equals, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name.isidentifier():
            _usage(f"--define {item!r}: expected NAME=VALUE, e.g. --define CONV_WIDTH=3")
        if value.startswith("module:"):
            module = value.removeprefix("module:")
            if not all(part.isidentifier() for part in module.split(".")):
                _usage(f"--define {item!r}: {module!r} is not a module name")
        else:
            try:
                ast.literal_eval(value)
            except (ValueError, SyntaxError):
                _usage(
                    f"--define {item!r}: {value!r} is not a Python literal (a number, a "
                    "quoted string, a tuple, list or dict of those, None, True, False) "
                    "nor module:NAME"
                )
        defines[name] = value
    return defines


def _release(keras: str | None) -> str | None:
    """--keras X.Y (or X.Y.Z): the name of the schema to use, e.g. "3.10"."""
    if keras is None:
        return None
    from .schema import name_for, release_names

    name = name_for(keras)
    if name is None:
        known = release_names()
        _usage(
            f"--keras {keras}: no schema for it; kerasrepair knows Keras {known[0]} to {known[-1]}"
        )
    return name


def _codes(value: str | None) -> list[str] | None:
    return [code.strip() for code in value.split(",") if code.strip()] if value else None


def _usage(message: str) -> None:
    typer.echo(f"kerasrepair: usage error: {message}", err=True)
    raise typer.Exit(EXIT_UNREADABLE)


def _or_exit(function, *args: Any) -> Any:
    """Run `function`; turn bad input into one line on stderr and exit 2."""
    try:
        return function(*args)
    except (ArchiveError, WriteError, OSError) as e:
        _error_line(e)
        raise typer.Exit(EXIT_UNREADABLE) from None


def _error_line(e: Exception) -> None:
    """The one line bad input gets on stderr."""
    if isinstance(e, WriteError):
        message = f"nothing was written: {e}"
    elif isinstance(e, OSError) and not isinstance(e, ArchiveError):
        message = f"{e.filename or ''}: {e.strerror or e}"
    else:
        message = str(e)
    typer.echo(f"kerasrepair: error: {message}", err=True)


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
