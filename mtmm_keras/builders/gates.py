"""The expert builders' gates (`mmoe`, `cgc`, `ple`): checking the gate arguments and making the gate layer.
Reading the gates of a built model is `mtmm_keras.builders.readouts` (`gate_model`)."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.layers import DSelectKGate, SoftmaxGate

GATES = ("softmax", "dselect_k")
GATE_PREFIX = "gate_"  # gate layers are named "gate_<task>" or "level<l>_gate_<key>"; read out as "<task>" / "level<l>_<key>"


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
