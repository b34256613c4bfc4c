"""joint_embedding(loss="clip" | "siglip") from the outside: the learned temperature is a model weight that
fit trains, the loss uses, `.keras` keeps across processes, and export leaves out of the inference graph."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import mtmm_keras as mk

N = 16


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(size=(N, 6)).astype("float32"), "b": rng.normal(size=(N, 4)).astype("float32")}


def _build(loss, **kwargs):
    encoders = {"a": mk.encoders.tabular(6, hidden_units=(8,), input_name="a", name="a_encoder"),
                "b": mk.encoders.tabular(4, hidden_units=(8,), input_name="b", name="b_encoder")}
    return mk.builders.joint_embedding(encoders, embedding_dim=4, loss=loss, **kwargs)


def _values(model):
    return {w.name: float(np.asarray(w)) for w in model.temperature.weights}


def _np_clip(s, groups, scale):
    logits = scale * s.astype("float64")
    out = []
    for i in range(len(s)):
        keep = [k for k in range(len(s)) if k == i or groups[k] != groups[i]]
        row = np.log(np.exp(logits[i, keep]).sum()) - logits[i, i]
        col = np.log(np.exp(logits[keep, i]).sum()) - logits[i, i]
        out.append(0.5 * (row + col))
    return np.mean(out)


def _np_siglip(s, groups, scale, bias):
    z = np.where(groups[:, None] == groups[None, :], 1.0, -1.0)
    return np.log1p(np.exp(-z * (scale * s.astype("float64") + bias))).sum() / len(s)


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_fit_trains_the_learned_temperature_and_the_loss_uses_it(loss):
    model = _build(loss, learning_rate=0.05)
    names = sorted(w.path for w in model.trainable_weights if "logit" in w.path)
    want = ["learned_temperature/logit_scale"] + (["learned_temperature/logit_bias"] if loss == "siglip" else [])
    assert names == sorted(want)
    assert isinstance(model.loss, mk.losses.CLIPLoss if loss == "clip" else mk.losses.SigLIPLoss)
    start = _values(model)
    assert start["logit_scale"] == pytest.approx(math.log(1 / 0.07) if loss == "clip" else math.log(10.0), rel=1e-6)
    if loss == "siglip":
        assert start["logit_bias"] == -10.0
    model.fit(_data(), batch_size=8, epochs=2, verbose=0)
    trained = _values(model)
    for name in start:
        assert abs(trained[name] - start[name]) > 1e-3, (name, start, trained)  # trained by fit
    # the model's loss is the NumPy formula with the learned scale (and bias), random group ids
    x, groups = _data(1), np.random.default_rng(1).integers(0, 4, size=N)
    pred = model.predict(x, verbose=0)
    s = pred["a"] @ pred["b"].T
    scale = min(math.exp(trained["logit_scale"]), 100.0)
    want_loss = _np_clip(s, groups, scale) if loss == "clip" else _np_siglip(s, groups, scale, trained["logit_bias"])
    got = model.evaluate(x, groups, batch_size=N, verbose=0)
    assert got == pytest.approx(want_loss, rel=1e-4)
    assert predictions_are_the_embeddings(model, x, pred)


def predictions_are_the_embeddings(model, x, pred):
    """The temperature is not part of inference: outputs are the modalities' unit-norm embeddings."""
    assert sorted(pred) == ["a", "b"]
    tower = mk.builders.tower(model, "a").predict(x["a"], verbose=0)
    np.testing.assert_allclose(pred["a"], tower, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pred["a"], axis=1), 1.0, atol=1e-5)
    return True


def test_logit_scale_is_clamped_at_100_during_training():
    model = _build(mk.losses.CLIPLoss(), optimizer="sgd", learning_rate=1e-3)
    model.temperature.logit_scale.assign(math.log(1000.0))
    assert float(model.temperature.scale()) == pytest.approx(100.0, rel=1e-6)  # the loss never sees more
    model.fit(_data(), batch_size=8, epochs=1, verbose=0)
    assert float(np.asarray(model.temperature.logit_scale)) <= math.log(100.0) + 1e-6  # clamped after the step
    uncapped = _build(mk.losses.CLIPLoss(max_logit_scale=None), run_eagerly=True)
    uncapped.temperature.logit_scale.assign(math.log(1000.0))
    uncapped.fit(_data(), batch_size=8, epochs=1, verbose=0)
    assert float(np.asarray(uncapped.temperature.logit_scale)) > math.log(500.0)


def test_custom_initial_values_and_three_modalities():
    rng = np.random.default_rng(0)
    encoders = {m: mk.encoders.tabular(3, hidden_units=(4,), input_name=m, name=f"{m}_encoder") for m in "xyz"}
    loss = mk.losses.SigLIPLoss(init_logit_scale=math.log(5.0), init_logit_bias=-3.0)
    model = mk.builders.joint_embedding(encoders, embedding_dim=4, loss=loss)
    assert _values(model) == {"logit_scale": pytest.approx(math.log(5.0)), "logit_bias": -3.0}
    x = {m: rng.normal(size=(6, 3)).astype("float32") for m in "xyz"}
    pred = model.predict(x, verbose=0)
    groups = np.arange(6)
    want = sum(_np_siglip(pred[p] @ pred[q].T, groups, 5.0, -3.0) for p, q in [("x", "y"), ("x", "z"), ("y", "z")])
    assert model.evaluate(x, groups, batch_size=6, verbose=0) == pytest.approx(want, rel=1e-4)


def test_a_learned_temperature_loss_needs_the_models_temperature():
    model = _build("max_margin")
    assert model.temperature is None
    model.compile(optimizer="adam", loss=mk.losses.CLIPLoss())
    with pytest.raises(ValueError, match=r"^CLIPLoss learns its temperature as model weights, and this model has none: "
                                         r"build it with mk\.builders\.joint_embedding\(\.\.\., loss=CLIPLoss\(\.\.\.\)\)"):
        model.fit(_data(), batch_size=8, epochs=1, verbose=0)


# One fresh process (two logical CPUs, so tf.distribute has 2 replicas) trains each loss on one device and
# on 2 replicas from the same weights, and saves the one-device models; another fresh process reloads them.
SAVE_AND_MIRROR = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np, keras, mtmm_keras as mk
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
shared = rng.normal(size=(64, 5)).astype("float32")
x = {"a": shared + 0.3 * rng.normal(size=(64, 5)).astype("float32"), "b": shared[:, ::-1].copy()}
groups, weights = (np.arange(64) // 2).astype("int32"), rng.uniform(0.5, 1.5, 64).astype("float32")
np.savez("data.npz", groups=groups, **x)
def build(loss):
    enc = {m: mk.encoders.tabular(5, (8,), input_name=m, name=f"{m}_encoder") for m in ("a", "b")}
    return mk.builders.joint_embedding(enc, embedding_dim=4, loss=loss, learning_rate=0.05, steps_per_execution=1)
def temperature(model):
    return {w.name: float(np.asarray(w)) for w in model.temperature.weights}
out = {}
for loss in ["clip", "siglip"]:
    keras.utils.set_random_seed(0)
    single = build(loss)
    initial = single.get_weights()
    with strategy.scope():
        model = build(loss)
    result = {}
    for key, m in (("one", single), ("two", model)):
        m.set_weights(initial)
        history = m.fit(x, groups, sample_weight=weights, batch_size=32, epochs=1, shuffle=False, verbose=0)
        result[key] = {"losses": history.history["loss"], "temperature": temperature(m),
                       "weights": [w.tolist() for w in m.get_weights()]}
    single.save(f"{loss}.keras")
    result["saved"] = {"temperature": temperature(single), "loss": single.evaluate(x, groups, batch_size=64, verbose=0),
                       "iterations": int(single.optimizer.iterations)}
    out[loss] = result
with strategy.scope():  # the cap holds on the mirrored weight too (the constraint runs after each step)
    model = build("clip")
model.temperature.logit_scale.assign(np.log(1000.0))
model.fit(x, groups, batch_size=32, epochs=1, verbose=0)
out["clamped"] = float(np.asarray(model.temperature.logit_scale))
json.dump(out, open("saved.json", "w"))
"""

LOAD = """
import json
import numpy as np, keras, mtmm_keras
data = dict(np.load("data.npz"))
groups = data.pop("groups")
out = {}
for loss in ["clip", "siglip"]:
    model = keras.models.load_model(f"{loss}.keras", safe_mode=True)
    model.run_eagerly = True  # no graph tracing: faster for this tiny model
    entry = {"class": type(model).__name__, "loss_class": type(model.loss).__name__,
             "temperature": {w.name: float(np.asarray(w)) for w in model.temperature.weights},
             "trainable": sorted(w.path for w in model.trainable_weights if "logit" in w.path),
             "loss": model.evaluate(data, groups, batch_size=64, verbose=0),
             "iterations": int(model.optimizer.iterations)}
    model.fit(data, groups, batch_size=32, epochs=1, verbose=0)  # training goes on from the reloaded state
    entry["after"] = {w.name: float(np.asarray(w)) for w in model.temperature.weights}
    out[loss] = entry
json.dump(out, open("reloaded.json", "w"))
"""

NAMES = {"clip": ["logit_scale"], "siglip": ["logit_bias", "logit_scale"]}


def _run(script, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, capture_output=True, text=True,
                            timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute and the new-process round trip run on TF (tests/reliability covers reloading)")
    folder = tmp_path_factory.mktemp("clip_saved")
    _run(SAVE_AND_MIRROR, folder)
    return folder, json.loads((folder / "saved.json").read_text())


def test_keras_round_trip_in_a_new_process_keeps_the_learned_values(saved):
    folder, before_all = saved
    _run(LOAD, folder)
    reloaded = json.loads((folder / "reloaded.json").read_text())
    for loss, names in NAMES.items():
        before, after = before_all[loss]["saved"], reloaded[loss]
        assert after["class"] == "JointEmbeddingModel"
        assert after["loss_class"] == {"clip": "CLIPLoss", "siglip": "SigLIPLoss"}[loss]
        assert sorted(after["temperature"]) == names
        assert after["trainable"] == sorted(f"learned_temperature/{n}" for n in names)
        init = {"logit_scale": math.log(1 / 0.07) if loss == "clip" else math.log(10.0), "logit_bias": -10.0}
        for name in names:
            assert after["temperature"][name] == before["temperature"][name]  # the learned value, bit for bit
            assert abs(after["temperature"][name] - init[name]) > 1e-3  # ... which is not the initial one
            assert after["after"][name] != after["temperature"][name]  # and it keeps training
        assert after["loss"] == pytest.approx(before["loss"], rel=1e-6)
        assert after["iterations"] == before["iterations"] == 2


def test_two_replicas_train_the_temperature_like_one_device(saved):
    """Global-batch negatives across 2 replicas (JointEmbeddingModel's gather, unchanged), group ids and
    sample weights, the scale/bias mirrored and clamped: the same losses and weights as one device
    (issue 12's bar, 1e-5 relative)."""
    out = saved[1]
    assert out["clamped"] <= math.log(100.0) + 1e-6
    for loss, names in NAMES.items():
        one, two = out[loss]["one"], out[loss]["two"]
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5, err_msg=loss)
        assert sorted(two["temperature"]) == names
        for name in names:
            assert two["temperature"][name] == pytest.approx(one["temperature"][name], rel=1e-5), (loss, name)
            assert abs(two["temperature"][name] - out[loss]["saved"]["temperature"][name]) < 1e-5  # trained alike
        for a, b in zip(one["weights"], two["weights"]):
            a, b = np.asarray(a), np.asarray(b)
            assert np.abs(a - b).max() <= 1e-5 * max(np.abs(a).max(), 1.0), loss


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_exports_without_the_loss_weights(loss, tmp_path):
    model = _build(loss)
    x = _data()
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    report = mk.export.export_model(model, str(tmp_path / loss), verbose=False)
    assert report.passed
    manifest = json.loads((tmp_path / loss / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        assert artifact["passed"] and artifact["verified"], artifact
        assert sorted(o["name"] for o in artifact["outputs"]) == ["a", "b"]  # embeddings only, no logit scale
    # the weights themselves: the ONNX graph holds exactly the towers' parameters, and no constant with the
    # learned scale or bias (or the scale's exp) in any artifact's graph
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    learned = [float(np.asarray(w)) for w in model.temperature.weights]
    learned += [math.exp(v) for v in learned]
    tower_params = model.count_params() - len(model.temperature.weights)
    assert tower_params == sum(mk.builders.tower(model, m).count_params() for m in ("a", "b"))
    graph = onnx.load(str(next((tmp_path / loss).glob("*.onnx")))).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    assert sum(v.size for name, v in values.items() if "ReadVariableOp" in name) == tower_params
    for name, value in values.items():
        assert not any(np.isclose(value, v, rtol=1e-6).any() for v in learned if value.size < 4), name
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(next((tmp_path / loss).glob("*.float32.tflite"))))
    names = [d["name"] for d in interpreter.get_tensor_details()]
    assert names and not [n for n in names if "logit" in n or "temperature" in n]
