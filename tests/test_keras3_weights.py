"""kerasrepair.keras3_weights: a Keras 3 model.weights.h5 from a Keras 2 model's
weights (a legacy tf.keras .h5, or a tf.keras 2.13-2.15 .keras archive), without
Keras: the plan of where each value goes, and the writing.

The expected paths below are what real Keras 3.15.1 writes for the same
architectures (fixtures/keras2's recipes rebuilt in Keras 3 with the same layers
and optimizer, trained one step, saved, model.weights.h5 listed); Keras 3.0.5
wrote exactly the same datasets and groups for all of them. `a/vars/0..3`
stands for a/vars/0, a/vars/1, a/vars/2, a/vars/3.
"""

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from kerasrepair import weights
from kerasrepair.keras3_weights import (
    FromDataset,
    Plan,
    Value,
    plan_from_keras2_archive,
    plan_from_legacy,
    write,
)
from kerasrepair.legacy_h5 import read_legacy_file

ROOT = Path(__file__).resolve().parent.parent
KERAS2 = ROOT / "fixtures" / "keras2"

REAL_KERAS3 = {
    "mlp_trained": (
        """
        layers/dense/vars/0..1 layers/dense_1/vars/0..1 optimizer/vars/0..9
        """,
        """
        layers layers/dense layers/dense/vars layers/dense_1 layers/dense_1/vars optimizer
        optimizer/vars vars
        """,
    ),
    "cnn_batchnorm": (
        """
        layers/batch_normalization/vars/0..3 layers/conv2d/vars/0..1 layers/dense/vars/0..1
        optimizer/vars/0..13
        """,
        """
        layers layers/activation layers/activation/vars layers/batch_normalization
        layers/batch_normalization/vars layers/conv2d layers/conv2d/vars layers/dense
        layers/dense/vars layers/flatten layers/flatten/vars layers/max_pooling2d
        layers/max_pooling2d/vars optimizer optimizer/vars vars
        """,
    ),
    "teachable_machine": (
        """
        layers/functional/layers/batch_normalization/vars/0..3
        layers/functional/layers/batch_normalization_1/vars/0..3
        layers/functional/layers/conv2d/vars/0 layers/functional/layers/conv2d_1/vars/0
        layers/functional/layers/depthwise_conv2d/vars/0
        layers/sequential/layers/dense/vars/0..1 layers/sequential/layers/dense_1/vars/0..1
        """,
        """
        layers layers/functional layers/functional/layers
        layers/functional/layers/batch_normalization
        layers/functional/layers/batch_normalization/vars
        layers/functional/layers/batch_normalization_1
        layers/functional/layers/batch_normalization_1/vars layers/functional/layers/conv2d
        layers/functional/layers/conv2d/vars layers/functional/layers/conv2d_1
        layers/functional/layers/conv2d_1/vars layers/functional/layers/depthwise_conv2d
        layers/functional/layers/depthwise_conv2d/vars
        layers/functional/layers/global_average_pooling2d
        layers/functional/layers/global_average_pooling2d/vars
        layers/functional/layers/input_layer layers/functional/layers/input_layer/vars
        layers/functional/layers/re_lu layers/functional/layers/re_lu/vars
        layers/functional/layers/re_lu_1 layers/functional/layers/re_lu_1/vars
        layers/functional/vars layers/sequential layers/sequential/layers
        layers/sequential/layers/dense layers/sequential/layers/dense/vars
        layers/sequential/layers/dense_1 layers/sequential/layers/dense_1/vars
        layers/sequential/vars vars
        """,
    ),
    "conv_transpose": (
        """
        layers/conv2d_transpose/vars/0..1 layers/conv2d_transpose_1/vars/0..1
        layers/dense/vars/0..1
        """,
        """
        layers layers/conv2d_transpose layers/conv2d_transpose/vars layers/conv2d_transpose_1
        layers/conv2d_transpose_1/vars layers/dense layers/dense/vars layers/input_layer
        layers/input_layer/vars layers/reshape layers/reshape/vars vars
        """,
    ),
    "embedding_lstm": (
        """
        layers/dense/vars/0..1 layers/embedding/vars/0 layers/lstm/cell/vars/0..2
        optimizer/vars/0..13
        """,
        """
        layers layers/dense layers/dense/vars layers/embedding layers/embedding/vars layers/lstm
        layers/lstm/cell layers/lstm/cell/vars layers/lstm/vars optimizer optimizer/vars vars
        """,
    ),
    "gru_masking": (
        """
        layers/dense/vars/0..1 layers/gru/cell/vars/0..2 layers/gru_1/cell/vars/0..2
        """,
        """
        layers layers/dense layers/dense/vars layers/gru layers/gru/cell layers/gru/cell/vars
        layers/gru/vars layers/gru_1 layers/gru_1/cell layers/gru_1/cell/vars layers/gru_1/vars
        layers/input_layer layers/input_layer/vars layers/masking layers/masking/vars vars
        """,
    ),
    "two_input_shared": (
        """
        layers/dense/vars/0..1 layers/dense_1/vars/0..1 optimizer/vars/0..1
        """,
        """
        layers layers/concatenate layers/concatenate/vars layers/dense layers/dense/vars
        layers/dense_1 layers/dense_1/vars layers/input_layer layers/input_layer/vars
        layers/input_layer_1 layers/input_layer_1/vars optimizer optimizer/vars vars
        """,
    ),
    "nested_sequential": (
        """
        layers/dense/vars/0..1 layers/sequential/layers/dense/vars/0..1
        layers/sequential/layers/dense_1/vars/0..1 optimizer/vars/0..7
        """,
        """
        layers layers/dense layers/dense/vars layers/input_layer layers/input_layer/vars
        layers/sequential layers/sequential/layers layers/sequential/layers/dense
        layers/sequential/layers/dense/vars layers/sequential/layers/dense_1
        layers/sequential/layers/dense_1/vars layers/sequential/vars optimizer optimizer/vars
        vars
        """,
    ),
    "mixed_precision": (
        """
        layers/dense/vars/0..1 layers/dense_1/vars/0..1 optimizer/inner_optimizer/vars/0..9
        optimizer/vars/0..13
        """,
        """
        layers layers/activation layers/activation/vars layers/dense layers/dense/vars
        layers/dense_1 layers/dense_1/vars optimizer optimizer/inner_optimizer
        optimizer/inner_optimizer/vars optimizer/vars vars
        """,
    ),
    "lambda_layer": (
        """
        layers/dense/vars/0..1 layers/dense_1/vars/0..1
        """,
        """
        layers layers/dense layers/dense/vars layers/dense_1 layers/dense_1/vars
        layers/input_layer layers/input_layer/vars layers/lambda layers/lambda/vars vars
        """,
    ),
}


def _expand(text: str) -> list[str]:
    paths = []
    for item in text.split():
        if ".." in item:
            prefix, _, last = item.rpartition("/0..")
            paths += [f"{prefix}/{i}" for i in range(int(last) + 1)]
        else:
            paths.append(item)
    return paths


def _legacy(name):
    legacy = read_legacy_file(KERAS2 / f"{name}.h5")
    optimizer = (legacy.training_config or {}).get("optimizer_config")
    return legacy, optimizer


def _layer_sources(plan: Plan) -> list[str]:
    return [
        source.path
        for path, source in plan.datasets
        if isinstance(source, FromDataset) and not path.startswith("optimizer/")
    ]


# -- legacy .h5 -> Keras 3


@pytest.mark.parametrize("name", sorted(REAL_KERAS3))
def test_legacy_fixture_lands_where_keras3_keeps_it(name):
    """Every legacy weight placed exactly once, at the path real Keras 3 writes for
    the same architecture; the groups Keras 3 creates, empty ones included. (The
    config is the legacy model_config: same names, classes and nesting as the
    converted one.)"""
    legacy, optimizer = _legacy(name)
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    assert plan.problems == ()
    expected_datasets, expected_groups = (_expand(text) for text in REAL_KERAS3[name])
    assert sorted(path for path, _ in plan.datasets) == sorted(expected_datasets)
    assert len({path for path, _ in plan.datasets}) == len(plan.datasets)
    assert sorted(plan.groups) == sorted(expected_groups)
    every_weight = [w.path for ws in legacy.layers.values() for w in ws]
    assert sorted(_layer_sources(plan)) == sorted(every_weight)  # each exactly once
    for group in plan.groups:  # parents first
        assert group.rpartition("/")[0] in ("", *plan.groups[: plan.groups.index(group)])


def test_lstm_weights_in_its_cell_and_shapes_kept():
    legacy, optimizer = _legacy("embedding_lstm")
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    sources = dict(plan.datasets)
    prefix = "model_weights/lstm/lstm/lstm_cell/"
    assert sources["layers/lstm/cell/vars/0"] == FromDataset(prefix + "kernel:0")
    assert sources["layers/lstm/cell/vars/1"] == FromDataset(prefix + "recurrent_kernel:0")
    assert sources["layers/lstm/cell/vars/2"] == FromDataset(prefix + "bias:0")
    assert ("layers/lstm/cell/vars", "lstm_cell") in plan.names
    assert ("layers/lstm/vars", "lstm") in plan.names


def test_nested_models_trainable_first_in_the_file():
    """teachable_machine: a Sequential of a Functional base (model1) and a
    Sequential head; the base's weights are listed trainable first."""
    legacy, optimizer = _legacy("teachable_machine")
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    sources = {path: source.path for path, source in plan.datasets}
    base = "layers/functional/layers/"
    assert sources[base + "batch_normalization/vars/0"].endswith("batch_normalization/gamma:0")
    assert sources[base + "batch_normalization/vars/2"].endswith(
        "batch_normalization/moving_mean:0"
    )
    assert sources[base + "batch_normalization_1/vars/3"].endswith(
        "batch_normalization_1/moving_variance:0"
    )
    assert sources[base + "depthwise_conv2d/vars/0"].endswith("depthwise_kernel:0")
    assert sources["layers/sequential/layers/dense_1/vars/1"] == (
        "model_weights/sequential_head/dense_1/bias:0"
    )


# -- the optimizer


def test_adam_slots_by_name_and_learning_rate_inserted():
    """tf.keras 2.15 keeps iteration:0 then Adam/m/<var>, Adam/v/<var> interleaved;
    Keras 3 keeps the iteration, the learning rate, then m and v interleaved per
    trainable variable (Adam.build in 3.0.5 and 3.15.1 alike)."""
    legacy, optimizer = _legacy("mlp_trained")
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    opt = [(p, s) for p, s in plan.datasets if p.startswith("optimizer/")]
    assert opt[0] == ("optimizer/vars/0", FromDataset("optimizer_weights/iteration:0"))
    assert opt[1][0] == "optimizer/vars/1"
    assert opt[1][1] == Value(optimizer["config"]["learning_rate"], "float32")
    assert [s.path.removeprefix("optimizer_weights/") for _, s in opt[2:]] == [
        "Adam/m/dense/kernel:0",
        "Adam/v/dense/kernel:0",
        "Adam/m/dense/bias:0",
        "Adam/v/dense/bias:0",
        "Adam/m/dense_1/kernel:0",
        "Adam/v/dense_1/kernel:0",
        "Adam/m/dense_1/bias:0",
        "Adam/v/dense_1/bias:0",
    ]
    assert plan.dropped == ()
    assert ("optimizer/vars", "Adam") in plan.names


def test_rmsprop_slots_of_a_nested_model():
    legacy, optimizer = _legacy("nested_sequential")
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    opt = [s for p, s in plan.datasets if p.startswith("optimizer/")]
    assert isinstance(opt[1], Value)
    assert [s.path.rsplit("/velocity/", 1)[-1] for s in opt[2:]] == [
        "dense/kernel:0",  # inner_sequential's
        "dense/bias:0",
        "dense_1/kernel:0",
        "dense_1/bias:0",
        "dense_2/kernel:0",  # the outer model's
        "dense_2/bias:0",
    ]


def test_unbuilt_optimizer_keeps_iteration_and_learning_rate():
    """two_input_shared: compiled, never trained: tf.keras saved the iteration only;
    Keras 3 saves an unbuilt optimizer as iteration and learning rate."""
    legacy, optimizer = _legacy("two_input_shared")
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    opt = [(p, s) for p, s in plan.datasets if p.startswith("optimizer/")]
    assert opt == [
        ("optimizer/vars/0", FromDataset("optimizer_weights/iteration:0")),
        ("optimizer/vars/1", Value(optimizer["config"]["learning_rate"], "float32")),
    ]


def test_loss_scale_optimizer():
    """mixed_precision: tf.keras saves only the inner Adam's variables (no "Adam/"
    prefix); Keras 3's LossScaleOptimizer keeps its own iteration, learning rate,
    step counter and scale, then the inner optimizer's, which the inner optimizer
    saves again under inner_optimizer (3.0.5 and 3.15.1 alike). Its own iteration
    is the steps applied, tf.keras's count (what Keras 3.0-3.6 report as
    `optimizer.iterations`; tests/test_keras2_proof.py loads it there)."""
    legacy, optimizer = _legacy("mixed_precision")
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    sources = dict(plan.datasets)
    assert [sources[f"optimizer/vars/{i}"] for i in range(4)] == [
        FromDataset("optimizer_weights/iteration:0"),
        Value(0.0, "float32"),
        Value(0, "int64"),
        Value(32768.0, "float32"),
    ]
    inner = [sources[f"optimizer/inner_optimizer/vars/{i}"] for i in range(10)]
    assert [sources[f"optimizer/vars/{i}"] for i in range(4, 14)] == inner
    assert inner[2] == FromDataset("optimizer_weights/m/dense/kernel:0")
    assert inner[3] == FromDataset("optimizer_weights/v/dense/kernel:0")
    assert any("loss scale" in line for line in plan.dropped)


def test_learning_rate_schedule_has_no_variable():
    legacy, optimizer = _legacy("mlp_trained")
    schedule = {
        "module": "keras.optimizers.schedules",
        "class_name": "ExponentialDecay",
        "config": {"initial_learning_rate": 0.01, "decay_steps": 10, "decay_rate": 0.9},
    }
    optimizer = {**optimizer, "config": {**optimizer["config"], "learning_rate": schedule}}
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    opt = [s for p, s in plan.datasets if p.startswith("optimizer/")]
    assert len(opt) == 9 and not any(isinstance(s, Value) for s in opt)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"class_name": "Nadam"}, "u_product"),
        ({"config": {"amsgrad": True}}, "amsgrad"),
        ({"class_name": "Adafactor"}, "not known"),
        ({"config": {"use_ema": True}}, "EMA"),
    ],
)
def test_optimizer_state_dropped_with_a_reason(change, reason):
    legacy, optimizer = _legacy("mlp_trained")
    optimizer = {
        **optimizer,
        **{k: v for k, v in change.items() if k != "config"},
        "config": {**optimizer["config"], **change.get("config", {})},
    }
    plan = plan_from_legacy(legacy.model_config, legacy, optimizer)
    assert plan.problems == ()
    assert not any(p.startswith("optimizer") for p, _ in plan.datasets)
    assert len(plan.dropped) == 1 and reason in plan.dropped[0]


def test_no_compiled_optimizer_drops_the_state():
    legacy, _ = _legacy("mlp_trained")
    plan = plan_from_legacy(legacy.model_config, legacy, None)
    assert plan.problems == () and "no compiled optimizer" in plan.dropped[0]
    assert not any(g.startswith("optimizer") for g in plan.groups)


def test_sgd_without_momentum_drops_its_unused_slots(tmp_path):
    """tf.keras 2.15's SGD creates momentum slots even with momentum 0; Keras 3's none."""
    config = _sequential([_dense("dense", 2), _dense("dense_1", 1)])
    path = _legacy_file(
        tmp_path / "sgd.h5",
        config,
        {
            "dense": [("dense/kernel:0", (3, 2)), ("dense/bias:0", (2,))],
            "dense_1": [("dense_1/kernel:0", (2, 1)), ("dense_1/bias:0", (1,))],
        },
        optimizer=[("iteration:0", ())]
        + [
            (f"SGD/m/{n}", s)
            for n, s in [
                ("dense/kernel:0", (3, 2)),
                ("dense/bias:0", (2,)),
                ("dense_1/kernel:0", (2, 1)),
                ("dense_1/bias:0", (1,)),
            ]
        ],
    )
    legacy = read_legacy_file(path)
    plan = plan_from_legacy(config, legacy, {"class_name": "SGD", "config": {"momentum": 0.0}})
    opt = [p for p, _ in plan.datasets if p.startswith("optimizer/")]
    assert opt == ["optimizer/vars/0", "optimizer/vars/1"]
    assert "4 optimizer slots" in plan.dropped[0]
    momentum = plan_from_legacy(config, legacy, {"class_name": "SGD", "config": {"momentum": 0.9}})
    assert len([p for p, _ in momentum.datasets if p.startswith("optimizer/")]) == 6
    assert momentum.dropped == ()


def test_frozen_layer_has_no_slots(tmp_path):
    """A layer with trainable=False: no optimizer slots in tf.keras or Keras 3."""
    frozen = _dense("dense", 2)
    frozen["config"]["trainable"] = False
    config = _sequential([frozen, _dense("dense_1", 1)])
    layers = {
        "dense": [("dense/kernel:0", (3, 2)), ("dense/bias:0", (2,))],
        "dense_1": [("dense_1/kernel:0", (2, 1)), ("dense_1/bias:0", (1,))],
    }
    optimizer = [("iteration:0", ())] + [
        (f"Adam/{slot}/{n}", s) for n, s in layers["dense_1"] for slot in ("m", "v")
    ]
    legacy = read_legacy_file(_legacy_file(tmp_path / "f.h5", config, layers, optimizer))
    plan = plan_from_legacy(config, legacy, {"class_name": "Adam", "config": {}})
    assert plan.dropped == ()
    sources = dict(plan.datasets)
    assert sources["optimizer/vars/1"] == Value(0.001, "float32")  # Adam's default
    assert sources["optimizer/vars/2"].path.endswith("Adam/m/dense_1/kernel:0")
    assert len([p for p in sources if p.startswith("optimizer/")]) == 6


# -- more layer classes (legacy names as tf.keras 2.15 writes them; Keras 3 paths as
# real Keras 3.15.1 and 3.0.5 wrote them for the same layers)

CONV_LAYERS = [
    ("Conv2D", "conv2d", {"filters": 4}, [("kernel", (3, 3, 3, 4)), ("bias", (4,))]),
    (
        "BatchNormalization",
        "batch_normalization",
        {},
        [("gamma", (4,)), ("beta", (4,)), ("moving_mean", (4,)), ("moving_variance", (4,))],
    ),
    ("PReLU", "p_re_lu", {}, [("alpha", (14, 14, 4))]),
    (
        "DepthwiseConv2D",
        "depthwise_conv2d",
        {},
        [("depthwise_kernel", (3, 3, 4, 1)), ("bias", (4,))],
    ),
    (
        "SeparableConv2D",
        "separable_conv2d",
        {},
        [("depthwise_kernel", (3, 3, 4, 1)), ("pointwise_kernel", (1, 1, 4, 5)), ("bias", (5,))],
    ),
    ("Conv2DTranspose", "conv2d_transpose", {}, [("kernel", (3, 3, 3, 5)), ("bias", (3,))]),
    ("LayerNormalization", "layer_normalization", {}, [("gamma", (3,)), ("beta", (3,))]),
    ("GlobalAveragePooling2D", "global_average_pooling2d", {}, []),
    ("Conv1D", "conv1d", {}, [("kernel", (3, 3, 4)), ("bias", (4,))]),
    ("Conv3D", "conv3d", {}, [("kernel", (3, 3, 3, 2, 3)), ("bias", (3,))]),
    ("Embedding", "embedding", {}, [("embeddings", (20, 6))]),
    ("Dense", "dense", {}, [("kernel", (3, 2)), ("bias", (2,))]),
]


def test_plain_layer_classes(tmp_path):
    config = _sequential(
        [{"class_name": c, "config": {"name": n, **a}} for c, n, a, _ in CONV_LAYERS]
    )
    layers = {n: [(f"{n}/{w}:0", s) for w, s in ws] for _, n, _, ws in CONV_LAYERS}
    legacy = read_legacy_file(_legacy_file(tmp_path / "conv.h5", config, layers))
    plan = plan_from_legacy(config, legacy, None)
    assert plan.problems == ()
    sources = {p: s.path for p, s in plan.datasets}
    for _, name, _, ws in CONV_LAYERS:
        for i, (w, _) in enumerate(ws):
            assert sources[f"layers/{name}/vars/{i}"] == f"model_weights/{name}/{name}/{w}:0"
    assert "layers/global_average_pooling2d/vars" in plan.groups


def test_batch_normalization_without_center_and_scale(tmp_path):
    bn = {"class_name": "BatchNormalization", "config": {"name": "bn", "center": False}}
    config = _sequential([bn])
    layers = {
        "bn": [("bn/gamma:0", (4,)), ("bn/moving_mean:0", (4,)), ("bn/moving_variance:0", (4,))]
    }
    plan = plan_from_legacy(
        config, read_legacy_file(_legacy_file(tmp_path / "bn.h5", config, layers)), None
    )
    assert [s.path.rsplit("/", 1)[-1] for _, s in plan.datasets] == [
        "gamma:0",
        "moving_mean:0",
        "moving_variance:0",
    ]
    # the arguments say a bias the file does not have: a problem, nothing placed
    config = _sequential([_dense("dense", 2)])
    layers = {"dense": [("dense/kernel:0", (3, 2))]}
    plan = plan_from_legacy(
        config, read_legacy_file(_legacy_file(tmp_path / "d.h5", config, layers)), None
    )
    assert plan.datasets == () or plan.problems
    assert "has 1 weights" in plan.problems[0] and "kernel, bias" in plan.problems[0]


def _rnn(class_name, name, units, **extra):
    return {"class_name": class_name, "config": {"name": name, "units": units, **extra}}


def test_recurrent_layers_and_wrappers(tmp_path):
    """Legacy names and Keras 3 paths of the real `rnn` model (Embedding, LSTM, GRU,
    Bidirectional(LSTM), Bidirectional(GRU), SimpleRNN, TimeDistributed(Dense))."""
    config = _sequential(
        [
            {"class_name": "Embedding", "config": {"name": "embedding"}},
            _rnn("LSTM", "lstm", 5),
            _rnn("GRU", "gru", 4),
            {
                "class_name": "Bidirectional",
                "config": {"name": "bidirectional", "layer": _rnn("LSTM", "lstm_1", 3)},
            },
            {
                "class_name": "Bidirectional",
                "config": {"name": "bidirectional_1", "layer": _rnn("GRU", "gru_1", 2)},
            },
            _rnn("SimpleRNN", "simple_rnn", 3),
            {
                "class_name": "TimeDistributed",
                "config": {"name": "time_distributed", "layer": _dense("dense_8", 2)},
            },
        ]
    )
    cell = ("kernel", "recurrent_kernel", "bias")
    layers = {
        "embedding": [("embedding/embeddings:0", (20, 6))],
        "lstm": [(f"lstm/lstm_cell/{w}:0", (1,)) for w in cell],
        "gru": [(f"gru/gru_cell/{w}:0", (1,)) for w in cell],
        "bidirectional": [
            (f"bidirectional/{d}_lstm_1/lstm_cell/{w}:0", (1,))
            for d in ("forward", "backward")
            for w in cell
        ],
        "bidirectional_1": [
            (f"bidirectional_1/{d}_gru_1/gru_cell/{w}:0", (1,))
            for d in ("forward", "backward")
            for w in cell
        ],
        "simple_rnn": [(f"simple_rnn/simple_rnn_cell/{w}:0", (1,)) for w in cell],
        "time_distributed": [
            ("time_distributed/kernel:0", (3, 2)),
            ("time_distributed/bias:0", (2,)),
        ],
    }
    legacy = read_legacy_file(_legacy_file(tmp_path / "rnn.h5", config, layers))
    plan = plan_from_legacy(config, legacy, None)
    assert plan.problems == ()
    # the order Keras 3 writes them: attributes sorted, backward_layer before forward_layer
    assert [p for p, _ in plan.datasets] == _expand("""
        layers/embedding/vars/0 layers/lstm/cell/vars/0..2 layers/gru/cell/vars/0..2
        layers/bidirectional/backward_layer/cell/vars/0..2
        layers/bidirectional/forward_layer/cell/vars/0..2
        layers/bidirectional_1/backward_layer/cell/vars/0..2
        layers/bidirectional_1/forward_layer/cell/vars/0..2
        layers/simple_rnn/cell/vars/0..2 layers/time_distributed/layer/vars/0..1
    """)
    sources = {p: s.path for p, s in plan.datasets}
    assert sources["layers/bidirectional/backward_layer/cell/vars/1"].endswith(
        "backward_lstm_1/lstm_cell/recurrent_kernel:0"
    )
    # the groups real Keras 3.15.1 creates (3.0.5 adds empty bidirectional/layer/... ones)
    assert {
        "layers/bidirectional/forward_layer/vars",
        "layers/time_distributed/layer/vars",
        "layers/lstm/vars",
        "layers/lstm/cell/vars",
    } <= set(plan.groups)
    assert ("layers/bidirectional/forward_layer/vars", "forward_lstm_1") in plan.names


def test_normalization_mean_variance_count(tmp_path):
    """tf.keras names them without the layer's name (mean:0, variance:0, count:0, the
    count int64); Keras 3 keeps mean, variance, count at vars/0..2."""
    config = _sequential(
        [{"class_name": "Normalization", "config": {"name": "normalization", "axis": -1}}]
    )
    layers = {"normalization": [("mean:0", (5,)), ("variance:0", (5,)), ("count:0", ())]}
    path = _legacy_file(tmp_path / "n.h5", config, layers, dtypes={"count:0": "int64"})
    plan = plan_from_legacy(config, read_legacy_file(path), None)
    assert [(p, s.path) for p, s in plan.datasets] == [
        ("layers/normalization/vars/0", "model_weights/normalization/mean:0"),
        ("layers/normalization/vars/1", "model_weights/normalization/variance:0"),
        ("layers/normalization/vars/2", "model_weights/normalization/count:0"),
    ]
    # given mean and variance as arguments: constants, no weights
    config["config"]["layers"][0]["config"].update(mean=[0.0], variance=[1.0])
    plan = plan_from_legacy(
        config,
        read_legacy_file(_legacy_file(tmp_path / "c.h5", config, {"normalization": []})),
        None,
    )
    assert plan.problems == () and plan.datasets == ()


def test_unknown_class_with_plain_weights_is_placed_in_order(tmp_path):
    config = _sequential([{"class_name": "MyScale", "config": {"name": "my_scale"}}])
    layers = {"my_scale": [("my_scale/w:0", (3,)), ("my_scale/b:0", (3,))]}
    plan = plan_from_legacy(
        config, read_legacy_file(_legacy_file(tmp_path / "u.h5", config, layers)), None
    )
    assert plan.problems == ()
    assert [(p, s.path.rsplit("/", 1)[-1]) for p, s in plan.datasets] == [
        ("layers/my_scale/vars/0", "w:0"),
        ("layers/my_scale/vars/1", "b:0"),
    ]


@pytest.mark.parametrize("class_name", ["MultiHeadAttention", "ConvLSTM2D", "MyBlock"])
def test_unknown_layout_is_a_problem(tmp_path, class_name):
    config = _sequential([{"class_name": class_name, "config": {"name": "x"}}])
    layers = (
        {"x": [("x/part/kernel:0", (2, 2))]}
        if class_name == "MyBlock"
        else {"x": [("x/kernel:0", (2, 2))]}
    )
    plan = plan_from_legacy(
        config, read_legacy_file(_legacy_file(tmp_path / "x.h5", config, layers)), None
    )
    assert len(plan.problems) == 1
    assert "layer 'x'" in plan.problems[0] and class_name in plan.problems[0]
    with pytest.raises(ValueError, match="nothing is written"):
        write(io.BytesIO(), plan, tmp_path / "never.h5")
    assert not (tmp_path / "never.h5").exists()


def test_subclassed_model_and_mismatched_files_are_problems(tmp_path):
    legacy, _ = _legacy("mlp_trained")
    plan = plan_from_legacy({"class_name": "MyModel", "config": {"units": 3}}, legacy, None)
    assert "subclassed" in plan.problems[0]
    other, _ = _legacy("cnn_batchnorm")  # weights of another model
    plan = plan_from_legacy(other.model_config, legacy, None)
    assert any("config.json has no such layer" in p for p in plan.problems)


# -- writing


def test_write_copies_every_value_exactly_and_deterministically(tmp_path):
    plans = {}
    for name in sorted(REAL_KERAS3):
        legacy, optimizer = _legacy(name)
        plans[name] = plan_from_legacy(legacy.model_config, legacy, optimizer)
        with open(KERAS2 / f"{name}.h5", "rb") as source:
            write(source, plans[name], tmp_path / f"{name}.1.h5")
    time.sleep(1.1)  # a timestamp would differ now
    for name, plan in plans.items():
        source, first = KERAS2 / f"{name}.h5", tmp_path / f"{name}.1.h5"
        with open(source, "rb") as f:
            buffer = io.BytesIO()  # to a file object: the same bytes as to a path
            write(f, plan, buffer)
            assert not f.closed  # the caller's file is left open
        assert first.read_bytes() == buffer.getvalue(), name
        with h5py.File(source, "r") as src, h5py.File(first, "r") as out:
            written = _paths(out, h5py.Dataset)
            assert sorted(written) == sorted(p for p, _ in plan.datasets)
            for path, value in plan.datasets:
                got = out[path]
                if isinstance(value, Value):
                    assert got.shape == () and got[()] == value.value
                    assert got.dtype == np.dtype(value.dtype)
                    continue
                expected = src[value.path]
                assert got.dtype == expected.dtype and got.shape == expected.shape
                assert np.array_equal(got[()], expected[()])
            for group, layer_name in plan.names:
                assert out[group].attrs["name"] == layer_name
            assert sorted(_paths(out, h5py.Group)) == sorted(plan.groups)
        # what kerasrepair reads back: the same tree
        tree = weights.read_h5_file(first, "model.weights.h5")
        assert tree.problems == [] and len(tree.variables) == len(plan.datasets)


MEMORY_CHILD = r"""
import json, sys, tracemalloc
sys.path.insert(0, sys.argv[3])
from kerasrepair.legacy_h5 import read_legacy_file
from kerasrepair.keras3_weights import plan_from_legacy, write
legacy = read_legacy_file(sys.argv[1])
plan = plan_from_legacy(legacy.model_config, legacy, None)
assert not plan.problems, plan.problems
tracemalloc.start()  # numpy reports its buffers to tracemalloc: every block read counts
with open(sys.argv[1], "rb") as source:
    write(source, plan, sys.argv[2])
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"peak_kib": peak // 1024}))
"""


def test_write_memory_does_not_grow_with_weight_size(tmp_path):
    """A 200 MB weight is copied block by block: at most one block (16 MiB) of it is
    held at a time. Measured with tracemalloc in a fresh process, which counts the
    arrays numpy allocates (the peak RSS would also count what the allocator keeps
    for reuse, which depends on the machine's state, not on this code)."""
    rows, columns = 50_000, 1000  # 200 MB of float32
    config = _sequential([_dense("dense", columns)])
    path = _legacy_file(
        tmp_path / "big.h5",
        config,
        {"dense": [("dense/kernel:0", (rows, columns)), ("dense/bias:0", (columns,))]},
        fill=False,
    )
    with h5py.File(path, "a") as h5:
        kernel = h5["model_weights/dense/dense/kernel:0"]
        block = np.arange(1000 * columns, dtype="float32").reshape(1000, columns)
        for start in range(0, rows, 1000):
            kernel[start : start + 1000] = block + start
    out = tmp_path / "out.h5"
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(path), str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_mib = json.loads(done.stdout)["peak_kib"] / 1024
    assert peak_mib < 40, f"{peak_mib:.0f} MiB held at once copying a 200 MB weight"
    with h5py.File(out, "r") as h5:
        kernel = h5["layers/dense/vars/0"]
        assert kernel.shape == (rows, columns)
        assert np.array_equal(kernel[49_000:49_001], block[:1] + 49_000)


# -- tf.keras 2.13-2.15 .keras archives


def _archive(name):
    with zipfile.ZipFile(KERAS2 / f"{name}.keras") as z:
        config = json.loads(z.read("config.json"))
        data = z.read("model.weights.h5")
    tree = weights.read_h5(io.BytesIO(data), "model.weights.h5", f"{name}.keras")
    return config, tree, data


@pytest.mark.parametrize("name", sorted(REAL_KERAS3))
def test_keras2_archive_fixture_lands_where_keras3_keeps_it(name):
    config, tree, _ = _archive(name)
    if name == "mixed_precision":  # what the conversion gives the model: Keras 3 then
        config["config"]["dtype"] = "mixed_float16"  # wraps the optimizer (auto_scale_loss)
    optimizer = (config.get("compile_config") or {}).get("optimizer")
    plan = plan_from_keras2_archive(config, tree, optimizer)
    assert plan.problems == ()
    expected_datasets, expected_groups = (_expand(text) for text in REAL_KERAS3[name])
    assert sorted(p for p, _ in plan.datasets) == sorted(expected_datasets)
    assert sorted(plan.groups) == sorted(expected_groups)
    layer_sources = {s.path for p, s in plan.datasets if not p.startswith("optimizer/")}
    assert layer_sources == {
        v.path for v in tree.model_variables if not v.path.startswith("metrics/")
    }
    if any(v.path.startswith("metrics/") for v in tree.variables):
        assert any("metric state" in line for line in plan.dropped)


def test_keras2_archive_optimizer_gets_the_learning_rate_at_1():
    """tf.keras 2.15's .keras: optimizer/vars/0 the iteration, then the slots (checked
    against the .h5 of the same model: same values in the same order); Keras 3: the
    iteration, the learning rate, then the slots."""
    config, tree, data = _archive("mlp_trained")
    plan = plan_from_keras2_archive(
        config, tree, {"class_name": "Adam", "config": {"learning_rate": 0.01}}
    )
    opt = [(p, s) for p, s in plan.datasets if p.startswith("optimizer/")]
    assert opt[0] == ("optimizer/vars/0", FromDataset("optimizer/vars/0"))
    assert opt[1] == ("optimizer/vars/1", Value(0.01, "float32"))
    assert [s.path for _, s in opt[2:]] == [f"optimizer/vars/{i}" for i in range(1, 9)]
    legacy, _ = _legacy("mlp_trained")
    with (
        h5py.File(io.BytesIO(data), "r") as archive,
        h5py.File(KERAS2 / "mlp_trained.h5", "r") as h5,
    ):
        for i, weight in enumerate(legacy.optimizer):
            assert np.array_equal(archive[f"optimizer/vars/{i}"][()], h5[weight.path][()])


def test_tf213_archive_groups_renamed():
    """tf.keras 2.13 saved the layers under _layer_checkpoint_dependencies, each layer
    with weights listed twice: two Dense layers are `dense` and `dense_2` there,
    `dense` and `dense_1` in Keras 3."""
    config, tree, _ = _archive("mlp_tf213")
    assert {v.path for v in tree.model_variables} >= {
        "_layer_checkpoint_dependencies/dense/vars/0",
        "_layer_checkpoint_dependencies/dense_2/vars/1",
    }
    plan = plan_from_keras2_archive(config, tree, config["compile_config"]["optimizer"])
    assert plan.problems == ()
    sources = {p: getattr(s, "path", s) for p, s in plan.datasets}
    assert sources["layers/dense/vars/0"] == "_layer_checkpoint_dependencies/dense/vars/0"
    assert sources["layers/dense_1/vars/1"] == "_layer_checkpoint_dependencies/dense_2/vars/1"
    assert sorted(sources) == sorted(_expand(REAL_KERAS3["mlp_trained"][0]))


# -- builders


def _paths(h5, kind):
    found = []
    h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, kind) else None)
    return found


def _dense(name, units):
    return {"class_name": "Dense", "config": {"name": name, "units": units}}


def _sequential(layers):
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def _legacy_file(path, config, layers, optimizer=(), dtypes=None, fill=True):
    """A legacy .h5 in tf.keras's layout: (weight name, shape) per layer."""
    dtypes = dtypes or {}
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["backend"] = "tensorflow"
        group = h5.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in layers]
        for name, ws in layers.items():
            layer = group.create_group(name)
            layer.attrs["weight_names"] = [w.encode() for w, _ in ws] if ws else np.array([])
            for weight, shape in ws:
                dtype = dtypes.get(weight, "float32")
                if fill:
                    layer[weight] = rng.normal(size=shape).astype(dtype)
                else:
                    layer.create_dataset(weight, shape=shape, dtype=dtype)
        if optimizer:
            opt = h5.create_group("optimizer_weights")
            opt.attrs["weight_names"] = [w.encode() for w, _ in optimizer]
            for weight, shape in optimizer:
                dtype = "int64" if weight == "iteration:0" else "float32"
                opt[weight] = np.ones(shape, dtype)
    return path


# -- proof in real Keras 3: the layout loads and predicts what tf.keras predicted

# Run by the release's interpreter: Keras 3's own legacy deserializer turns the
# legacy model_config into a Keras 3 model (after dropping the arguments Keras 3
# does not know: the config conversion proper is another module's), which is
# compiled with the legacy optimizer's class and learning rate and saved: its
# config.json and metadata.json, with our model.weights.h5, make the archive.
CONFIG_CHILD = r"""
import json, os, sys, warnings, zipfile
os.environ.setdefault("KERAS_BACKEND", "jax")
import h5py, keras
from keras.src.legacy.saving import saving_utils

DROPPED = {
    "time_major": None,
    "input_length": "Embedding",
    "groups": "Conv2DTranspose",
    "implementation": "GRU",  # not a Keras 3.0 GRU argument
    "module": None,  # Keras 3.0's legacy deserializer does not take them
    "registered_name": None,
}

def clean(value, class_name=None):
    if isinstance(value, dict):
        if value.get("class_name") == "Orthogonal":  # not by that name in Keras 3.0
            return "orthogonal"
        name = value.get("class_name", class_name)
        return {
            k: clean(v, name)
            for k, v in value.items()
            if not (k in DROPPED and DROPPED[k] in (None, class_name))
        }
    if isinstance(value, list):
        return [clean(v, class_name) for v in value]
    return value

source, target = sys.argv[1], sys.argv[2]
with h5py.File(source, "r") as h5:
    config = json.loads(h5.attrs["model_config"])
    training = json.loads(h5.attrs["training_config"]) if "training_config" in h5.attrs else None
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = saving_utils.model_from_config(clean(config))
    if training:
        optimizer = training["optimizer_config"]
        name = optimizer["class_name"].split(">")[-1]
        learning_rate = optimizer["config"]["learning_rate"]
        optimizer = {"class_name": name, "config": {"learning_rate": learning_rate}}
        model.compile(optimizer=keras.optimizers.get(optimizer), loss="mse")
    model.save(target)
print("ok")
"""

PROVEN = [
    "mlp_trained",
    "cnn_batchnorm",
    "embedding_lstm",
    "gru_masking",
    "two_input_shared",
    "conv_transpose",
    "mlp_tf212",
]


@pytest.mark.releases
@pytest.mark.parametrize("name", PROVEN)
def test_planned_weights_load_in_real_keras3(tmp_path, name):
    import releases

    from conftest import assert_matches_reference

    for version in ("3.15.1", "3.0.5"):  # each release's own config.json
        saved = tmp_path / f"keras{version}_saved.keras"
        subprocess.run(
            [
                str(releases.python_for(version)),
                "-c",
                CONFIG_CHILD,
                str(KERAS2 / f"{name}.h5"),
                str(saved),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
        )
        with zipfile.ZipFile(saved) as z:
            config_json, metadata_json = z.read("config.json"), z.read("metadata.json")
        config = json.loads(config_json)
        legacy = read_legacy_file(KERAS2 / f"{name}.h5")
        optimizer = (config.get("compile_config") or {}).get("optimizer")
        plan = plan_from_legacy(config, legacy, optimizer)
        assert plan.problems == () and plan.dropped == ()
        buffer = io.BytesIO()
        with open(KERAS2 / f"{name}.h5", "rb") as source:
            write(source, plan, buffer)
        archive = tmp_path / f"{name}.{version}.keras"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("metadata.json", metadata_json)
            z.writestr("config.json", config_json)
            z.writestr("model.weights.h5", buffer.getvalue())
        stored_optimizer = sum(1 for p, _ in plan.datasets if p.startswith("optimizer/vars/"))
        result = releases.probe(version, archive, reference=KERAS2 / f"{name}.npz")
        assert_matches_reference(result, (version, name))
        if stored_optimizer:  # restored, not skipped
            assert result["optimizer_variables"] == stored_optimizer, (version, result)
            assert not any("Skipping variable loading" in w for w in result["warnings"]), result


def test_weights_only_file_and_layer_names_with_a_slash(tmp_path):
    """A save_weights() file (no config inside) is planned against the given config;
    a layer named like DenseNet's "conv1/conv" is a nested group in the file."""
    config = _sequential([_dense("conv1/conv", 2), _dense("fc", 1)])
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [b"conv1/conv", b"fc"]
        for name, shapes in (("conv1/conv", [(3, 2), (2,)]), ("fc", [(2, 1), (1,)])):
            group = h5.require_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, shape in zip(names, shapes, strict=True):
                group[n] = np.ones(shape, "float32")
    legacy = read_legacy_file(path)
    assert legacy.kind == "weights"
    plan = plan_from_legacy(config, legacy, None)
    assert plan.problems == ()
    assert dict(plan.datasets)["layers/dense/vars/0"] == FromDataset(
        "conv1/conv/conv1/conv/kernel:0"
    )
    assert dict(plan.datasets)["layers/dense_1/vars/1"] == FromDataset("fc/fc/bias:0")
