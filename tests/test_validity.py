"""The compiled yes/no check of a schema (`validity`) says what jsonschema says:
valid exactly when jsonschema finds no error, and the errors it writes itself
(unknown and missing arguments) are jsonschema's, word for word; on the
configs of every fixture, their serialized objects against the structural
`$defs` and the argument schemas of releases, and thousands of mutants of
them. Every schema of `schemas/` is compiled; a keyword it does not compile
leaves the schema to jsonschema."""

import collections
import copy
import json
import random
import subprocess
import sys

import pytest

from conftest import FIXTURES
from kerasrepair import objects, open_archive, schema, validity
from kerasrepair.errors import ArchiveError

ARCHIVES = sorted(FIXTURES.rglob("*.keras"))
RELEASES_CHECKED = ("3.0", "3.6", "3.15")  # the oldest, a middle and the newest schemas


def _configs():
    """config.json of every fixture that holds one as a JSON object (hostile
    fixtures that do not are for other tests)."""
    found = []
    for path in ARCHIVES:
        try:
            with open_archive(path) as archive:
                config = archive.config
        except ArchiveError:
            continue
        if isinstance(config, dict):
            found.append((path, config))
    return found


CONFIGS = _configs()


def _pairs(config):
    """(ref, instance) for the config and each serialized object in it, as
    `objects` validates them: special objects and `serialized_object` against
    the structural `$defs`, arguments against the class's schema of each
    release checked."""
    pairs = [(schema.CONFIG_ID, config)]
    for _, obj, _ in objects.serialized_objects(config):
        class_name = obj["class_name"]
        if isinstance(class_name, str) and class_name in objects.SPECIAL_OBJECTS:
            pairs.append((f"{schema.CONFIG_ID}#/$defs/{class_name}", obj))
            continue
        pairs.append((f"{schema.CONFIG_ID}#/$defs/serialized_object", obj))
        module = obj.get("module")
        if not isinstance(class_name, str) or not isinstance(module, str | None):
            continue
        for name in RELEASES_CHECKED:
            release = schema.release(name)
            key = release.resolve(module, class_name)
            if key is not None:
                pairs.append((release.ref(key), obj["config"]))
    return pairs


def _jsonschema_errors(ref, instance) -> list:
    return [
        (error.validator, error.message, list(error.absolute_path))
        for error in schema.validator(ref).iter_errors(instance)
    ]


def _agrees(ref, instance, counts) -> None:
    """`validity` says what jsonschema says of `instance`: valid or not, and
    the errors when it writes them. `counts` tallies valid, invalid and the
    errors written here."""
    expected = _jsonschema_errors(ref, instance)
    assert validity.checker(ref)(instance) == (not expected), (ref, json.dumps(instance)[:300])
    written = validity.errors(ref, instance)
    if written is not None:
        said = [(e.validator, e.message, list(e.absolute_path)) for e in written]
        assert said == expected, (ref, json.dumps(instance)[:300])
        counts["written"] += bool(expected)
    counts["invalid" if expected else "valid"] += 1


def test_every_schema_of_the_project_is_compiled():
    refs = [schema.CONFIG_ID, schema.METADATA_ID]
    refs += [
        f"{schema.CONFIG_ID}#/$defs/{key}" for key in schema.load("config.schema.json")["$defs"]
    ]
    for name in schema.release_names():
        release = schema.release(name)
        refs += [release.ref(key) for key in release.document["$defs"]]
    assert len(refs) > 4_000
    assert [ref for ref in refs if validity.checker(ref) is None] == []


def test_it_agrees_with_jsonschema_on_every_fixture():
    assert len(CONFIGS) > 150
    counts = collections.Counter()
    for _, config in CONFIGS:
        for ref, instance in _pairs(config):
            _agrees(ref, instance, counts)
    assert counts["valid"] > 10_000
    assert counts["written"] > 500  # unknown arguments to older releases, written here


# values a mutant puts in place of another: every JSON type, the bounds the
# schemas set (a negative index, an empty string, 1.0 as an integer), and the
# class names the structural schema branches on
REPLACEMENTS = [
    None,
    True,
    False,
    0,
    -1,
    3,
    2.0,
    1.5,
    "",
    "x",
    "Sequential",
    "Functional",
    "__keras_tensor__",
    [],
    {},
    ["layer", 0, 0],
    ["layer", -1, 0],
    ["", 0, 0],
    {"args": [], "kwargs": {}},
    {"class_name": "Dense", "config": {}},
]


def _containers(value, path=()):
    """The path of every list and dict in `value`."""
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from _containers(item, (*path, key))
    elif isinstance(value, list):
        yield path
        for index, item in enumerate(value):
            yield from _containers(item, (*path, index))


def _mutant(instance, rng: random.Random):
    """`instance` with one change at a random place: a value replaced (by
    another or by its type's bound), a key removed or added, an element
    removed or appended."""
    mutant = copy.deepcopy(instance)
    paths = list(_containers(mutant))
    if not paths:
        return rng.choice(REPLACEMENTS)
    target = mutant
    for step in rng.choice(paths):
        target = target[step]
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    action = rng.randrange(5)
    scalars = [key for key in keys if not isinstance(target[key], (dict, list))]
    if action == 4 and scalars:  # a value at its type's bound: "", -1, a whole float
        key = rng.choice(scalars)
        value = target[key]
        if isinstance(value, str):
            target[key] = ""
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            target[key] = rng.choice([-1, float(value), -0.5])
        else:
            target[key] = rng.choice(REPLACEMENTS)
    elif action == 0 and keys:
        target[rng.choice(keys)] = copy.deepcopy(rng.choice(REPLACEMENTS))
    elif action == 1 and keys:
        del target[rng.choice(keys)]
    elif isinstance(target, dict):
        target[rng.choice(["zz_unknown", "class_name", "config", "name", "layers"])] = (
            copy.deepcopy(rng.choice(REPLACEMENTS))
        )
    else:
        target.append(copy.deepcopy(rng.choice(REPLACEMENTS)))
    return mutant


@pytest.mark.parametrize("seed", range(4))
def test_it_agrees_with_jsonschema_on_mutants(seed):
    rng = random.Random(seed)
    small = [config for _, config in CONFIGS if len(json.dumps(config)) < 20_000]
    pairs = [pair for config in small for pair in _pairs(config)]
    counts = collections.Counter()
    for _ in range(1_500):
        # a whole config one time in three: the structure's keywords are there
        ref, instance = (
            (schema.CONFIG_ID, rng.choice(small)) if rng.random() < 0.3 else rng.choice(pairs)
        )
        _agrees(ref, _mutant(instance, rng), counts)
    assert min(counts["valid"], counts["invalid"]) > 200  # both verdicts, many times
    assert counts["written"] > 20


@pytest.mark.parametrize(
    "node",
    [{"not": {}}, {"patternProperties": {"a": {}}}, {"const": 1}, {"enum": [True]}, {"type": "x"}],
)
def test_a_keyword_it_does_not_compile_leaves_the_schema_to_jsonschema(node):
    with pytest.raises(validity.Unsupported):
        validity._Compiler().compile(node, schema.CONFIG_ID)


def test_an_invalid_config_still_gets_jsonschema_s_errors():
    config = copy.deepcopy(next(c for _, c in CONFIGS if c.get("class_name") == "Functional"))
    config["config"]["layers"][0]["inbound_nodes"] = "none"
    assert validity.checker(schema.CONFIG_ID)(config) is False
    found = objects.structure_findings(config)
    assert [f.location for f in found] == ["/config/layers/0/inbound_nodes"]


@pytest.mark.parametrize("keras", [None, "3.0"])
def test_checking_a_real_archive_does_not_import_jsonschema(keras):
    """A valid config, and a port's unknown arguments, are judged and said
    without jsonschema: the CLI does not pay for its import."""
    archive = FIXTURES / "releases" / "keras-3.15.1" / "layer_zoo.keras"
    arguments = [str(archive)] + (["--keras", keras] if keras else [])
    script = (
        "import sys\n"
        "from kerasrepair.cli import main\n"
        f"sys.argv = ['kerasrepair', 'check', *{arguments!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('jsonschema' in sys.modules, code, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    imported, code = done.stderr.split()[-2:]
    assert (imported, code) == ("False", "1" if keras else "0"), done.stderr[-2000:]
    if keras:
        assert "KR203" in done.stdout
