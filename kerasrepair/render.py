"""Human-readable output of the reports the API returns.

Plain aligned columns: a model of 800 layers prints in milliseconds, and the
output pastes cleanly into an issue. Colour only where the terminal has it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

_MAX_CELL = 48


def render_inspection(report: dict[str, Any], show_weights: bool = False) -> None:
    lines: list[str] = []
    metadata = report["metadata"]
    saved = f"saved by Keras {metadata['keras_version'] or '?'}"
    if report["format"] == "h5":
        saved = f"a legacy HDF5 model, {saved}"
    elif metadata["date_saved"]:
        saved += f" on {metadata['date_saved']}"
    lines.append(f"{_bold(report['path'])}  {_size(report['file_size'])}, {saved}")
    if report["written_by"] == "keras2":
        lines.append(
            "  Keras 2 (tf.keras) wrote it: Keras 3 loads it once converted, with "
            "`kerasrepair fix PATH -o NEW.keras`"
        )
    if report["entries"]:
        lines += _table(
            ["entry", "size", "compressed", "method", "crc32"],
            [
                [e["name"], f"{e['size']:,}", f"{e['compressed_size']:,}", e["method"], e["crc32"]]
                for e in report["entries"]
            ],
            right={1, 2},
        )
    model = report["model"]
    module = f", module {model['module']}" if model["module"] else ""
    lines.append("")
    lines.append(
        f"{_bold('Model')} '{model['name'] or '?'}': {model['class_name']} "
        f"({model['kind']}{module})"
    )
    if model["inputs"] or model["outputs"]:
        lines.append(f"  inputs:  {', '.join(model['inputs'])}")
        lines.append(f"  outputs: {', '.join(model['outputs'])}")
    if model["layers"]:
        lines += _layers(model)
    lines += _weights(report["weights"], show_all=show_weights or not model["layers"])
    if report["assets"]:
        lines.append(f"\n{_bold('Assets')}: {', '.join(report['assets'])}")
    for warning in report["warnings"]:
        where = f" ({warning['location']})" if warning["location"] else ""
        lines.append(f"{_yellow('warning')} {warning['kind']}{where}: {warning['message']}")
    typer.echo("\n".join(lines))


def _layers(model: dict[str, Any]) -> list[str]:
    rows = []
    for layer, depth in _walk(model["layers"], 0):
        rows.append(
            [
                "  " * depth + layer["name"],
                layer["class_name"],
                str(layer["calls"]) + (" (shared)" if layer["calls"] > 1 else ""),
                " | ".join(", ".join(inputs) for inputs in layer["inbound"]),
                "?" if layer["params"] is None else f"{layer['params']:,}",
                layer["weights_path"] or "",
            ]
        )
    return [
        "",
        *_table(["layer", "class", "calls", "called on", "params", "weights at"], rows, {4}),
    ]


def _walk(layers: list[dict[str, Any]], depth: int):
    for layer in layers:
        yield layer, depth
        if "model" in layer:
            yield from _walk(layer["model"]["layers"], depth + 1)


def _weights(weights: dict[str, Any], show_all: bool) -> list[str]:
    if weights["format"] == "none":
        return ["", f"{_bold('Weights')}: none in this archive"]
    if weights["pickled"] and not weights["tree"]:
        return [
            "",
            f"{_bold('Weights')} ({weights['entry']}): {len(weights['pickled'])} pickled "
            "entries, not described (kerasrepair never unpickles)",
        ]
    lines = [
        "",
        f"{_bold('Weights')} ({weights['entry']}): {weights['variables']} variables, "
        f"{weights['params']:,} parameters, {_size(weights['bytes'])}",
    ]
    optimizer = weights["optimizer"]
    if optimizer:
        iterations = optimizer["iterations"]
        lines.append(
            f"  optimizer {optimizer['class_name'] or '?'}: {optimizer['variables']} variables"
            + (f", {iterations:,} iterations" if iterations is not None else "")
        )
    if show_all and weights["tree"]:
        lines += _table(
            ["variable", "shape", "dtype", "bytes"],
            [
                [v["path"], str(tuple(v["shape"])), v["dtype"], f"{v['bytes']:,}"]
                for v in weights["tree"]
            ],
            right={3},
        )
    return lines


def _table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    rows = [[_clip(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  " + "  ".join(padded).rstrip()

    return [_bold(line(headers)), *(line(row) for row in rows)]


def _clip(cell: str) -> str:
    return cell if len(cell) <= _MAX_CELL else cell[: _MAX_CELL - 1] + "…"


def _bold(text: str) -> str:
    return typer.style(text, bold=True) if _colour() else text


def _yellow(text: str) -> str:
    return typer.style(text, fg="yellow") if _colour() else text


def _red(text: str) -> str:
    return typer.style(text, fg="red") if _colour() else text


def _colour() -> bool:
    import sys

    return sys.stdout.isatty()


def _size(count: float) -> str:
    if count < 1000:
        return f"{int(count):,} bytes"
    for unit in ("KB", "MB", "GB"):
        count /= 1000
        if count < 1000 or unit == "GB":
            break
    return f"{count:.1f} {unit}"


def render_fix(result, show_diff: bool = False) -> None:
    """What `fix` changed, pass by pass, and what it could not."""
    lines = []
    for change in result.changes:
        lines.append(f"{_bold(change.code)} {change.location}: {change.description}")
    if show_diff and result.changes:
        lines += _config_diff(result.config_before, result.config_after)
    if show_diff and result.weights_after is not None:
        lines += _weights_diff(result.weights_before, result.weights_after)
    errors = [f for f in result.remaining if f.severity == "error"]
    for finding in result.remaining:
        if finding.severity != "error":
            why = "warning"
        elif finding.fix == "unsafe":
            why = "needs --unsafe-fixes"
        else:
            why = "not fixable here"
        hint = f" -> {finding.hint}" if finding.hint else ""
        lines.append(f"{_yellow(finding.code)} {finding.location}: {finding.message} ({why}){hint}")
    fixed = f"fixed {len(result.changes)}, {len(errors)} left"
    warnings = len(result.remaining) - len(errors)
    if warnings:
        fixed += f", {warnings} warning" + ("s" if warnings > 1 else "")
    if result.output:
        fixed += f"; wrote {result.output}"
    elif result.withheld:
        fixed += f"; nothing written: {result.withheld_because}"
    elif result.changes:
        fixed += "; dry run, nothing written"
    lines.append(fixed)
    typer.echo("\n".join(lines))


def _config_diff(before: str, after: str) -> list[str]:
    import difflib
    import json

    def pretty(text: str) -> list[str]:
        return json.dumps(json.loads(text), indent=2).splitlines()

    return list(
        difflib.unified_diff(
            pretty(before), pretty(after), "a/config.json", "b/config.json", lineterm=""
        )
    )


def _weights_diff(before, after) -> list[str]:
    """A unified diff of the weights trees: `vars` groups and variables with
    their shapes (`WeightsTree.listing`)."""
    import difflib

    return list(
        difflib.unified_diff(
            before.listing(),
            after.listing(),
            "a/model.weights.h5",
            "b/model.weights.h5",
            lineterm="",
        )
    )


def render_verify(report: dict[str, Any]) -> None:
    load = report["load"]
    lines = [f"loaded with Keras {load.get('keras') or '?'} ({report['python']}): {load['status']}"]
    if load.get("message"):
        lines.append(f"  {load.get('exception') or ''} {load['message']}".rstrip())
    if load.get("detail"):
        lines.append(f"  {load['detail']}")
    lines += [f"  {_yellow('warning')} {warning}" for warning in load.get("warnings") or []]
    weights = report["weights"]
    if weights["stored"] is not None:
        lines.append(
            f"weights: {weights['loaded']} variables loaded of {weights['stored']} stored"
            + ("" if weights["restored"] else " - NOT all restored")
        )
    original = report.get("original")
    if original is not None and original["status"] != "ok":
        lines.append(f"the original does not load to compare with: {original['message']}")
    if report["against"] and load.get("max_abs_diff") is not None:
        lines.append(
            f"predictions against {report['against']}: max abs diff {load['max_abs_diff']}"
        )
    lines.append("verified" if report["ok"] else "NOT verified")
    typer.echo("\n".join(lines))


def render_check(results) -> None:
    """What `check` found, archive by archive, ruff style: where, code, what."""
    lines = []
    counts = {"error": 0, "warning": 0, "note": 0}
    for result in results:
        lines.append(
            f"{_bold(result.path)}: saved by Keras {result.saved_with or '?'}, "
            f"checked against Keras {result.target}"
        )
        for finding in result.findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
            level = finding.severity if finding.severity != "error" else _red("error")
            fixable = f" [fix: {finding.fix}]" if finding.fix else ""
            lines.append(
                f"  {finding.location or '/'}: {_bold(finding.code)} {level}: "
                f"{finding.message}{fixable}"
            )
            if finding.hint:
                lines.append(f"      {finding.hint}")
    said = [f"{n} {kind}" + ("s" if n != 1 else "") for kind, n in counts.items() if n]
    archives = f"{len(results)} archive" + ("s" if len(results) != 1 else "")
    lines.append(f"{', '.join(said) if said else 'no findings'} in {archives}")
    typer.echo("\n".join(lines))


class BatchProgress:
    """On a terminal, a progress bar (rate, ETA) on stderr; otherwise a plain
    line per archive there. The summary and the report are the output."""

    def __init__(self, summary):
        self.summary = summary
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task("archives", total=None, rate="")
            self.started = time.monotonic()

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, number: int, record: dict) -> None:
        if self.bar is None:
            typer.echo(batch_line(number, record), err=True)
            return
        if record["status"] == "error":  # above the bar, which goes when done
            self.bar.console.print(batch_line(number, record), markup=False, highlight=False)
        rate = number / max(time.monotonic() - self.started, 1e-9)
        self.bar.update(self.task, completed=number, total=self.summary.found, rate=f"{rate:.1f}/s")


def batch_line(number: int, record: dict) -> str:
    """What `batch` says of one archive (on stderr: the summary and the report
    are the output)."""
    status = record["status"]
    detail = record.get("error") or ", ".join(record.get("codes") or ())
    if status == "duplicate":
        detail = f"same sha256 as {record.get('duplicate_of')}"
    seconds = record.get("seconds") or 0.0
    line = f"[{number}] {status:<9} {record['path']} ({seconds:.2f} s)"
    return f"{line}: {detail}" if detail else line


def render_batch_summary(summary) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    total = sum(summary.counts.values())
    resumed = f" ({summary.resumed} done before, skipped)" if summary.resumed else ""
    typer.echo(f"{total} archives: {counts or 'none'}{resumed}")
    if summary.codes:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(summary.codes.items()))
        typer.echo(f"codes: {codes}")
    if summary.slowest:
        slowest = ", ".join(f"{path} {seconds:.2f} s" for seconds, path in summary.slowest)
        typer.echo(f"slowest: {slowest}")
