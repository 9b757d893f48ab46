"""KR502: a Lambda layer holds serialized Python code; what that code is, from its bytes."""

from __future__ import annotations

from .. import bytecode
from ..context import Context
from ..findings import NEVER, NOTE, Finding, Rule

RULE = Rule(
    code="KR502",
    name="lambda-layer",
    severity=NOTE,
    summary="A Lambda layer holds serialized Python code: what it is, read from its bytes",
    explanation="""\
A Lambda layer's function is saved as marshaled Python bytecode. Keras loads
it only with `safe_mode=False`, in the Python version that wrote it, and then
runs it: loading the archive runs code. kerasrepair reads the bytecode
without loading it and says which Python wrote it, where (file and line),
which module-level names it reads that the archive does not save (KR501),
and whether it calls names such as `eval`, `exec`, `open` or `__import__`.
Replace Lambda layers with layer classes of your own to get archives that
load safely.""",
    fix=NEVER,
    checked=False,  # inspect shows it
)

# Names whose use in saved code deserves a second look before loading it.
RISKY_NAMES = frozenset(
    {"exec", "eval", "compile", "__import__", "open", "os", "getattr", "globals", "breakpoint"}
)


def detect(ctx: Context) -> list[Finding]:
    return [
        Finding(
            code=RULE.code,
            message=_message(layer.name, _function(layer.config)),
            location=layer.pointer,
            severity=NOTE,
            layer=layer.name,
            hint="load it only with safe_mode=False, in the Python version that saved it, "
            "and only if you trust its source",
        )
        for layer in ctx.graph.walk()
        if layer.class_name == "Lambda"
    ]


def _function(config) -> object:
    return config.get("function") if isinstance(config, dict) else None


def _message(name: str, function) -> str:
    """What the Lambda's saved code is, read from its bytes (never loaded)."""
    message = f"Lambda layer '{name}' holds serialized Python code"
    if isinstance(function, dict) and function.get("class_name") == "__lambda__":
        inner = function.get("config")
        try:
            code = bytecode.read_lambda(
                str(inner.get("code", "") if isinstance(inner, dict) else "")
            )
        except bytecode.MarshalError as e:
            return f"{message} that cannot be read ({e})"
        message = f"{message} (Python {code.python}, {code.filename}:{code.first_line})"
        if code.missing:
            message += f"; it reads globals the archive does not save: {', '.join(code.missing)}"
        risky = sorted(RISKY_NAMES.intersection(code.globals_read))
        if risky:
            message += f"; it calls {', '.join(risky)}: load it only if you trust its source"
    return f"{message}. It loads only with safe_mode=False, in the Python version that saved it"
