"""The PyTorch backend (issue 18): every builder fits with its defaults, every weighting method trains a
MultiTaskModel, and an explicit `steps_per_execution` > 1 is our error naming the argument and the backend.

Runs under KERAS_BACKEND=torch (`make test`'s torch run); on other backends the file is skipped.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mtmm_keras as mk

if keras.backend.backend() != "torch":
    pytest.skip("PyTorch-backend behaviour: make test runs this file with KERAS_BACKEND=torch", allow_module_level=True)

ROWS, FEATURES = 48, 6


def _tasks():
    return [mk.Task("label", 3, loss="sparse_categorical_crossentropy", metrics=["accuracy"]), mk.Task("score", 1)]


def _encoders():
    return {"image": mk.encoders.tabular(FEATURES, (8,), input_name="image", name="image_encoder"),
            "tabular": mk.encoders.tabular(FEATURES, (8,), input_name="tabular", name="tabular_encoder")}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, FEATURES)).astype("float32")
    label = rng.integers(0, 3, size=(ROWS,))
    y = {"label": label, "score": (label / 2.0 + rng.normal(scale=0.1, size=ROWS)).astype("float32")[:, None]}
    x_modalities = {"image": x, "tabular": (x[:, ::-1] + rng.normal(scale=0.1, size=x.shape)).astype("float32")}
    return x, x_modalities, y


# Every builder with its defaults (small sizes only: nothing here touches a compile setting).
TASK_BUILDERS = {
    "hard_sharing": lambda **kw: mk.builders.hard_sharing((FEATURES,), _tasks(), trunk_units=(8,), **kw),
    "soft_sharing": lambda **kw: mk.builders.soft_sharing((FEATURES,), _tasks(), tower_units=(8,), **kw),
    "cross_stitch": lambda **kw: mk.builders.cross_stitch((FEATURES,), _tasks(), tower_units=(8,), **kw),
    "mmoe": lambda **kw: mk.builders.mmoe((FEATURES,), _tasks(), num_experts=2, expert_units=(8,), **kw),
    "cgc": lambda **kw: mk.builders.cgc((FEATURES,), _tasks(), shared_experts=1, task_experts=1, expert_units=(8,), **kw),
    "ple": lambda **kw: mk.builders.ple((FEATURES,), _tasks(), num_levels=2, shared_experts=1, task_experts=1,
                                        expert_units=(8,), **kw),
}
FUSION_BUILDERS = {
    "attention_fusion": lambda **kw: mk.builders.attention_fusion(_encoders(), _tasks(), fusion_dim=8, **kw),
    "concat_fusion": lambda **kw: mk.builders.concat_fusion(_encoders(), _tasks(), fusion_dim=8, **kw),
    "gated_fusion": lambda **kw: mk.builders.gated_fusion(_encoders(), _tasks(), fusion_dim=8, **kw),
    "transformer_fusion": lambda **kw: mk.builders.transformer_fusion(_encoders(), _tasks(), fusion_dim=8, **kw),
}
JOINT_LOSSES = ["max_margin", "contrastive", "clip", "siglip", "cosine_embedding"]


def _assert_trained(model, history, epochs=1):
    losses = history.history["loss"]
    assert len(losses) == epochs and np.all(np.isfinite(losses)), losses


def test_compile_defaults_on_torch_are_one_step_and_no_torch_compile():
    want = {"steps_per_execution": 1, "jit_compile": False}
    assert mk.distribute.compile_defaults() == want
    assert mk.distribute.compile_defaults(TASK_BUILDERS["hard_sharing"](compile=False)) == want
    assert mk.distribute.model_strategy() is None


@pytest.mark.parametrize("name", list(TASK_BUILDERS) + list(FUSION_BUILDERS))
def test_every_task_builder_fits_one_epoch_with_its_defaults(name):
    x, x_modalities, y = _data()
    model = {**TASK_BUILDERS, **FUSION_BUILDERS}[name]()
    assert model.steps_per_execution == 1 and model.jit_compile is False
    history = model.fit(x_modalities if name in FUSION_BUILDERS else x, y, batch_size=16, epochs=1, verbose=0)
    _assert_trained(model, history)
    assert {"label_loss", "score_loss", "weight/label", "weight/score"} <= set(history.history)  # the weighting ran
    out = model.predict(x_modalities if name in FUSION_BUILDERS else x, verbose=0)
    assert out["label"].shape == (ROWS, 3) and out["score"].shape == (ROWS, 1)


@pytest.mark.parametrize("loss", JOINT_LOSSES)
def test_joint_embedding_fits_one_epoch_with_its_defaults(loss):
    _, x_modalities, _ = _data()
    model = mk.builders.joint_embedding(_encoders(), loss=loss)
    assert model.steps_per_execution == 1 and model.jit_compile is False
    y = np.where(np.arange(ROWS) % 2 == 0, 1, -1) if loss == "cosine_embedding" else None  # pair labels
    if loss in ("clip", "siglip"):  # the learned temperature is the model's own layer, and it trains
        assert model.temperature is not None
        assert model.temperature.logit_scale.path in {v.path for v in model.trainable_variables}
        before = float(keras.ops.convert_to_numpy(model.temperature.logit_scale))
    history = model.fit(x_modalities, y, batch_size=16, epochs=1, verbose=0)
    _assert_trained(model, history)
    if loss in ("clip", "siglip"):
        assert float(keras.ops.convert_to_numpy(model.temperature.logit_scale)) != before


@pytest.mark.parametrize("method", mk.weighting.names())
def test_every_weighting_method_trains_a_multi_task_model(method):
    x, _, y = _data()
    y = {"label": np.where(np.arange(ROWS) % 5 == 0, -1, y["label"]), "score": y["score"]}  # -1: missing labels
    model = TASK_BUILDERS["hard_sharing"](weighting=method)
    assert model.weighting.method_name == method  # found on torch, where the layer lives in _modules
    before = [np.array(v) for v in model.get_weights()]
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    _assert_trained(model, history, epochs=2)
    assert all(np.isfinite(history.history[f"weight/{t}"]).all() for t in ("label", "score"))
    after = model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_uncertainty_log_variance_gets_gradients_on_torch():
    x, _, y = _data()
    model = TASK_BUILDERS["hard_sharing"](weighting="uncertainty", learning_rate=0.05)
    before = keras.ops.convert_to_numpy(model.weighting.log_variance).copy()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert not np.allclose(keras.ops.convert_to_numpy(model.weighting.log_variance), before)


def test_gradient_level_step_with_unit_weights_is_the_static_update():
    """The torch gradient-level step applies Σ_t w_t ∇(λ_t L_t) with w = 1 exactly as Keras's own step does."""

    class Ones(mk.weighting.Weighting):
        level = "gradient"

        def gramian_weights(self, gramian):
            return keras.ops.ones((keras.ops.shape(gramian)[0],), "float32")

    x, _, y = _data()
    keras.utils.set_random_seed(3)
    static = TASK_BUILDERS["hard_sharing"](optimizer="sgd", learning_rate=0.1)
    keras.utils.set_random_seed(3)
    ones = TASK_BUILDERS["hard_sharing"](optimizer="sgd", learning_rate=0.1, weighting=Ones())
    ones.set_weights(static.get_weights())
    want = static.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    got = ones.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    for got_weight, want_weight in zip(ones.get_weights(), static.get_weights()):
        np.testing.assert_allclose(got_weight, want_weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)


@pytest.mark.parametrize("steps", [32, 2])
def test_explicit_steps_per_execution_above_one_is_our_error(steps):
    message = rf"`steps_per_execution={steps}` is not supported on the PyTorch backend \(KERAS_BACKEND=torch\)"
    with pytest.raises(ValueError, match=message):
        TASK_BUILDERS["hard_sharing"](steps_per_execution=steps)
    with pytest.raises(ValueError, match=message):
        FUSION_BUILDERS["concat_fusion"](steps_per_execution=steps)
    with pytest.raises(ValueError, match=message):
        mk.builders.joint_embedding(_encoders(), steps_per_execution=steps)
    model = TASK_BUILDERS["hard_sharing"](compile=False)  # the model's own compile says the same
    with pytest.raises(ValueError, match=message):
        model.compile(optimizer="adam", loss={"label": "sparse_categorical_crossentropy", "score": "mse"},
                      steps_per_execution=steps)


def test_explicit_steps_per_execution_of_one_is_fine():
    x, _, y = _data()
    model = TASK_BUILDERS["hard_sharing"](steps_per_execution=1)
    assert model.steps_per_execution == 1
    _assert_trained(model, model.fit(x, y, batch_size=16, epochs=1, verbose=0))


_SAVE_ON_TENSORFLOW = """
import numpy as np, mtmm_keras as mk
model = mk.builders.soft_sharing((6,), [mk.Task("score", 1)], tower_units=(8,))
assert model.steps_per_execution == 32 and model.jit_compile  # TF's defaults: 32 steps, XLA for stacked towers
model.fit(np.ones((64, 6), "float32"), {"score": np.ones((64, 1), "float32")}, epochs=1, verbose=0)
model.save("tf_model.keras")
"""


def test_a_model_saved_on_tensorflow_loads_compiled_and_trains_on_torch(tmp_path):
    """A `.keras` saved on TensorFlow carries steps_per_execution=32 and jit_compile=True; on torch those are
    execution settings it cannot run (Keras raises in `fit`), so loading replaces them with torch's own."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", _SAVE_ON_TENSORFLOW], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    model = keras.saving.load_model(tmp_path / "tf_model.keras")
    assert model.steps_per_execution == 1 and model.jit_compile is False
    x, y = np.ones((16, 6), "float32"), {"score": np.ones((16, 1), "float32")}
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_pretrained_zoo_entry_loads_compiled_on_torch():
    """Zoo presets were saved on TensorFlow (steps_per_execution=32): on torch they load compiled and evaluate."""
    model = mk.zoo.load("penguins_hard")
    assert model.steps_per_execution == 1
    x = {"features": np.zeros((4, 7), "float32")}
    y = {"species": np.zeros(4, "int64"), "sex": np.zeros(4, "int64"), "body_mass": np.zeros((4, 1), "float32")}
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
