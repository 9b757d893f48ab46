"""The `kerasrepair` command line: parses arguments, calls the API, renders.

Exit status: 0 clean, 1 findings left, 2 unreadable input or usage error.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__, prefetch
from .errors import ArchiveError, RepairError, WriteError

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
    # the weights tree and its layer names, read by a child while this reads the config
    prefetch.start(path, names=True)
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
            help="Repair for this Keras release (3.10 or 3.10.0) and check the result "
            "against it; default: the release that saved the archive. For an older "
            "release, arguments it does not know are dropped where at their defaults (KR203).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Repair an archive: every rule that repairs what it finds, then a verified re-zip."""
    if sum((output is not None, in_place, dry_run)) != 1:
        _usage("give exactly one of -o OUT, --in-place or --dry-run")
    if output is not None and _same_file(output, path):
        _usage(f"-o {output} is the input itself: use --in-place to replace it")
    if output is not None:  # a link, a directory, a FIFO, a device: refused before any work
        from .writer import check_output

        _or_exit(check_output, output)
    prefetch.start(path)  # the weights tree, read by a child while this reads the config
    from .api import fix_archive
    from .context import Options

    options = Options(unsafe_fixes=unsafe_fixes, defines=_defines(define or []), keras=keras)
    _release(keras)
    only_codes, skip_codes = _codes(only), _codes(skip) or frozenset()
    target = path if in_place else output
    # written ahead by a child while the result is checked: this process has one thread
    result = _or_exit(fix_archive, path, target, options, only_codes, skip_codes, True)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        from .render import render_fix

        render_fix(result, show_diff=diff)
    if result.left:
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
    if len(paths) == 1:
        prefetch.start(paths[0])  # the weights tree, read by a child while this reads the config
    else:
        prefetch.stop()  # each archive's tree is read here
    from .check import check_archive

    _release(keras)
    if sarif is not None:  # refused before any archive is read: nothing half done
        from .writer import check_output

        for path in paths:
            _or_exit(check_output, sarif, path)
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

        _or_exit(write_text_atomically, sarif, json.dumps(to_sarif(results), indent=2) + "\n")
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
def batch(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Directories (searched for .keras and .h5), globs, or files listing paths "
            "(- for stdin)."
        ),
    ],
    output: Annotated[
        str | None,  # a str: Path() would fold the // of a URL (s3://bucket/...)
        typer.Option("--output", "-o", help="Where the repaired archives go (the source tree)."),
    ] = None,
    check_only: Annotated[
        bool, typer.Option("--check-only", help="Say what fix would do; write no archive.")
    ] = False,
    keras: Annotated[
        str | None, typer.Option("--keras", help="Check and repair for this Keras release.")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Worker processes (default: the cores).")
    ] = None,
    executor: Annotated[
        str,
        typer.Option("--executor", help="local (worker processes) or dask (needs the dask extra)."),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="With --executor dask: tcp://HOST:PORT (default: a LocalCluster)."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Append one JSON line per archive here (JSON Lines)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Skip archives --report has, same sha256 and options."),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML page of the run here."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds an archive may take (killed after).")
    ] = None,
    copy_clean: Annotated[
        bool, typer.Option("--copy-clean", help="Copy archives with nothing to fix too.")
    ] = False,
    only: Annotated[
        str | None, typer.Option("--only", help="Run only these fixes (KR301,KR601).")
    ] = None,
    skip: Annotated[str | None, typer.Option("--skip", help="Skip these fixes.")] = None,
    unsafe_fixes: Annotated[
        bool, typer.Option("--unsafe-fixes", help="Also apply fixes that change behaviour.")
    ] = False,
) -> None:
    """Check or repair every archive of a model zoo, in worker processes."""
    from .render import BatchProgress, render_batch_summary
    from .zoo import Settings, SourceError, Summary
    from .zoo import batch as run_batch

    if (output is None) == (not check_only):
        _usage("give -o OUTDIR, or --check-only")
    if resume and report is None:
        _usage("--resume reads the --report of the run it resumes")
    if jobs is not None and jobs < 1:
        _usage("--jobs must be at least 1")
    _release(keras)
    only_codes, skip_codes = _codes(only), _codes(skip) or frozenset()
    settings = Settings(
        output_dir=str(output) if output is not None else None,
        keras=keras,
        only=tuple(sorted(only_codes)) if only_codes is not None else None,
        skip=tuple(sorted(skip_codes)),
        unsafe_fixes=unsafe_fixes,
        copy_clean=copy_clean,
    )
    summary = Summary()
    if scheduler is not None and executor != "dask":
        _usage("--scheduler is for --executor dask")
    resumed = report if resume else None
    from .writer import check_output, open_report

    if html is not None:  # refused before the run, not after it
        _or_exit(check_output, html)
    sink = _or_exit(open_report, report) if report is not None else None
    results = run_batch(
        sources, settings, jobs, timeout, resumed, summary, executor=executor, scheduler=scheduler
    )
    records: list[dict] = []  # for --html
    try:
        with BatchProgress(summary) as progress:
            for number, record in enumerate(results, 1):
                if sink is not None:
                    sink.write(json.dumps(record, sort_keys=True) + "\n")
                    sink.flush()
                records.append(record)
                progress.advance(number, record)
    except SourceError as e:
        _usage(str(e))
    finally:
        if sink is not None:
            sink.close()
    render_batch_summary(summary)
    if html is not None:
        from .html_report import write as write_html

        _or_exit(write_html, html, records, summary)
    raise typer.Exit(summary.exit_status(settings.check_only))


@app.command()
def explain(code: Annotated[str, typer.Argument(help="A code, e.g. KR301.")]) -> None:
    """Explain what a rule detects, and how `fix` repairs it."""
    from .registry import by_code

    try:
        rule = by_code(code).RULE
    except KeyError:
        _usage(f"unknown code {code!r}; `kerasrepair rules` lists them")
    typer.echo(f"{rule.code} {rule.name} (fix: {rule.fix})\n{rule.summary}\n")
    typer.echo(rule.explanation)
    from .advisories import described

    if described(rule.code):  # the security rules (KR9xx): schemas/advisories.json
        typer.echo(f"\nAdvisories:\n{described(rule.code)}")


@app.command()
def rules() -> None:
    """List every rule: its code, name, severity, whether `fix` repairs it, summary."""
    from .registry import RULES

    for rule in sorted(RULES, key=lambda rule: rule.code):
        typer.echo(f"{rule.code}  {rule.name:<28} {rule.severity:<8} {rule.fix:<9} {rule.summary}")


def _defines(items: list[str]) -> dict[str, str]:
    """--define NAME=VALUE options; a malformed one is a usage error."""
    from .context import parse_define

    defines = {}
    for item in items:
        try:
            name, value = parse_define(item)
        except ValueError as e:
            _usage(str(e))
        defines[name] = value
    return defines


def _release(keras: str | None) -> None:
    """--keras X.Y (or X.Y.Z) must name a release kerasrepair has a schema for."""
    if keras is None:
        return
    from .schema import release_for

    try:
        release_for(keras)
    except ValueError as e:
        _usage(f"--keras {keras}: {e}")


def _codes(value: str | None) -> frozenset[str] | None:
    from .registry import codes

    try:
        return codes(value)
    except KeyError as e:
        _usage(f"unknown rule code {e}; `kerasrepair rules` lists them")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _usage(message: str) -> None:
    typer.echo(f"kerasrepair: usage error: {message}", err=True)
    raise typer.Exit(EXIT_UNREADABLE)


def _or_exit(function, *args: Any) -> Any:
    """Run `function`; turn bad input into one line on stderr and exit 2."""
    try:
        return function(*args)
    except RepairError as e:
        _error_line(e)
        raise typer.Exit(1) from None
    except (ArchiveError, WriteError, OSError) as e:
        _error_line(e)
        raise typer.Exit(EXIT_UNREADABLE) from None


def _error_line(e: Exception) -> None:
    """The one line bad input gets on stderr."""
    if isinstance(e, WriteError):
        message = f"nothing was written: {e}"
    elif isinstance(e, OSError) and not isinstance(e, ArchiveError):
        message = f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e)
    else:
        message = str(e)
    typer.echo(f"kerasrepair: error: {one_line(message)}", err=True)


def one_line(text: str) -> str:
    """`text` on one line: what comes from a file (an entry's name, a layer's)
    may hold line breaks and control characters, shown escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main() -> None:
    # A big config is hundreds of thousands of small objects, built once and
    # never cyclic: the cycle collector would only walk them again, during the
    # run and in the collection at exit, which skips what is frozen.
    gc.disable()
    try:
        app()
    except Exception as e:  # noqa: BLE001 (the last resort: bad input has its own lines)
        message = f"{type(e).__name__}: {e}"
        typer.echo(
            f"kerasrepair: internal error: {one_line(message)} (please report this with the file)",
            err=True,
        )
        raise SystemExit(EXIT_UNREADABLE) from None
    finally:
        gc.freeze()
