"""One registry, one rule contract, no import cycles: the core every rule lives in."""

import ast
import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from kerasrepair import registry
from kerasrepair.cli import app
from kerasrepair.findings import ALWAYS, NEVER, SEVERITIES, SOMETIMES, Rule

PACKAGE = ROOT / "kerasrepair"


@pytest.mark.parametrize("module", registry.MODULES, ids=lambda m: m.RULE.code)
def test_each_rule_is_one_module_named_after_it(module):
    rule = module.RULE
    assert isinstance(rule, Rule)
    assert re.fullmatch(r"KR[1-9]\d\d", rule.code)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)
    assert module.__name__ == f"kerasrepair.passes.{rule.module_name}"
    assert rule.severity in SEVERITIES
    assert rule.fix in (ALWAYS, SOMETIMES, NEVER)
    assert rule.summary and rule.explanation.strip()
    assert list(inspect.signature(module.detect).parameters) == ["ctx"]
    # a rule that can repair has an `apply` taking the findings the runner chose
    if rule.fix == NEVER:
        assert not registry.repairs(module)
    else:
        assert list(inspect.signature(module.apply).parameters) == ["ctx", "edit", "findings"]


def test_every_module_of_passes_is_in_the_registry_once():
    on_disk = {p.stem for p in (PACKAGE / "passes").glob("*.py")} - {"__init__"}
    listed = [module.RULE.module_name for module in registry.MODULES]
    assert sorted(listed) == sorted(on_disk)
    assert len({rule.code for rule in registry.RULES}) == len(registry.RULES)


@pytest.mark.parametrize(
    "module", [m for m in registry.MODULES if registry.repairs(m)], ids=lambda m: m.RULE.code
)
def test_each_repair_has_a_test_module_named_after_it(module):
    assert (ROOT / "tests" / f"test_{module.RULE.module_name}.py").exists()


def test_by_code_is_the_only_lookup_and_knows_every_code():
    for rule in registry.RULES:
        assert registry.by_code(rule.code.lower()).RULE is rule
    with pytest.raises(KeyError):
        registry.by_code("KR000")
    assert registry.codes("kr301, KR601") == {"KR301", "KR601"}


def test_rules_and_explain_list_every_code():
    listed = CliRunner().invoke(app, ["rules"]).output
    for rule in registry.RULES:
        assert rule.code in listed
        explained = CliRunner().invoke(app, ["explain", rule.code])
        assert explained.exit_code == 0
        assert rule.summary in explained.output


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The package's modules `path` imports, inside functions too."""
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != module}
    if path.name == "__init__.py":  # a package does not import its own modules by being one
        found = {t for t in found if not t.startswith(module + ".")}
    return found


def test_no_import_cycles():
    paths = {
        ".".join(("kerasrepair", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): p
        for p in PACKAGE.rglob("*.py")
    }
    edges = {module: _imports(path, module, set(paths)) for module, path in paths.items()}
    assert edges["kerasrepair.check"], "the scan sees imports"

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            module, trail = stack.pop()
            for other in edges[module]:
                if other == start:
                    return trail
                if other not in trail:
                    stack.append((other, [*trail, other]))
        return None

    cycles = [cycle for module in edges if (cycle := cycle_from(module))]
    assert cycles == []


def test_no_rule_imports_the_writer_side():
    """Rules record edits; only the writer applies them to files."""
    writer_side = {"kerasrepair.writer", "kerasrepair.weights_edit", "kerasrepair.api"}
    for module in registry.MODULES:
        path = Path(module.__file__)
        assert not _imports(path, module.__name__, writer_side) & writer_side, module.__name__
