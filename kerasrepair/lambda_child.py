"""Patch a saved Lambda's code so that it no longer reads missing globals.

Run as a child process (`python -I -S lambda_child.py`, standard library only)
by the KR501 pass, never imported by the tool: unmarshalling code written by
another Python version can crash the interpreter, so it happens here, in a
process of the Python version that wrote the code, after checking that version.
The code is unmarshalled and re-marshalled, never run.

stdin:  {"code": base64, "python": "3.11", "defines": {"NAME": "VALUE", ...}}
        VALUE is a Python literal (read with ast.literal_eval), or
        "module:dotted.name" for a module the code uses (e.g. "module:keras.ops").
stdout: {"code": base64} or {"error": "..."}

Each `LOAD_GLOBAL NAME` becomes `LOAD_CONST value` (or an import of the module),
padded with NOPs to the same length, so jump targets, line tables and exception
tables stay valid.
"""

import ast
import codecs
import dis
import json
import marshal
import opcode
import sys
import types

MODULE_PREFIX = "module:"


class PatchError(Exception):
    pass


def main():
    request = json.loads(sys.stdin.read())
    try:
        code = patch_base64(request["code"], request["python"], request["defines"])
        answer = {"code": code}
    except PatchError as e:
        answer = {"error": str(e)}
    sys.stdout.write(json.dumps(answer))


def patch_base64(code_base64, python, defines):
    running = "{}.{}".format(*sys.version_info[:2])
    if running not in python.split("/"):
        raise PatchError(f"the code was written by Python {python}, this is Python {running}")
    values = {name: _value(name, text) for name, text in defines.items()}
    code = marshal.loads(codecs.decode(code_base64.encode("ascii"), "base64"))
    if not isinstance(code, types.CodeType):
        raise PatchError("the saved function is not a code object")
    patched = patch(code, values)
    # as keras.src.utils.python_utils.func_dump writes it
    return codecs.encode(marshal.dumps(patched), "base64").decode("ascii")


def _value(name, text):
    if text.startswith(MODULE_PREFIX):
        module = text[len(MODULE_PREFIX) :]
        if not all(part.isidentifier() for part in module.split(".")):
            raise PatchError(f"{name}: {module!r} is not a module name")
        return ("module", module)
    try:
        value = ast.literal_eval(text)
        marshal.dumps(value)
    except (ValueError, SyntaxError, TypeError) as e:
        raise PatchError(f"{name}={text}: not a Python literal ({e})") from None
    return ("const", value)


def patch(code, values, patched=None):
    """`code` with each read of a name in `values` replaced; code shared by
    several parents (marshal references) is patched once (`patched`: by id)."""
    patched = {} if patched is None else patched
    if id(code) in patched:
        return patched[id(code)]
    consts = [
        patch(c, values, patched) if isinstance(c, types.CodeType) else c for c in code.co_consts
    ]
    names = list(code.co_names)
    units = bytearray(code.co_code)
    extra_stack = 0
    load_global = opcode.opmap["LOAD_GLOBAL"]
    null_bit = sys.version_info >= (3, 11)
    instructions = list(dis.get_instructions(code))
    for i, instruction in enumerate(instructions):
        if instruction.opcode != load_global:
            continue
        name_index = instruction.arg >> 1 if null_bit else instruction.arg
        name = code.co_names[name_index]
        if name not in values:
            continue
        pushes_null = null_bit and bool(instruction.arg & 1)
        start = instruction.offset
        while i > 0 and instructions[i - 1].opcode == opcode.EXTENDED_ARG:
            i -= 1
            start = instructions[i].offset
        end = instruction.offset + 2 + 2 * _caches(load_global)
        kind, value = values[name]
        if kind == "const":
            sequence = [("LOAD_CONST", _add(consts, value))]
        else:
            fromlist = ("__name__",) if "." in value else None  # returns the leaf module
            names.append(value)
            sequence = [
                ("LOAD_CONST", _add(consts, 0)),
                ("LOAD_CONST", _add(consts, fromlist)),
                ("IMPORT_NAME", len(names) - 1),
            ]
            extra_stack = 2
        if pushes_null:
            # 3.11 and 3.12 push NULL below the callable, 3.13 above it
            if sys.version_info >= (3, 13):
                sequence.append(("PUSH_NULL", 0))
            else:
                sequence.insert(0, ("PUSH_NULL", 0))
        encoded = _encode(sequence)
        if len(encoded) > end - start:
            raise PatchError(f"no room to replace {name} in {code.co_name}")
        nop = bytes([opcode.opmap["NOP"], 0])
        units[start:end] = encoded + nop * ((end - start - len(encoded)) // 2)
    patched[id(code)] = code.replace(
        co_code=bytes(units),
        co_consts=tuple(consts),
        co_names=tuple(names),
        co_stacksize=code.co_stacksize + extra_stack,
    )
    return patched[id(code)]


def _caches(op):
    entries = getattr(opcode, "_inline_cache_entries", None)
    if entries is None:
        return 0
    if isinstance(entries, dict):
        return entries.get(opcode.opname[op], entries.get(op, 0))
    return entries[op]


def _add(consts, value):
    """Index of `value` in consts, appended if not there (same type and value)."""
    for index, existing in enumerate(consts):
        if type(existing) is type(value) and existing == value:
            return index
    consts.append(value)
    return len(consts) - 1


def _encode(sequence):
    out = bytearray()
    for name, arg in sequence:
        high = arg >> 8
        prefixes = []
        while high:
            prefixes.insert(0, high & 0xFF)
            high >>= 8
        for prefix in prefixes:
            out += bytes([opcode.EXTENDED_ARG, prefix])
        out += bytes([opcode.opmap[name], arg & 0xFF])
    return bytes(out)


if __name__ == "__main__":
    main()
