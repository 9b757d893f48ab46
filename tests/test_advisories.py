"""Each security rule names the published advisories it reports and the Keras
releases they affect, kept as data (schemas/advisories.json, shipped with the
package): every advisory there is reported by a registered rule, and every rule
of KR903-KR909 has advisories; `kerasrepair explain` shows them."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from kerasrepair import advisories, registry
from kerasrepair.cli import app

CONFIG_RULES = ("KR903", "KR904", "KR905", "KR906", "KR907", "KR908", "KR909")
FILE = ROOT / "schemas" / "advisories.json"


def test_every_advisory_is_reported_by_a_registered_rule():
    codes = {rule.code for rule in registry.RULES}
    for advisory in advisories.all_advisories():
        assert re.fullmatch(r"CVE-\d{4}-\d{4,}", advisory.id)
        assert advisory.codes and set(advisory.codes) <= codes, advisory.id


@pytest.mark.parametrize("code", CONFIG_RULES)
def test_every_security_rule_of_the_config_has_advisories(code):
    assert advisories.of(code)
    assert registry.by_code(code).RULE.checked  # check, fix and batch report it


def test_what_is_not_known_is_said_not_invented():
    document = json.loads(FILE.read_text())["advisories"]
    for id_, entry in document.items():
        if entry["affected"] is None or entry["url"] is None or entry["fixed"] is None:
            assert entry.get("note"), f"{id_}: say why it is null"
        if entry["ghsa"]:
            assert re.fullmatch(r"GHSA(-[0-9a-z]{4}){3}", entry["ghsa"])
            assert entry["url"].endswith(entry["ghsa"])


def test_the_line_a_finding_says():
    [advisory] = [a for a in advisories.all_advisories() if a.id == "CVE-2025-1550"]
    assert advisory.line == "CVE-2025-1550 (Keras >= 3.0.0, < 3.9.0; fixed in 3.9.0)"
    assert advisories.advised("KR904") == advisory.line
    assert advisories.advised("KR301") == ""


def test_explain_shows_them():
    said = CliRunner().invoke(app, ["explain", "KR904"]).output
    assert "Advisories:\nCVE-2025-1550 / GHSA-48g7-3x6r-xfhp: Keras >= 3.0.0, < 3.9.0" in said
    assert "https://github.com/advisories/GHSA-48g7-3x6r-xfhp" in said
    assert "Advisories:" not in CliRunner().invoke(app, ["explain", "KR301"]).output
