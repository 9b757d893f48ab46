"""Every rule, in the order `check` reports and `fix` applies them; the only `by_code`.

Order matters to `fix`: each rule sees the config the rules before it left.
Node indices come first (the call-order replay needs the wiring the model was
built with); arguments a release does not know come last.
"""

from __future__ import annotations

from types import ModuleType

from .findings import Rule
from .passes import (
    attention_sublayer_groups,
    config_structure,
    custom_function_name,
    custom_object,
    dtype_policy_object,
    foreign_module,
    initializer_name,
    internal_module,
    keras2_axis_list,
    keras2_compile_config,
    keras2_dtype_policy,
    keras2_input_shape,
    keras2_lambda,
    keras2_layer_name,
    keras2_module,
    keras2_nested_sequential_node,
    keras2_weights_layout,
    lambda_default_argument,
    lambda_layer,
    lambda_missing_global,
    layer_described_twice,
    lookup_file,
    lost_node_indices,
    metadata_structure,
    missing_argument,
    missing_build_config,
    missing_weights,
    nested_container_weights,
    nested_model_output,
    no_schema_for_release,
    non_modelling_api,
    numpy_layer_argument,
    object_name_path,
    operation_name,
    pickled_weights,
    prepended_data,
    saved_model_path,
    sequential_nested_output,
    serialized_code,
    shared_layer_call_order,
    single_input_output,
    torch_module_pickle,
    unbuildable_subclassed_model,
    unclaimed_weights,
    unknown_activation,
    unknown_argument,
    unknown_class,
    weights_reference,
    weights_shape_bomb,
)

MODULES: tuple[ModuleType, ...] = (
    no_schema_for_release,
    metadata_structure,
    config_structure,
    # Keras 2 -> Keras 3 (KR7xx): the wiring first, as tf.keras numbered it
    keras2_nested_sequential_node,
    keras2_lambda,
    keras2_dtype_policy,
    keras2_compile_config,
    keras2_module,
    keras2_input_shape,
    keras2_axis_list,
    keras2_weights_layout,
    keras2_layer_name,  # after the weights: a legacy HDF5 model's are found by layer name
    lost_node_indices,
    single_input_output,
    sequential_nested_output,
    shared_layer_call_order,
    nested_model_output,
    layer_described_twice,
    missing_weights,  # after KR303: it sees the copies KR303 marked as one layer
    nested_container_weights,
    numpy_layer_argument,
    dtype_policy_object,
    initializer_name,
    attention_sublayer_groups,
    operation_name,
    internal_module,
    lambda_missing_global,
    lambda_default_argument,
    lambda_layer,
    missing_build_config,
    unbuildable_subclassed_model,
    unclaimed_weights,
    custom_object,
    custom_function_name,
    unknown_class,
    missing_argument,
    unknown_activation,
    unknown_argument,
    weights_reference,
    pickled_weights,
    weights_shape_bomb,
    prepended_data,
    # security, read from config.json (KR903-KR909)
    serialized_code,
    foreign_module,
    non_modelling_api,
    torch_module_pickle,
    saved_model_path,
    lookup_file,
    object_name_path,
)

# the Keras 2 -> Keras 3 conversion (KR7xx): `check` reads a Keras 2 archive as
# these rules convert it
KERAS2: tuple[ModuleType, ...] = tuple(m for m in MODULES if m.RULE.code.startswith("KR7"))
# porting between Keras 3 releases: `check` reads an archive as these rules
# convert it for the target, so what they convert is not reported again as an
# unknown class
PORTING: tuple[ModuleType, ...] = (dtype_policy_object, initializer_name, internal_module)

RULES: tuple[Rule, ...] = tuple(module.RULE for module in MODULES)
_BY_CODE = {module.RULE.code: module for module in MODULES}


def by_code(code: str) -> ModuleType:
    """The rule module of `code` (any case); KeyError when there is none."""
    return _BY_CODE[code.strip().upper()]


def repairs(module: ModuleType) -> bool:
    """Whether the rule repairs what it finds (it has an `apply`)."""
    return hasattr(module, "apply")


def codes(text: str | None) -> frozenset[str] | None:
    """`KR301,KR601` as a set of known codes (None for None); KeyError for an unknown one."""
    if text is None:
        return None
    return frozenset(by_code(code).RULE.code for code in text.split(",") if code.strip())
