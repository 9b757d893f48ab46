"""KR906: a TorchModuleWrapper, whose config holds a pickled torch module:
what the pickle would import, read from its opcodes (never unpickled)."""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from dataclasses import dataclass, field

from .. import advisories, pointer, security
from ..context import Context
from ..findings import ERROR, NEVER, WARNING, Finding, Rule

RULE = Rule(
    code="KR906",
    name="torch-module-pickle",
    severity=ERROR,
    summary="A TorchModuleWrapper holds a pickled torch module: loading it unpickles it",
    explanation="""\
keras.layers.TorchModuleWrapper saves the torch module it wraps with
`torch.save` into its config (`"module"`: base64 of a torch archive, a zip whose
`data.pkl` is a pickle), and loading the model calls
`torch.load(..., weights_only=False)` on it: a pickle imports and calls
whatever it names (CVE-2025-49655). Keras 3.11.3+ refuse it while
safe_mode=True; every release unpickles it with safe_mode=False.

kerasrepair reads the pickle's opcodes (pickletools, bounded: never
`pickle.loads`) and lists the globals it would import (GLOBAL, STACK_GLOBAL,
INST). An error when one is outside torch and the helpers that rebuild
tensors and dicts (collections.OrderedDict, copyreg._reconstructor, numpy's
_reconstruct): `os.system`, `builtins.eval`, `subprocess.Popen`, a name
computed while unpickling, or a pickle that cannot be read whole. A warning
otherwise: any unpickling runs code (the module's own classes are imported).

There is no fix: load the model only with safe_mode=False and only if you
trust its source, or rebuild the module from its code and load its weights
(state_dict) instead.""",
    fix=NEVER,
)

MAX_PICKLE_BYTES = 64 * 1024 * 1024  # one pickle of the torch archive, decompressed
MAX_OPCODES = 2_000_000
MAX_PICKLES = 16  # torch's legacy format is a few pickles one after another
SHOWN = 8  # globals named in a message

# what unpickling a torch module normally imports, besides torch itself
REBUILDERS = frozenset(
    (
        "collections.OrderedDict",
        "collections.defaultdict",
        "copyreg._reconstructor",
        "_codecs.encode",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
    )
) | {
    f"{m}.{t}"
    for m in ("builtins", "__builtin__")
    for t in (
        "set",
        "frozenset",
        "slice",
        "complex",
        "bytearray",
        "object",
        "int",
        "float",
        "bool",
        "str",
        "bytes",
        "list",
        "dict",
        "tuple",
        "range",
    )
}
# parts of torch that load files or more pickles
TORCH_LOADERS = (
    "torch.load",
    "torch.hub.",
    "torch.serialization.",
    "torch.jit.",
    "torch.package.",
    "torch.utils.cpp_extension.",
    "torch.ops.load_library",
    "torch.classes.load_library",
    "torch.storage._load_from_bytes",
)
STRINGS = frozenset(
    (
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
    )
)
MARK = object()  # a MARK on the simulated stack
COMPUTED = "<a name computed while unpickling>"


class PickleError(ValueError):
    """What is wrong with the pickle, said for the finding."""


@dataclass
class Scan:
    """What a pickle would import, in order, each once."""

    imports: list[str] = field(default_factory=list)
    opcodes: int = 0

    def add(self, name: str) -> None:
        if name not in self.imports:
            self.imports.append(name)


def detect(ctx: Context) -> list[Finding]:
    said = advisories.advised(RULE.code)
    found = []
    for path, obj, owner, arguments in security.instances(ctx, "TorchModuleWrapper"):
        if "module" not in arguments:
            continue
        who = security.describe(obj, owner)
        where = pointer.of((*path, "config", "module"))
        try:
            scan = scan_module(arguments["module"])
        except PickleError as e:
            message, severity = f"{who} holds a torch module pickle that cannot be read: {e}", ERROR
        else:
            message, severity = _said(who, scan)
        found.append(
            Finding(
                RULE.code,
                message,
                where,
                severity,
                layer=security.layer_of(obj, owner),
                hint="do not load it unless you trust its source (only safe_mode=False loads it, "
                "and then the pickle runs); rebuild the torch module from its code and load its "
                f"state_dict instead. Advisories: {said}",
            )
        )
    return found


def _said(who: str, scan: Scan) -> tuple[str, str]:
    dangerous = [name for name in scan.imports if unsafe(name)]
    if dangerous:
        return (
            f"{who} holds a torch module pickle that imports {_names(dangerous)}: "
            "unpickling it runs that",
            ERROR,
        )
    return (
        f"{who} holds a torch module pickle (it imports {_names(scan.imports)}): "
        "unpickling any pickle runs code",
        WARNING,
    )


def _names(names: list[str]) -> str:
    if not names:
        return "nothing"
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def unsafe(name: str) -> bool:
    """Whether an imported global is outside what rebuilds a torch module."""
    if name == COMPUTED or name.startswith("<"):
        return True
    if name in REBUILDERS:
        return False
    if name == "torch" or name.startswith("torch."):
        return name.startswith(TORCH_LOADERS)
    if name.startswith("numpy."):
        return True  # numpy.load and the like: only its rebuilders belong here
    module = name.rpartition(".")[0]
    return security.not_modelling(module) is not None


# ------------------------------------------------------------------- reading


def scan_module(value) -> Scan:
    """The globals the saved module's pickles import; PickleError when its
    bytes cannot be read or scanned whole."""
    data = _bytes(value)
    scan = Scan()
    if data[:4] == b"PK\x03\x04":  # torch.save's zip archive: `<name>/data.pkl`
        for pickle_bytes in _archive_pickles(data):
            scan_pickles(pickle_bytes, scan)
    else:  # torch's legacy format: pickles one after another
        scan_pickles(data, scan)
    return scan


def _bytes(value) -> bytes:
    """The module's bytes: base64 (Keras 3.11+), a list of byte values, or a
    `__bytes__` object."""
    if isinstance(value, dict) and value.get("class_name") == "__bytes__":
        inner = value.get("config")
        value = inner.get("value") if isinstance(inner, dict) else None
        if isinstance(value, str):
            try:
                return value.encode("utf-8")
            except UnicodeError as e:
                raise PickleError(f"its __bytes__ value is not text ({e.reason})") from None
    if isinstance(value, str):
        if len(value) > MAX_PICKLE_BYTES * 2:
            raise PickleError(f"{len(value)} characters of base64, over the limit")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as e:
            raise PickleError(f"it is not base64 ({e})") from None
    if isinstance(value, list):
        if len(value) > MAX_PICKLE_BYTES or not all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value
        ):
            raise PickleError("it is a list, but not of byte values")
        return bytes(value)
    raise PickleError(f"it is a JSON {type(value).__name__}, not bytes")


def _archive_pickles(data: bytes) -> list[bytes]:
    """The `.pkl` entries of a torch archive, each read up to the limit."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [i for i in archive.infolist() if i.filename.endswith(".pkl")]
            if not infos:
                raise PickleError("its torch archive holds no .pkl entry")
            pickles = []
            for info in infos:
                if info.file_size > MAX_PICKLE_BYTES:
                    raise PickleError(f"{info.filename} declares {info.file_size} bytes")
                with archive.open(info) as entry:
                    content = entry.read(MAX_PICKLE_BYTES + 1)
                if len(content) > MAX_PICKLE_BYTES:
                    raise PickleError(f"{info.filename} is over {MAX_PICKLE_BYTES} bytes")
                pickles.append(content)
            return pickles
    except PickleError:
        raise
    except Exception as e:  # zipfile, zlib, lzma: any damage of untrusted bytes
        raise PickleError(f"its torch archive is damaged ({type(e).__name__}: {e})") from None


def scan_pickles(data: bytes, scan: Scan) -> None:
    """Scan the pickles `data` holds one after another into `scan`."""
    stream = io.BytesIO(data)
    for _ in range(MAX_PICKLES):
        if stream.tell() >= len(data):
            return
        _scan_one(stream, scan)
    if stream.tell() < len(data):
        raise PickleError(f"more than {MAX_PICKLES} pickles one after another")


def _scan_one(stream: io.BytesIO, scan: Scan) -> None:
    """One pickle, from its opcodes: a stack of the strings pushed (None for
    anything else) is enough to tell what STACK_GLOBAL imports."""
    import pickletools  # here, not at every start (pickle with it: 4 ms)

    stack: list = []
    memo: dict = {}
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            scan.opcodes += 1
            if scan.opcodes > MAX_OPCODES:
                raise PickleError(f"over {MAX_OPCODES} opcodes: not scanned whole")
            _step(opcode, arg, stack, memo, scan, pickletools.markobject)
    except PickleError:
        raise
    except Exception as e:  # pickletools on damaged bytes: ValueError, EOFError ...
        raise PickleError(f"damaged at byte {stream.tell()} ({type(e).__name__}: {e})") from None


def _step(opcode, arg, stack: list, memo: dict, scan: Scan, markobject) -> None:
    name = opcode.name
    if name == "MEMOIZE":
        memo[len(memo)] = _top(stack)
        return
    if name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = _top(stack)
        return
    if name in ("GET", "BINGET", "LONG_BINGET"):
        if arg not in memo:
            raise PickleError(f"{name} of memo {arg}, never stored")
        stack.append(memo[arg])
        return
    if name == "DUP":
        stack.append(_top(stack))
        return
    if name in ("GLOBAL", "INST"):
        scan.add(str(arg).replace(" ", "."))
    elif name == "STACK_GLOBAL":
        attribute = _pop(stack)
        module = _pop(stack)  # pushed first
        known = isinstance(module, str) and isinstance(attribute, str)
        scan.add(f"{module}.{attribute}" if known else COMPUTED)
        stack.append(None)
        return
    elif name.startswith("EXT"):
        scan.add(f"<extension code {arg}>")
    # every other opcode: what it takes off the stack, then what it puts on
    before = opcode.stack_before
    if any(item is markobject for item in before):
        while _pop(stack) is not MARK:
            pass
        for _ in range([i is markobject for i in before].index(True)):
            _pop(stack)
    else:
        for _ in before:
            _pop(stack)
    for item in opcode.stack_after:
        if item is markobject:
            stack.append(MARK)
        elif name in STRINGS:
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        else:
            stack.append(None)


def _top(stack: list):
    if not stack:
        raise PickleError("a memo of an empty stack")
    return stack[-1]


def _pop(stack: list):
    if not stack:
        raise PickleError("it takes from an empty stack")
    return stack.pop()
