"""Gate and stitch read-out for the expert builders (`mmoe`, `cgc`, `ple`) and `cross_stitch`.

Like `attention_model` for attention fusion: `gate_model(model)` maps the model's inputs to every gate's
weights over its experts, `stitch_weights(model)` returns the cross-stitch matrices.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

from mtmm_keras import _checks
from mtmm_keras.layers import CrossStitch, DSelectKGate, SoftmaxGate

GATES = ("softmax", "dselect_k")
GATE_PREFIX = "gate_"  # a gate layer named "gate_<key>" or "level<l>_gate_<key>" is read out as "<key>" / "level<l>_<key>"


def check_gate(gate: Any, gate_k: Any, num_experts: int) -> None:
    """Raise unless `gate` is a known gate kind and `gate_k` fits the experts the gate chooses among."""
    _checks.one_of(gate, "gate", GATES)
    gate_k = _checks.positive_int(gate_k, "gate_k")
    if gate == "dselect_k" and gate_k > num_experts:
        raise ValueError(f"`gate_k` must be at most the number of experts a gate weighs ({num_experts}), got {gate_k}.")


def make_gate(gate: str, num_experts: int, gate_units: Sequence[int], gate_k: int, name: str) -> keras.layers.Layer:
    """The gate layer of kind `gate` (`"softmax"`: MMoE/PLE; `"dselect_k"`: DSelect-k choosing ≤ `gate_k` experts)."""
    if gate == "dselect_k":
        return DSelectKGate(num_experts, k=gate_k, hidden_units=gate_units, name=name)
    return SoftmaxGate(num_experts, hidden_units=gate_units, name=name)


def gate_key(layer_name: str) -> str:
    """"gate_a" → "a"; "level1_gate_shared" → "level1_shared"."""
    head, _, tail = layer_name.partition(GATE_PREFIX)
    return head + tail


def gate_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """{gate key: gate layer} of a model built by `mmoe`, `cgc` or `ple`, in build order."""
    gates = {gate_key(layer.name): layer for layer in model.layers if isinstance(layer, (SoftmaxGate, DSelectKGate))}
    if not gates:
        raise ValueError(f"Model {model.name!r} has no expert gates; build it with mk.builders.mmoe, cgc or ple.")
    return gates


def gate_model(model: keras.Model) -> keras.Model:
    """A sub-model mapping the inputs to `{key: gate weights [batch, experts]}` for every gate.

    Keys: the task name for each task's (last-level) gate; in `ple`, the earlier levels' gates are
    `"level<l>_<task>"` and `"level<l>_shared"`. Expert order: see the builder's docstring.
    """
    outputs = {key: layer.output for key, layer in gate_layers(model).items()}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_gates")


def has_gates(model: keras.Model) -> bool:
    """True when `model` has expert gates (`SoftmaxGate` or `DSelectKGate`), i.e. `gate_model` applies."""
    return any(isinstance(layer, (SoftmaxGate, DSelectKGate)) for layer in model.layers)


def mean_gate_weights(model: keras.Model, x: Any, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Each gate's weights averaged over the examples `x`: `{key: [experts]}` (what the zoo plots)."""
    weights = gate_model(model).predict(x, batch_size=batch_size, verbose=0)
    return {key: np.asarray(value).mean(axis=0) for key, value in weights.items()}


def stitch_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """{layer name: α [tasks, tasks]} of a `cross_stitch` model; row i mixes the towers into task i's."""
    stitches = {layer.name: np.asarray(keras.ops.convert_to_numpy(layer.alpha))
                for layer in model.layers if isinstance(layer, CrossStitch)}
    if not stitches:
        raise ValueError(f"Model {model.name!r} has no cross-stitch layers; build it with mk.builders.cross_stitch.")
    return stitches
