"""Read a Lambda's marshaled code without unmarshalling it.

Keras saves a Python lambda as `base64(marshal.dumps(fn.__code__))`. Marshal
data only loads in the Python minor version that wrote it (3.10 bytes in 3.11:
"bad marshal data"; 3.12 bytes in 3.11: a segfault), so this module never calls
`marshal.loads`. It parses the marshal format itself into plain values (a code
object becomes a `CodeInfo`), tells the writing Python apart by the code
object's byte layout and its bytecode, and lists the global names the code
reads. Nothing here creates or runs code.
"""

from __future__ import annotations

import binascii
import builtins
import struct
from dataclasses import dataclass, field
from typing import Any

# Bounds on the work one blob of marshal data may ask for: nesting (each
# level of code nested in code is two), values read (references included),
# 15-bit digits of one integer. A real lambda stays far within them; beyond,
# the code is said to be unreadable (MarshalError), never read in part.
MAX_DEPTH = 64
MAX_OBJECTS = 100_000
MAX_LONG_DIGITS = 1_000
FLAG_REF = 0x80
# marshal types that carry no data: NULL, None, False, True, StopIteration, Ellipsis
SINGLETONS = {"0": None, "N": None, "F": False, "T": True, "S": StopIteration, ".": ...}

# Code object layouts: 3.8-3.10 store nlocals and no qualname; 3.11+ store
# "localsplus" names and kinds, a qualname and an exception table.
LAYOUT_310 = "3.8-3.10"
LAYOUT_311 = "3.11+"
# A localsplus kind (3.11+): the name is a local variable (parameters come first)
CO_FAST_LOCAL = 0x20

# Per Python version: the opcodes that matter here. Units are 2 bytes; from 3.11,
# inline cache units (zeroed in marshaled code) follow some instructions.
OPCODES = {
    "3.9/3.10": {"RESUME": None, "LOAD_GLOBAL": 116, "EXTENDED_ARG": 144, "null_bit": False},
    "3.11": {"RESUME": 151, "LOAD_GLOBAL": 116, "EXTENDED_ARG": 144, "null_bit": True},
    "3.12": {"RESUME": 151, "LOAD_GLOBAL": 116, "EXTENDED_ARG": 144, "null_bit": True},
    "3.13": {"RESUME": 149, "LOAD_GLOBAL": 91, "EXTENDED_ARG": 71, "null_bit": True},
}
LOAD_GLOBAL_CACHES = {"3.11": 5, "3.12": 4, "3.13": 4}

# What a Lambda's code finds as globals when Keras loads it: builtins, and the
# module globals of keras/src/utils/python_utils.py (func_load uses globals()),
# the same names in every Keras 3 release.
KERAS_PROVIDED = frozenset(dir(builtins)) | {
    "__builtins__",
    "__name__",
    "__doc__",
    "__file__",
    "__package__",
    "__spec__",
    "__loader__",
    "binascii",
    "codecs",
    "marshal",
    "os",
    "python_types",
    "default",
    "is_default",
    "func_dump",
    "func_load",
    "to_list",
    "remove_long_seq",
    "removeprefix",
    "removesuffix",
    "remove_by_id",
    "pythonify_logs",
    "is_continuous_axis",
}


class MarshalError(ValueError):
    """The bytes are not marshal data this reader understands."""


@dataclass(eq=False)  # code shared by reference is one object: never compared or shown whole
class CodeInfo:
    layout: str
    name: str
    code: bytes = field(repr=False)
    consts: list[Any] = field(repr=False)
    names: list[str]
    first_line: int
    filename: str
    nested: list[CodeInfo] = field(default_factory=list, repr=False)
    # co_argcount, co_posonlyargcount, co_kwonlyargcount, co_flags
    argcount: int = 0
    posonlyargcount: int = 0
    kwonlyargcount: int = 0
    flags: int = 0
    # co_varnames: the local variable names, the parameters first
    varnames: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LambdaCode:
    """What the saved bytes say: who wrote them, and which globals they read."""

    python: str  # "3.9/3.10", "3.11", "3.12", "3.13", or "unknown (...)"
    globals_read: tuple[str, ...]  # every global name, in order of first use
    filename: str
    first_line: int
    # the positional parameters, in order (co_varnames[:co_argcount]); the first
    # `positional_only` of them cannot be given by keyword
    parameters: tuple[str, ...] = ()
    positional_only: int = 0
    keyword_only: tuple[str, ...] = ()  # after `*` or `*args`

    @property
    def missing(self) -> tuple[str, ...]:
        """Globals neither builtins nor Keras provide when the Lambda is loaded."""
        return tuple(name for name in self.globals_read if name not in KERAS_PROVIDED)

    def defaulted(self, count: int) -> tuple[str, ...] | None:
        """The parameters `count` saved defaults belong to: the last `count`
        positional ones, as Python assigns `__defaults__`. None when there are
        fewer positional parameters than defaults."""
        if not 0 <= count <= len(self.parameters):
            return None
        return self.parameters[len(self.parameters) - count :]


def decode_base64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error) as e:
        raise MarshalError(f"the code is not base64: {e}") from None


def read_lambda(code_base64: str) -> LambdaCode:
    """Parse a saved lambda's `code` field; raises MarshalError."""
    raw = decode_base64(code_base64)
    code = parse_code(raw)
    python = python_version(code)
    return LambdaCode(
        python=python,
        globals_read=tuple(global_reads(code, python)) if python in OPCODES else (),
        filename=code.filename,
        first_line=code.first_line,
        parameters=tuple(code.varnames[: code.argcount]),
        positional_only=code.posonlyargcount,
        keyword_only=tuple(code.varnames[code.argcount : code.argcount + code.kwonlyargcount]),
    )


def parse_code(raw: bytes) -> CodeInfo:
    """The top-level code object in `raw`, trying both layouts; the right one
    reads every byte."""
    errors = []
    for layout in (LAYOUT_311, LAYOUT_310):
        reader = _Reader(raw, layout)
        try:
            value = reader.read()
        except (MarshalError, struct.error, IndexError, UnicodeDecodeError, RecursionError) as e:
            errors.append(f"{layout}: {e}")
            continue
        if reader.pos == len(raw) and isinstance(value, CodeInfo):
            return value
        errors.append(f"{layout}: {len(raw) - reader.pos} bytes left over")
    raise MarshalError("not a marshaled code object (" + "; ".join(errors) + ")")


def python_version(code: CodeInfo) -> str:
    """The Python minor version that wrote `code`, from its layout and bytecode."""
    if code.layout == LAYOUT_310:
        return "3.9/3.10"
    opcodes = [code.code[i] for i in range(0, min(len(code.code), 12), 2)]
    # RESUME of 3.11 and 3.12 (151); 3.13's (149) is 3.11's COPY_FREE_VARS
    if OPCODES["3.11"]["RESUME"] in opcodes:
        caches = _load_global_caches(code)
        if caches == LOAD_GLOBAL_CACHES["3.11"]:
            return "3.11"
        if caches == LOAD_GLOBAL_CACHES["3.12"]:
            return "3.12"
        return "3.11" if caches is None else f"unknown (3.11-style, {caches} cache units)"
    first_of_313 = (OPCODES["3.13"]["RESUME"], 62, 94)  # RESUME, COPY_FREE_VARS, MAKE_CELL
    if opcodes and opcodes[0] in first_of_313:
        return "3.13"
    return "unknown (3.14 or newer?)"


def global_reads(code: CodeInfo, python: str) -> list[str]:
    """Names loaded with LOAD_GLOBAL, in this code and the code nested in it."""
    table = OPCODES[python]
    found: list[str] = []
    for info in _all_code(code):
        for opcode, arg, _ in _instructions(info.code, table["EXTENDED_ARG"]):
            if opcode == table["LOAD_GLOBAL"]:
                index = arg >> 1 if table["null_bit"] else arg
                if index < len(info.names) and info.names[index] not in found:
                    found.append(info.names[index])
    return found


def _all_code(code: CodeInfo):
    """`code` and the code nested in it, depth first, each once: marshal
    writes an object used twice once, and a reference to it after, so nested
    code may be shared (walked as a tree, 28 levels of sharing are 2**28 visits)."""
    seen: set[int] = set()
    stack = [code]
    while stack:
        info = stack.pop()
        if id(info) in seen:
            continue
        seen.add(id(info))
        yield info
        stack.extend(reversed(info.nested))


def _instructions(code: bytes, extended_arg: int):
    """(opcode, full argument, offset) for each 2-byte unit that is not a cache
    unit (cache units are zero in marshaled code; opcode 0 is CACHE)."""
    arg = 0
    for offset in range(0, len(code) - 1, 2):
        opcode, unit_arg = code[offset], code[offset + 1]
        if opcode == 0:
            arg = 0
            continue
        arg = (arg << 8) | unit_arg
        if opcode == extended_arg:
            continue
        yield opcode, arg, offset
        arg = 0


def _load_global_caches(code: CodeInfo) -> int | None:
    """Zero units after the first LOAD_GLOBAL (the same opcode in 3.11 and
    3.12): 5 in 3.11, 4 in 3.12."""
    table = OPCODES["3.11"]
    for info in _all_code(code):
        units = info.code
        for opcode, _, offset in _instructions(units, table["EXTENDED_ARG"]):
            if opcode != table["LOAD_GLOBAL"]:
                continue
            count = 0
            at = offset + 2
            while at + 1 < len(units) and units[at] == 0 and units[at + 1] == 0:
                count += 1
                at += 2
            return count
    return None


class _Reader:
    """A marshal reader that builds plain values, never code or objects."""

    def __init__(self, data: bytes, layout: str):
        self.data = data
        self.pos = 0
        self.layout = layout
        self.refs: list[Any] = []
        self.depth = 0
        self.objects = 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def int32(self) -> int:
        (value,) = struct.unpack_from("<i", self.data, self.pos)
        self.pos += 4
        return value

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise MarshalError("truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def read(self) -> Any:
        self.depth += 1
        self.objects += 1
        if self.depth > MAX_DEPTH:
            raise MarshalError(f"nested more than {MAX_DEPTH} levels deep")
        if self.objects > MAX_OBJECTS:
            raise MarshalError(f"more than {MAX_OBJECTS:,} values")
        try:
            return self._read()
        finally:
            self.depth -= 1

    def _read(self) -> Any:
        code = self.byte()
        kind, flagged = chr(code & 0x7F), bool(code & FLAG_REF)
        slot = None
        if flagged:
            slot = len(self.refs)
            self.refs.append(None)  # reserved before the children, as marshal.c does
        value = self._value(kind)
        if slot is not None:
            self.refs[slot] = value
        return value

    def _value(self, kind: str) -> Any:
        if kind in SINGLETONS:
            return SINGLETONS[kind]
        if kind == "i":
            return self.int32()
        if kind == "l":
            digits = self.int32()
            if abs(digits) > MAX_LONG_DIGITS:
                raise MarshalError(f"an integer of {abs(digits):,} digits")
            value = 0
            for i in range(abs(digits)):
                value |= struct.unpack("<H", self.take(2))[0] << (15 * i)
            return -value if digits < 0 else value
        if kind == "g":
            return struct.unpack("<d", self.take(8))[0]
        if kind == "y":
            return complex(*struct.unpack("<dd", self.take(16)))
        if kind == "s":
            return self.take(self.int32())
        if kind in "tua":
            return self.take(self.int32()).decode("utf-8", "surrogatepass")
        if kind == "A":
            return self.take(self.int32()).decode("ascii")
        if kind in "zZ":
            return self.take(self.byte()).decode("ascii")
        if kind == "r":
            index = self.int32()
            if not 0 <= index < len(self.refs):
                raise MarshalError(f"bad reference {index}")
            return self.refs[index]
        if kind in "([<>":
            size = self.int32()
            if size < 0 or size > len(self.data):
                raise MarshalError(f"bad size {size}")
            return [self.read() for _ in range(size)]
        if kind == ")":
            return [self.read() for _ in range(self.byte())]
        if kind == "{":  # (key, value) pairs: a key may be shared structure, never repr'd
            items = []
            while self.data[self.pos] != ord("0"):
                items.append((self.read(), self.read()))
            self.pos += 1
            return items
        if kind == "c":
            return self._code()
        raise MarshalError(f"unknown marshal type {kind!r} at byte {self.pos - 1}")

    def _code(self) -> CodeInfo:
        # 3.11+: argcount, posonlyargcount, kwonlyargcount, stacksize, flags;
        # 3.8-3.10: nlocals before stacksize
        header = [self.int32() for _ in range(5 if self.layout == LAYOUT_311 else 6)]
        argcount, posonlyargcount, kwonlyargcount, flags = *header[:3], header[-1]
        code = self.read()
        consts = self.read()
        names = self.read()
        if self.layout == LAYOUT_311:
            localsplus, kinds = self.read(), self.read()
            if not isinstance(kinds, bytes) or not isinstance(localsplus, list):
                raise MarshalError("not a code object of this layout")
            if len(kinds) != len(localsplus):
                raise MarshalError("not a code object of this layout")
            varnames = [
                n for n, kind in zip(localsplus, kinds, strict=True) if kind & CO_FAST_LOCAL
            ]
            filename, name = self.read(), self.read()
            self.read()  # qualname
            first_line = self.int32()
            self.read()  # linetable
            self.read()  # exception table
        else:
            varnames = self.read()
            self.read()  # freevars
            self.read()  # cellvars
            filename, name = self.read(), self.read()
            first_line = self.int32()
            self.read()  # lnotab / linetable
        if not isinstance(code, bytes) or not isinstance(consts, list):
            raise MarshalError("not a code object of this layout")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise MarshalError("not a code object of this layout")
        if not isinstance(varnames, list) or not all(isinstance(n, str) for n in varnames):
            raise MarshalError("not a code object of this layout")
        counts = (argcount, posonlyargcount, kwonlyargcount)
        if (
            min(counts) < 0
            or posonlyargcount > argcount
            or argcount + kwonlyargcount > len(varnames)
        ):
            raise MarshalError("not a code object of this layout")
        return CodeInfo(
            layout=self.layout,
            name=str(name),
            code=code,
            consts=consts,
            names=names,
            first_line=first_line,
            filename=str(filename),
            nested=[c for c in consts if isinstance(c, CodeInfo)],
            argcount=argcount,
            posonlyargcount=posonlyargcount,
            kwonlyargcount=kwonlyargcount,
            flags=flags,
            varnames=varnames,
        )
