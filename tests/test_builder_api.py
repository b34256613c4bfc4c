"""One calling convention for every builder: `builder(inputs_or_encoders, tasks, *, ...)`, keywords checked at
call time (before anything is built), one name per idea, and compile arguments that cannot be silently lost."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.builders import _common
from mtmm_keras.demo import KINDS as DEMO_KINDS

MULTI_TASK = ("hard_sharing", "soft_sharing", "cross_stitch", "mmoe", "cgc", "ple")
FUSION = ("attention_fusion", "concat_fusion", "gated_fusion", "transformer_fusion")
BUILDERS = MULTI_TASK + FUSION + ("joint_embedding",)
TASKS = [mk.Task("a", 1), mk.Task("c", 2)]


def _encoders():
    return {"image": mk.encoders.image((8, 8, 1), filters=(4,)), "tabular": mk.encoders.tabular(6, hidden_units=(4,))}


def _first_two(kind):
    if kind in MULTI_TASK:
        return (4,), TASKS
    if kind in FUSION:
        return _encoders(), TASKS
    return {"a": mk.encoders.tabular(3, hidden_units=(4,)), "b": mk.encoders.tabular(5, hidden_units=(4,))}, "max_margin"


def test_the_list_is_every_builder_and_the_demo_runs_each():
    public = {name for name in mk.builders.__all__ if inspect.signature(getattr(mk.builders, name)).return_annotation
              in ("MultiTaskModel", "JointEmbeddingModel")}
    assert public == set(BUILDERS)
    assert set(DEMO_KINDS) == set(BUILDERS)


@pytest.mark.parametrize("kind", BUILDERS)
def test_everything_after_the_first_two_arguments_is_keyword_only(kind):
    parameters = list(inspect.signature(getattr(mk.builders, kind)).parameters.values())
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert len(positional) == 2, positional
    assert positional[0] in ("inputs", "encoders") and positional[1] in ("tasks", "loss")
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in parameters[2:])
    with pytest.raises(TypeError, match=r"takes (from 1 to )?2 positional arguments but 3 were given"):
        getattr(mk.builders, kind)(*_first_two(kind), (8,))


@pytest.mark.parametrize("kind, typo, suggestion", [
    ("hard_sharing", "trunk_unit", "trunk_units"), ("soft_sharing", "alhpa", "alpha"), ("mmoe", "num_expert", "num_experts"),
    ("cgc", "shared_expert", "shared_experts"), ("cgc", "gate_kk", "gate_k"), ("ple", "num_level", "num_levels"),
    ("cross_stitch", "self_weigth", "self_weight"), ("attention_fusion", "fusion_dims", "fusion_dim"),
    ("transformer_fusion", "ffn_unit", "ffn_units"), ("joint_embedding", "embed_dim", "embedding_dim"),
    ("gated_fusion", "jit_compil", "jit_compile"),
])
def test_a_misspelled_keyword_names_the_builder_and_the_nearest_valid_one(kind, typo, suggestion, monkeypatch):
    monkeypatch.setattr(_common, "modality_features", lambda *a, **k: pytest.fail("built before the check"))
    monkeypatch.setattr(_common, "resolve_inputs", lambda *a, **k: pytest.fail("built before the check"))
    with pytest.raises(TypeError, match=rf"^{kind}\(\) got an unexpected keyword argument '{typo}'\. "
                                        rf"Did you mean '{suggestion}'.*Its keywords: "):
        getattr(mk.builders, kind)(*_first_two(kind), **{typo: 1})


def test_a_keyword_with_no_close_match_lists_the_valid_ones():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'zzz'\. Its keywords: .*trunk_units.*"
                                        r"and model.compile's: .*steps_per_execution"):
        mk.builders.hard_sharing((4,), TASKS, zzz=1)


def test_compile_keywords_with_compile_false_are_refused_not_dropped():
    with pytest.raises(TypeError, match=r"soft_sharing\(compile=False\) got the model.compile keyword 'jit_compile'"):
        mk.builders.soft_sharing((4,), TASKS, compile=False, jit_compile=True)
    if keras.backend.backend() == "torch":  # one step per call there: an explicit 2 is our error (test_torch_backend.py)
        assert mk.builders.soft_sharing((4,), TASKS, run_eagerly=True).run_eagerly is True
        return
    model = mk.builders.soft_sharing((4,), TASKS, steps_per_execution=2)
    assert model.steps_per_execution == 2


def test_soft_sharing_takes_dropout_like_the_other_builders():
    model = mk.builders.soft_sharing((4,), TASKS, tower_units=(8, 8), dropout=0.25)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.25]
    with pytest.raises(ValueError, match="`dropout`"):
        mk.builders.soft_sharing((4,), TASKS, dropout=1.5)


@pytest.mark.parametrize("kind", FUSION)
def test_fusion_hidden_layers_take_hidden_activation(kind):
    model = getattr(mk.builders, kind)(_encoders(), TASKS, hidden_units=(8,), hidden_activation="tanh")
    assert model.get_layer("fused_dense1").get_config()["activation"] == "tanh"
    with pytest.raises(ValueError, match="hidden_activation"):
        getattr(mk.builders, kind)(_encoders(), TASKS, hidden_units=(8,), hidden_activation="no_such_activation")


def test_optimizer_and_learning_rate_together_only_when_they_agree():
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    model = mk.builders.hard_sharing((4,), TASKS, optimizer=optimizer, learning_rate=0.01)
    assert model.optimizer is optimizer
    with pytest.raises(ValueError, match=r"`learning_rate`=0\.001 disagrees with the `optimizer` you passed "
                                         r"\(Adam with learning rate 0\.01\)"):
        mk.builders.hard_sharing((4,), TASKS, optimizer=keras.optimizers.Adam(learning_rate=0.01), learning_rate=0.001)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.01)  # left as it was
    model = mk.builders.hard_sharing((4,), TASKS, optimizer="sgd", learning_rate=0.05)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.05)


@pytest.mark.parametrize("kind", MULTI_TASK)
def test_multi_task_builders_take_a_dict_of_encoders(kind):
    encoders = {"title": mk.encoders.text(20, 5, hidden_dim=4, kind="conv"), "tab": mk.encoders.tabular(3, hidden_units=(4,))}
    model = getattr(mk.builders, kind)(encoders, TASKS)
    assert [t.name.split(":")[0] for t in model.inputs] == ["title", "tab"]
    rng = np.random.default_rng(0)
    x = {"title": rng.integers(1, 20, (32, 5)).astype("int32"), "tab": rng.normal(size=(32, 3)).astype("float32")}
    y = {"a": rng.normal(size=(32, 1)), "c": rng.normal(size=(32, 2))}
    assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["loss"][-1])


def test_a_dict_input_names_the_argument_in_its_errors():
    with pytest.raises(TypeError, match=r"`inputs\['tab'\]` must be a keras.Model, got int"):
        mk.builders.hard_sharing({"tab": 3}, TASKS)


def test_single_task_metrics_carry_the_task_name_like_multi_task_ones():
    model = mk.builders.hard_sharing((4,), [mk.Task("digit", 3, loss="sparse_categorical_crossentropy",
                                                    metrics=["accuracy", "mae"])], trunk_units=(8,))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.integers(0, 3, (40, 1))
    stop = keras.callbacks.EarlyStopping(monitor="val_digit_accuracy", patience=0)
    history = model.fit(x, {"digit": y}, epochs=3, validation_split=0.25, verbose=0, callbacks=[stop])
    assert {"digit_accuracy", "val_digit_accuracy", "digit_mae"} <= set(history.history)
    expected = np.mean(np.argmax(model.predict(x[:30], verbose=0)["digit"], -1) == y[:30, 0])
    assert history.history["digit_accuracy"][-1] == pytest.approx(expected, abs=0.2)  # trained while measured


def test_transformer_text_block_reads_configs_saved_with_the_old_key():
    from mtmm_keras.encoders.transformer import TransformerEncoderBlock

    block = TransformerEncoderBlock.from_config({"num_heads": 2, "ff_dim": 12, "name": "saved_by_0_1"})
    assert block.ffn_units == 12 and block.get_config()["ffn_units"] == 12 and "ff_dim" not in block.get_config()


@pytest.fixture
def mixed_policy(request):
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("mixed_policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("kind", ["hard_sharing", "mmoe", "attention_fusion", "gated_fusion"])
def test_mixed_precision_models_return_float32_outputs(mixed_policy, kind):
    model = getattr(mk.builders, kind)(*_first_two(kind))
    rng = np.random.default_rng(0)
    if kind in FUSION:
        x = {"image": rng.random((16, 8, 8, 1), dtype="float32"), "tabular": rng.normal(size=(16, 6)).astype("float32")}
    else:
        x = rng.normal(size=(16, 4)).astype("float32")
    y = {"a": rng.normal(size=(16, 1)), "c": rng.normal(size=(16, 2))}
    half = mixed_policy.split("_")[1]
    assert any(layer.compute_dtype == half for layer in model.layers if layer.name not in ("a", "c"))  # body: half
    assert {model.get_layer(t).compute_dtype for t in ("a", "c")} == {"float32"}
    outputs = model(x)
    assert {name: str(keras.ops.convert_to_numpy(out).dtype) for name, out in outputs.items()} == {"a": "float32", "c": "float32"}
    assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["loss"][-1])


@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_legacy_hdf5_save_is_refused_before_writing_with_the_keras_path(tmp_path, suffix):
    joint = mk.builders.joint_embedding(*_first_two("joint_embedding"))
    for model in (mk.builders.hard_sharing((4,), TASKS), joint):
        with pytest.raises(ValueError, match=rf"^`filepath` '.*model{suffix}': {type(model).__name__} cannot be saved "
                                             rf"in Keras's legacy HDF5 format .* Save it as '.*model\.keras' "):
            model.save(tmp_path / f"model{suffix}")
        assert list(tmp_path.iterdir()) == []
    model = mk.builders.hard_sharing((4,), TASKS)
    model.save(tmp_path / "model.keras")
    model.save_weights(tmp_path / "model.weights.h5")  # weights-only HDF5 is Keras's current format: allowed
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0)["a"], model.predict(x, verbose=0)["a"], rtol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
def test_a_mixed_float16_builder_model_exports_float32_artifacts_that_verify(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = mk.builders.mmoe((4,), TASKS, num_experts=2, expert_units=(8,), tower_units=(4,))
    finally:
        keras.config.set_dtype_policy("float32")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    report = mk.export.export_model(model, tmp_path / "out", formats=("tflite", "onnx"), representative_data=x,
                                    verbose=False)
    assert report.passed  # every artifact matched the model within the float32 bound
    import json

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source_precision"]["artifacts"] == "float32"
    assert "mixed_float16" in manifest["source_precision"]["dtype_policies"]


@pytest.mark.parametrize("kind", ["hard_sharing", "joint_embedding"])
def test_a_second_fit_does_not_trace_the_model_again(kind):
    """The models compute their loss themselves, so Keras's compiled loss is marked built at the first trace:
    Keras's JAX/PyTorch `fit` re-traces the whole model symbolically while it is unbuilt (every `fit`)."""
    from mtmm_keras.models import _compiled_loss

    rng = np.random.default_rng(0)
    if kind == "joint_embedding":
        model = mk.builders.joint_embedding({"a": mk.encoders.tabular(4, (4,)), "b": mk.encoders.tabular(3, (4,))},
                                            embedding_dim=4, steps_per_execution=1)
        x, y = {"a": rng.normal(size=(32, 4)).astype("float32"), "b": rng.normal(size=(32, 3)).astype("float32")}, None
    else:
        model = mk.builders.hard_sharing((4,), TASKS, trunk_units=(4,), steps_per_execution=1)
        x = rng.normal(size=(32, 4)).astype("float32")
        y = {"a": x[:, :1], "c": x[:, 1:3]}
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert model._compile_loss.built and model._compile_loss.metrics == []  # no per-output loss trackers added
    traced = []
    original = model.compute_loss
    model.compute_loss = lambda *args, **kwargs: traced.append(1) or original(*args, **kwargs)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # the compiled train function: no Python-level call
    assert traced == [] or keras.backend.backend() == "torch"  # torch runs eagerly: one call per step, no trace
    _compiled_loss.mark_unused(object())  # a model without a compiled loss is left alone
