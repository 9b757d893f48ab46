"""What the security rules (KR903-KR909) share: they read config.json as data, so
they must never be wrong about what Keras itself writes, and never fail on what
an attacker writes instead. Every real archive of the fixtures gets no security
finding but KR903 where it really holds a Lambda; any JSON value at any key, and
any depth, is read without an exception."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import FIXTURES, MODELS
from kerasrepair import check_archive, open_archive, registry
from kerasrepair.context import Context
from kerasrepair.security import strings

CONFIG_RULES = ("KR903", "KR904", "KR905", "KR906", "KR907", "KR908", "KR909")
REAL = sorted(
    path
    for pattern in ("**/*.keras", "**/*.h5")
    for path in FIXTURES.glob(pattern)
    if "hostile" not in path.parts
)


@pytest.mark.parametrize("path", REAL, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_archives_keras_wrote_get_no_security_finding(path):
    with open_archive(path) as archive:
        holds_code = "Lambda" in json.dumps(archive.config)
    found = {f.code for f in check_archive(path).findings if f.code in CONFIG_RULES}
    assert found == ({"KR903"} if holds_code else set())


ODD_VALUES = [None, 0, -1, 1.5, True, "", "x", [], {}, [None, [1]], {"a": {"b": []}}]
KEYS = (
    "module",
    "class_name",
    "config",
    "name",
    "registered_name",
    "layers",
    "function",
    "vocabulary",
    "filepath",
    "compile_config",
    "fn_module",
)


def _every_rule(config):
    with open_archive(MODELS / "sequential_mlp.keras") as archive:
        ctx = Context(archive, config)
        return [registry.by_code(code).detect(ctx) for code in CONFIG_RULES]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_any_json_at_any_key(value):
    with open_archive(MODELS / "sequential_mlp.keras") as archive:
        base = archive.config
    for key in KEYS:
        for target in ("root", "model", "layer", "argument"):
            config = copy.deepcopy(base)
            node = {
                "root": config,
                "model": config["config"],
                "layer": config["config"]["layers"][1],
                "argument": config["config"]["layers"][1]["config"],
            }[target]
            node[key] = value
            _every_rule(config)  # never raises


def test_deep_configs_are_walked_without_recursion():
    deep = inner = []
    for _ in range(5_000):
        inner.append([])
        inner = inner[0]
    inner.append("https://deep.invalid")
    with open_archive(MODELS / "sequential_mlp.keras") as archive:
        config = copy.deepcopy(archive.config)
    config["config"]["layers"][1]["config"]["deep"] = deep
    found = _every_rule(config)
    [url] = found[CONFIG_RULES.index("KR905")]
    assert url.location.endswith("/0" * 5_000)
    assert len(list(strings(deep))) == 1
