"""Zoo entries saved on TensorFlow load with this backend's execution settings (`saved_compile_arguments`):
compiled by XLA on JAX (TensorFlow saves its CPU resolution of "auto", False, which Keras's JAX trainer runs
eagerly, step by step), one step per execution on PyTorch (a joint-embedding entry could not be rebuilt there),
and as saved on TensorFlow. Runs in every backend's pass of `make test`."""

import json

import keras
import numpy as np
import pytest
from mtmm_keras.zoo import evaluation, registry

import mtmm_keras as mk

ENTRIES = ["penguins_hard", "av_digits_clip"]  # a MultiTaskModel and a JointEmbeddingModel, both saved with XLA off


@pytest.mark.parametrize("name", ENTRIES)
def test_a_zoo_entry_loads_with_this_backends_execution_settings(name):
    saved = json.loads((registry.entry_dir(name) / "config.json").read_text())["compile_config"]
    assert (saved["jit_compile"], saved["steps_per_execution"]) == (False, 32)
    model = mk.zoo.load(name)
    backend = keras.backend.backend()
    if backend == "jax":
        assert model.jit_compile is True and model.steps_per_execution == 32
    elif backend == "torch":
        assert model.steps_per_execution == 1
    else:
        assert model.jit_compile is False and model.steps_per_execution == 32


def test_a_loaded_entry_predicts_compiled_on_jax():
    """penguins_hard's 67 test rows in batches of 32 on JAX: one compiled predict step, not one eager call per batch."""
    if keras.backend.backend() != "jax":
        pytest.skip("JAX's eager fallback")
    model = mk.zoo.load("penguins_hard")
    x, _ = evaluation.split_arrays(registry.recipe("penguins_hard"), "test")
    calls, step = [], model.predict_step
    model.predict_step = lambda *args: calls.append(1) or step(*args)
    out = model.predict(x, batch_size=32, verbose=0)
    assert len(calls) == 1 and np.asarray(out["species"]).shape == (67, 3)
