"""SARIF 2.1.0 of `check` results, for code-scanning uploads.

One run; each archive an artifact; each finding a result whose logical
location is the JSON pointer in config.json (or `metadata.json:...`), with
the layer, the hint and whether `fix` repairs it as properties.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import __version__
from .findings import ERROR, NOTE, WARNING
from .registry import RULES

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
VERSION = "2.1.0"
_LEVELS = {ERROR: "error", WARNING: "warning", NOTE: "note"}


def to_sarif(results) -> dict[str, Any]:
    """The SARIF log of `check` results (`check.CheckResult`s)."""
    index = {rule.code: i for i, rule in enumerate(RULES)}
    artifacts, sarif_results = [], []
    for number, result in enumerate(results):
        uri = Path(result.path).as_posix()
        artifacts.append({"location": {"uri": uri}, "roles": ["analysisTarget"]})
        for finding in result.findings:
            sarif_results.append(_result(finding, uri, number, index))
    return {
        "$schema": SCHEMA,
        "version": VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "kerasrepair",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_rule(rule) for rule in RULES],
                    }
                },
                "artifacts": artifacts,
                "results": sarif_results,
                "columnKind": "unicodeCodePoints",
                "properties": {
                    "targets": {
                        r.path: {"saved_with": r.saved_with, "checked_against": r.target}
                        for r in results
                    }
                },
            }
        ],
    }


def _rule(rule) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.explanation},
        "help": {"text": rule.explanation},
        "defaultConfiguration": {"level": _LEVELS[rule.severity]},
        "properties": {"fix": rule.fix},
    }


def _result(finding, uri: str, artifact: int, index: dict[str, int]) -> dict[str, Any]:
    text = finding.message + (f". {finding.hint}" if finding.hint else "")
    entry, pointer = _entry_and_pointer(finding.location)
    result = {
        "ruleId": finding.code,
        "level": _LEVELS.get(finding.severity, "warning"),
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {"uri": uri, "index": artifact}},
                "logicalLocations": [
                    {"fullyQualifiedName": f"{entry}#{pointer}", "kind": "member"}
                ],
            }
        ],
        "properties": {"layer": finding.layer, "fix": finding.fix or "none"},
    }
    if finding.code in index:
        result["ruleIndex"] = index[finding.code]
    return result


def _entry_and_pointer(location: str) -> tuple[str, str]:
    """`metadata.json:/keras_version` -> (metadata.json, /keras_version); a bare
    pointer is in config.json."""
    if location.startswith("/") or not location:
        return "config.json", location
    entry, _, pointer = location.partition(":")
    return entry, pointer
