"""`inspect`: what is inside an archive, as a plain dict (the `--json` output).

The report's keys are stable; README.md documents them.
"""

from __future__ import annotations

import os
from typing import Any

from . import graph
from .archive import Archive, Limits, open_archive
from .graph import LayerInfo, ModelGraph, TensorRef
from .weights import OPTIMIZER, WeightsTree

REPORT_VERSION = 1


def inspect_archive(path: str | os.PathLike, limits: Limits | None = None) -> dict[str, Any]:
    """Describe the archive at `path` without loading it in Keras."""
    with open_archive(path, limits) as archive:
        return describe(archive)


def describe(archive: Archive) -> dict[str, Any]:
    model = graph.build(archive.config)
    weights = archive.weights()
    warnings: list[dict[str, str]] = []
    report = {
        "report_version": REPORT_VERSION,
        "path": str(archive.path),
        "file_size": archive.file_size,
        "entries": [
            {
                "name": e.name,
                "size": e.size,
                "compressed_size": e.compressed_size,
                "method": e.method_name,
                "crc32": f"{e.crc32:08x}",
            }
            for e in archive.entries
        ],
        "metadata": {
            "keras_version": archive.keras_version,
            "date_saved": (archive.metadata or {}).get("date_saved"),
        },
        "model": _model(model, weights),
        "weights": _weights(archive, weights),
        "assets": [e.name for e in archive.asset_entries if not e.name.endswith("/")],
        "warnings": warnings,
    }
    warnings.extend(_warning("archive", "", problem) for problem in archive.problems)
    warnings.extend(_layer_warnings(model))
    warnings.extend(_described_twice(archive.config, model, weights))
    warnings.extend(_weights_warnings(model, weights))
    return report


def _model(model: ModelGraph, weights: WeightsTree) -> dict[str, Any]:
    return {
        "name": model.name,
        "class_name": model.class_name,
        "module": model.module,
        "registered_name": model.registered_name,
        "kind": model.kind,
        "inputs": [_ref_text(ref) for ref in model.inputs],
        "outputs": [_ref_text(ref) for ref in model.outputs],
        "layers": [_layer(layer, weights) for layer in model.layers],
    }


def _layer(layer: LayerInfo, weights: WeightsTree) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": layer.name,
        "class_name": layer.class_name,
        "module": layer.module,
        "operation": layer.is_operation,
        "calls": layer.calls,
        "inbound": [[_ref_text(ref) for ref in node.inputs] for node in layer.nodes],
        "weights_path": layer.weights_path,
        "params": _params(layer, weights),
    }
    if layer.submodel is not None:
        row["model"] = _model(layer.submodel, weights)
    return row


def _params(layer: LayerInfo, weights: WeightsTree) -> int | None:
    """The layer's parameters as stored; None when the file cannot tell."""
    if weights.pickled:
        return None
    return weights.params_under(layer.weights_path) if layer.weights_path else 0


def _weights(archive: Archive, weights: WeightsTree) -> dict[str, Any]:
    model_variables = weights.model_variables
    optimizer_variables = weights.optimizer_variables
    optimizer_config = _optimizer_config(archive.config)
    optimizer_group = weights.var_groups.get("optimizer/vars")
    return {
        "format": weights.format,
        "entry": weights.entry,
        "variables": len(model_variables),
        "params": sum(v.size for v in model_variables),
        "bytes": sum(v.nbytes for v in model_variables),
        "optimizer": {
            "class_name": optimizer_config.get("class_name") or optimizer_group,
            "variables": len(optimizer_variables),
            "bytes": sum(v.nbytes for v in optimizer_variables),
            "iterations": weights.optimizer_iterations,
        }
        if optimizer_variables or optimizer_config
        else None,
        "tree": [
            {"path": v.path, "shape": list(v.shape), "dtype": v.dtype, "bytes": v.nbytes}
            for v in weights.variables
        ],
        "groups": [
            {"path": path, "layer_name": name, "params": weights.params_under(path)}
            for path, name in weights.var_groups.items()
        ],
        "pickled": weights.pickled,
        "problems": [{"path": p.path, "problem": p.what} for p in weights.problems],
    }


def _optimizer_config(config: dict[str, Any]) -> dict[str, Any]:
    compile_config = config.get("compile_config")
    if isinstance(compile_config, dict):
        optimizer = compile_config.get("optimizer")
        if isinstance(optimizer, dict):
            return optimizer
        if isinstance(optimizer, str):
            return {"class_name": optimizer}
    return {}


def _layer_warnings(model: ModelGraph) -> list[dict[str, str]]:
    warnings = []
    if model.kind == graph.SUBCLASSED:
        warnings.append(
            _warning(
                "subclassed_model",
                "",
                f"'{model.class_name}' is a subclassed model: its layers are built by "
                f"its own code ({model.module or 'module unknown'}), which the loader "
                "must be able to import",
            )
        )
    for layer in model.walk():
        if layer.class_name == "Lambda":
            warnings.append(_warning("lambda_layer", layer.pointer, _lambda_message(layer)))
        if not _is_keras_module(layer.module):
            warnings.append(
                _warning(
                    "custom_object",
                    layer.pointer,
                    f"layer '{layer.name}' is a custom class "
                    f"'{layer.registered_name or layer.class_name}' from module "
                    f"'{layer.module}': pass it to load_model(custom_objects=...) "
                    "or import the module that registers it",
                )
            )
    return warnings


# Names whose use in saved code deserves a second look before loading it.
RISKY_NAMES = frozenset(
    {"exec", "eval", "compile", "__import__", "open", "os", "getattr", "globals", "breakpoint"}
)


def _lambda_message(layer: LayerInfo) -> str:
    """What the Lambda's saved code is, read from its bytes (never loaded)."""
    message = f"Lambda layer '{layer.name}' holds serialized Python code"
    function = layer.config.get("function")
    if isinstance(function, dict) and function.get("class_name") == "__lambda__":
        from . import bytecode

        try:
            code = bytecode.read_lambda(str((function.get("config") or {}).get("code", "")))
        except bytecode.MarshalError as e:
            return f"{message} that cannot be read ({e})"
        message = f"{message} (Python {code.python}, {code.filename}:{code.first_line})"
        if code.missing:
            message += f"; it reads globals the archive does not save: {', '.join(code.missing)}"
        risky = sorted(RISKY_NAMES.intersection(code.globals_read))
        if risky:
            message += f"; it calls {', '.join(risky)}: load it only if you trust its source"
    return f"{message}. It loads only with safe_mode=False, in the Python version that saved it"


def _described_twice(
    config: dict[str, Any], model: ModelGraph, weights: WeightsTree
) -> list[dict[str, str]]:
    """One layer object described at two levels (KR303, the VAE case): the
    loader builds two layers, and the copy whose weight group is empty gets
    no weights."""
    from .passes import described_twice

    return [
        _warning("described_twice", found.empty[0].pointer, described_twice.message(found, weights))
        for found in described_twice.described_twice(config, model, lambda: weights)
    ]


def _weights_warnings(model: ModelGraph, weights: WeightsTree) -> list[dict[str, str]]:
    warnings = [
        _warning("weights_problem", f"{weights.entry}:{p.path}", p.what) for p in weights.problems
    ]
    if weights.pickled:
        warnings.append(
            _warning(
                "pickled_weights",
                str(weights.entry),
                f"{len(weights.pickled)} entries of {weights.entry} are pickled object "
                "arrays; kerasrepair never unpickles, so their variables are not described",
            )
        )
    if model.kind == graph.SUBCLASSED:
        return warnings  # weight paths follow attribute names, unknown here
    claimed = {layer.weights_path for layer in model.walk() if layer.weights_path}
    unclaimed = sorted(
        group
        for group in {path.removesuffix("/vars") for path in weights.var_groups}
        if group != "vars"
        and not (group + "/").startswith(OPTIMIZER)
        and not _under_any(group, claimed)
        and weights.params_under(group)
    )
    for group in unclaimed:
        warnings.append(
            _warning(
                "unclaimed_weights",
                f"{weights.entry}:{group}",
                f"weights at '{group}' ({weights.params_under(group)} values) belong to "
                "no layer of config.json: the loader will not restore them",
            )
        )
    return warnings


def _under_any(group: str, prefixes: set[str]) -> bool:
    parts = group.split("/")
    return any("/".join(parts[:end]) in prefixes for end in range(1, len(parts) + 1))


def _is_keras_module(module: Any) -> bool:
    return module is None or (isinstance(module, str) and module.split(".")[0] == "keras")


def _ref_text(ref: TensorRef) -> str:
    return f"{ref.layer}[{ref.node_index}][{ref.tensor_index}]"


def _warning(kind: str, location: str, message: str) -> dict[str, str]:
    return {"kind": kind, "location": location, "message": message}
