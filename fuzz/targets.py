"""Coverage-guided fuzz targets: bytes in; the tool's own errors are expected, any
other exception is a crash.

- `archive_reader`: the bytes as a file: open it as an archive (the zip or the
  legacy HDF5 model, config.json, metadata.json), read the weights tree, describe it
  (what `inspect` prints);
- `config_walkers`: the first byte picks a fixture archive, the second a target
  release, the rest is config.json: every rule's detect (`check`), the repairs
  (`fix`, which writes nothing), the graph and the serialized-object walks;
- `marshal_reader`: the bytes as a Lambda's marshaled code: parsed (never
  unmarshalled), the Python that wrote it told, the globals it reads listed.

Run with atheris by `fuzz/run.py`; `tests/test_fuzz_properties.py` runs each over
its seeds (`seeds`) and a few mutants, without atheris, so that they cannot rot.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import marshal
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

from kerasrepair import bytecode, check, fix, graph, inspection
from kerasrepair.archive import Archive, Limits, open_archive, parse_config
from kerasrepair.context import Options
from kerasrepair.errors import ArchiveError, RepairError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# what the tool raises for bad input, by design
EXPECTED: tuple[type[BaseException], ...] = (ArchiveError, RepairError)

# the archives whose config `config_walkers` replaces (by the input's first byte)
CONFIG_BASES = (
    "models/sequential_mlp.keras",
    "models/functional_nested_shared.keras",
    "releases/keras-3.0.5/lambda_global.keras",
    "models/weights_npz.keras",
    "keras2/mlp_trained.keras",
    "keras2/mlp_trained.h5",
)
RELEASES = (None, "3.0", "3.3", "3.6", "3.10", "3.15")


def archive_reader(data: bytes) -> None:
    path = _scratch() / "input.keras"
    path.write_bytes(data)
    with contextlib.suppress(*EXPECTED):
        inspection.inspect_archive(path)


def config_walkers(data: bytes) -> None:
    if len(data) < 2:
        return
    base = _base(CONFIG_BASES[data[0] % len(CONFIG_BASES)])
    target = RELEASES[data[1] % len(RELEASES)]
    raw = data[2:]
    try:
        config = parse_config(base.path, raw, Limits())
    except ArchiveError:
        return
    archive = copy.copy(base)  # the same zip and weights tree, another config
    archive.config_bytes, archive.config = raw, config
    graph.build(config)
    try:
        check.check(archive, target)
        fix.fix(archive, Options(keras=target, unsafe_fixes=bool(data[1] & 0x80)))
        inspection.describe(archive)
    except EXPECTED:
        pass


def marshal_reader(data: bytes) -> None:
    try:
        code = bytecode.parse_code(data)
    except bytecode.MarshalError:
        return
    python = bytecode.python_version(code)
    if python in bytecode.OPCODES:
        bytecode.global_reads(code, python)
    lambda_code = bytecode.read_lambda(base64.b64encode(data).decode("ascii"))
    lambda_code.defaulted(len(lambda_code.parameters))
    lambda_code.missing  # noqa: B018 (a property: the globals Keras does not provide)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "archive": archive_reader,
    "config": config_walkers,
    "marshal": marshal_reader,
}


@cache
def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="kerasrepair-fuzz-"))


@cache
def _base(name: str) -> Archive:
    archive = open_archive(FIXTURES / name)  # kept open for the process's life
    archive.weights()  # read once, shared by the copies
    return archive


# -- seed corpora, built from the fixtures


def seeds(target: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each seed input of `target`."""
    yield from {"archive": _archive_seeds, "config": _config_seeds, "marshal": _marshal_seeds}[
        target
    ]()


def _fixture_archives(limit: int = 100_000) -> list[Path]:
    folders = ("models", "keras2", "hostile", "releases/keras-3.0.5", "releases/keras-3.15.1")
    paths = []
    for folder in folders:
        for path in sorted((FIXTURES / folder).glob("*")):
            if path.suffix in (".keras", ".h5") and path.stat().st_size <= limit:
                paths.append(path)
    return paths


def _archive_seeds() -> Iterator[tuple[str, bytes]]:
    for path in _fixture_archives():
        yield f"{path.parent.name}-{path.name}", path.read_bytes()


def _configs() -> Iterator[tuple[str, bytes]]:
    for path in _fixture_archives():
        if path.suffix == ".keras" and path.parent.name != "hostile":
            with zipfile.ZipFile(path) as archive:
                if "config.json" in archive.namelist():
                    yield f"{path.parent.name}-{path.stem}", archive.read("config.json")


def _config_seeds() -> Iterator[tuple[str, bytes]]:
    for number, (name, config) in enumerate(_configs()):
        base, release = number % len(CONFIG_BASES), (number // 2) % len(RELEASES)
        yield f"{name}-{base}-{release}", bytes([base, release]) + config


def _marshal_seeds() -> Iterator[tuple[str, bytes]]:
    """The Lambda code the fixtures hold (Python 3.10 to 3.12), code this Python
    compiles, and code objects that share children through marshal references."""
    for name, config in _configs():
        try:
            document = json.loads(config)
        except ValueError:
            continue
        for number, code in enumerate(_lambda_codes(document)):
            yield f"{name}-{number}", code
    sources = {
        "global": "lambda x: x[:, -CONV_WIDTH:, :]",
        "default": "lambda x, w=3, *a, k=1, **kw: ops.sum(x) + w",
        "nested": "lambda x: (lambda y: [np.abs(z) for z in y])(x)",
    }
    for name, source in sources.items():
        code = compile(source, "<fuzz>", "eval").co_consts[0]
        yield f"py3{sys.version_info[1]}-{name}", marshal.dumps(code)
    yield "shared-children", _shared_children(depth=6)


def _lambda_codes(document) -> Iterator[bytes]:
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "__lambda__" and isinstance(node.get("config"), dict):
                code = node["config"].get("code")
                if isinstance(code, str):
                    yield base64.b64decode(code)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _shared_children(depth: int) -> bytes:
    """A code object whose constants hold one child twice, `depth` levels down:
    marshal writes the second as a reference, so the bytes stay small while the
    tree they describe has 2**depth leaves."""
    code = compile("lambda: CONV_WIDTH", "<fuzz>", "eval").co_consts[0]
    for _ in range(depth):
        code = code.replace(co_consts=(None, code, code))
    return marshal.dumps(code)
