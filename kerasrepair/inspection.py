"""`inspect`: what is inside an archive, as a plain dict (the `--json` output).

The report's keys are stable; README.md documents them.
"""

from __future__ import annotations

import os
from typing import Any

from . import graph, keras2, registry
from .archive import Archive, Limits, open_archive
from .context import Context
from .findings import Finding
from .graph import Layer, ModelGraph, TensorRef
from .weights_tree import WeightsTree

REPORT_VERSION = 1

# The rules whose findings are `inspect`'s warnings, and the `kind` each has in
# the report (KR206 on a subclassed model itself is `subclassed_model`).
WARNING_KINDS = {
    "KR202": "archive",
    "KR206": "custom_object",
    "KR303": "described_twice",
    "KR402": "unclaimed_weights",
    "KR502": "lambda_layer",
    "KR901": "weights_problem",
    "KR902": "pickled_weights",
    # security (KR9xx): what `check` reports, `inspect` shows too
    "KR903": "serialized_code",
    "KR904": "foreign_module",
    "KR905": "non_modelling_api",
    "KR906": "torch_module_pickle",
    "KR907": "saved_model_path",
    "KR908": "lookup_file",
    "KR909": "object_name_path",
    "KR910": "weights_shape_bomb",
    "KR911": "prepended_data",
}


def inspect_archive(path: str | os.PathLike, limits: Limits | None = None) -> dict[str, Any]:
    """Describe the archive at `path` without loading it in Keras."""
    with open_archive(path, limits) as archive:
        return describe(archive)


def describe(archive: Archive) -> dict[str, Any]:
    ctx = Context(archive, archive.config)
    model = ctx.graph
    weights = archive.weights()
    report = {
        "report_version": REPORT_VERSION,
        "path": str(archive.path),
        "file_size": archive.file_size,
        # "keras" (a .keras zip) or "h5" (a legacy HDF5 model)
        "format": archive.format,
        # what wrote it: "keras3", or "keras2" (tf.keras), which Keras 3 loads
        # only once converted (`kerasrepair fix`)
        "written_by": "keras2" if keras2.applies(archive) else "keras3",
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
        "warnings": [
            _warning(finding, model)
            for code in WARNING_KINDS
            for finding in registry.by_code(code).detect(ctx)
        ],
    }
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


def _layer(layer: Layer, weights: WeightsTree) -> dict[str, Any]:
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


def _params(layer: Layer, weights: WeightsTree) -> int | None:
    """The layer's parameters as stored; None when the file cannot tell."""
    if weights.pickled:
        return None
    if weights.format == "legacy-h5":  # Keras 2's layout: by the weights' names
        if layer.submodel is not None:
            return sum(_params(inner, weights) or 0 for inner in layer.submodel.layers)
        prefix = f"/{layer.name}/"
        return sum(v.size for v in weights.model_variables if prefix in f"/{v.path}")
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
        optimizer = compile_config.get("optimizer", compile_config.get("optimizer_config"))
        if isinstance(optimizer, dict):
            return optimizer
        if isinstance(optimizer, str):
            return {"class_name": optimizer}
    return {}


def _ref_text(ref: TensorRef) -> str:
    return f"{ref.layer}[{ref.node_index}][{ref.tensor_index}]"


def _warning(finding: Finding, model: ModelGraph) -> dict[str, str]:
    kind = WARNING_KINDS[finding.code]
    if kind == "custom_object" and finding.location == "" and model.kind == graph.SUBCLASSED:
        kind = "subclassed_model"
    return {
        "kind": kind,
        "code": finding.code,
        "location": finding.location,
        "message": finding.message,
    }
