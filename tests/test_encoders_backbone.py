"""mk.encoders.from_backbone: keras-hub backbones (tiny BERT and ViT configs, nothing downloaded) and plain
functional backbones become one-input, one-vector encoders that every builder takes; the pooled features
equal the backbone's own outputs; a fused model with a BERT text tower trains, reloads in a new process after
only `import keras, mtmm_keras`, and exports to every format without Flex ops. keras-hub is optional."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import mtmm_keras as mk

LENGTH = 8


def _run_python(code, cwd, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _bert():
    keras_hub = pytest.importorskip("keras_hub")
    return keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                         intermediate_dim=32, max_sequence_length=LENGTH)


def _tokens(n, seed=0):
    """Token ids 1..49 with 2..LENGTH real tokens per row, then padding 0."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 50, size=(n, LENGTH)).astype("int32")
    lengths = rng.integers(2, LENGTH + 1, size=n)
    tokens[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    return tokens


def _np(x):
    return keras.ops.convert_to_numpy(x)


# ---- no keras-hub needed ----------------------------------------------------------------------------

def test_a_preset_name_without_keras_hub_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras_hub" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "mtmm-keras\[hub\]"'):
        mk.encoders.from_backbone("bert_tiny_en_uncased")


def _dict_backbone(extra_input=False):
    """A functional stand-in for a text backbone: inputs token_ids, segment_ids, padding_mask (+ one more)."""
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    segments = keras.Input((None,), dtype="int32", name="segment_ids")
    mask = keras.Input((None,), dtype="int32", name="padding_mask")
    h = keras.layers.Add()([keras.layers.Embedding(50, 4, name="tok")(ids), keras.layers.Embedding(2, 4, name="seg")(segments),
                            keras.layers.Embedding(2, 4, name="pad")(mask)])
    inputs = {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}
    if extra_input:
        inputs["positions"] = keras.Input((None,), dtype="int32", name="positions")
        h = keras.layers.Add()([h, keras.layers.Embedding(LENGTH, 4)(inputs["positions"])])
    return keras.Model(inputs, {"sequence_output": h}, name="toy_backbone")


def test_derived_inputs_and_masked_mean_on_a_functional_backbone():
    backbone = _dict_backbone()
    encoder = mk.encoders.from_backbone(backbone, pooling="mean", sequence_length=LENGTH, input_name="title")
    assert [(t.name, tuple(t.shape), str(t.dtype)) for t in encoder.inputs] == [("title", (None, LENGTH), "int32")]
    tokens = _tokens(6)
    sequence = _np(backbone({"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
                             "padding_mask": (tokens != 0).astype("int32")})["sequence_output"])
    mask = (tokens != 0)[..., None]
    np.testing.assert_allclose(_np(encoder(tokens)), (sequence * mask).sum(1) / mask.sum(1), rtol=1e-6, atol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="positions"):
        mk.encoders.from_backbone(_dict_backbone(extra_input=True))
    with pytest.raises(ValueError, match="pooling"):
        mk.encoders.from_backbone(_dict_backbone(), pooling="max")
    with pytest.raises(ValueError, match="no pooled output"):
        mk.encoders.from_backbone(_dict_backbone(), pooling="pooled")
    with pytest.raises(TypeError, match="backbone"):
        mk.encoders.from_backbone(42)
    vector = keras.Input((3,), name="x")
    with pytest.raises(ValueError, match="sequence output"):
        mk.encoders.from_backbone(keras.Model(vector, keras.layers.Dense(2)(vector)), pooling="cls")


# ---- keras-hub backbones --------------------------------------------------------------------------

def test_bert_poolings_equal_the_backbones_own_outputs():
    backbone = _bert()
    tokens = _tokens(5, seed=1)
    out = backbone({"token_ids": tokens, "segment_ids": np.zeros_like(tokens), "padding_mask": (tokens != 0).astype("int32")})
    sequence, pooled = _np(out["sequence_output"]), _np(out["pooled_output"])
    mask = (tokens != 0)[..., None]
    expected = {"cls": sequence[:, 0], "pooled": pooled, "mean": (sequence * mask).sum(1) / mask.sum(1)}
    for pooling, value in expected.items():
        encoder = mk.encoders.from_backbone(backbone, pooling=pooling)
        assert [(t.name, tuple(t.shape)) for t in encoder.inputs] == [("token_ids", (None, LENGTH))]  # BERT's max length
        np.testing.assert_allclose(_np(encoder(tokens)), value, rtol=1e-5, atol=1e-5, err_msg=pooling)
        # only the pooled output uses BERT's pooler; other poolings leave it out (else it gets no gradient in fit)
        assert any("pooled_dense" in w.path for w in encoder.weights) == (pooling == "pooled"), pooling
    # the builder with a single encoder (`inputs=encoder`) takes it too
    model = mk.builders.hard_sharing(mk.encoders.from_backbone(backbone, pooling="cls"), [mk.Task("a", 1)], trunk_units=(4,))
    assert tuple(model(tokens)["a"].shape) == (5, 1)


def test_vit_backbone_encoder_takes_images():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ViTBackbone(image_shape=(8, 8, 3), patch_size=4, num_layers=1, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    images = np.random.default_rng(2).normal(size=(3, 8, 8, 3)).astype("float32")
    sequence = _np(backbone(images))  # [batch, 1 class token + 4 patches, 16]
    for pooling, value in {"cls": sequence[:, 0], "mean": sequence.mean(1)}.items():
        encoder = mk.encoders.from_backbone(backbone, pooling=pooling, input_name="photo")
        assert [(t.name, tuple(t.shape)) for t in encoder.inputs] == [("photo", (None, 8, 8, 3))]
        np.testing.assert_allclose(_np(encoder(images)), value, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no pooled output"):
        mk.encoders.from_backbone(backbone, pooling="pooled")


def _fused_data(n=96, seed=0):
    """Text tokens + tabular features; the class is set by the features (well separated) so int8 is judged on signal."""
    rng = np.random.default_rng(seed)
    tab = rng.normal(size=(n, 5)).astype("float32")
    c = rng.integers(0, 2, size=n).astype("int32")
    tab[:, 0] = np.where(c == 1, 2.0, -2.0) + 0.3 * tab[:, 0]
    return {"text": _tokens(n, seed), "tab": tab}, {"c": c, "a": (tab[:, 1:2] - tab[:, 2:3]).astype("float32")}


@pytest.fixture(scope="module")
def fused():
    """attention_fusion over a keras-hub BERT text tower and a tabular tower, fitted."""
    keras.utils.set_random_seed(0)
    text = mk.encoders.from_backbone(_bert(), pooling="mean")
    model = mk.builders.attention_fusion({"text": text, "tab": mk.encoders.tabular(5, (8,))},
                                         [mk.Task("c", 2, loss="sparse_categorical_crossentropy"), mk.Task("a", 1)],
                                         fusion_dim=8, learning_rate=0.01)
    x, y = _fused_data()
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    return model, x, history


LOAD = """
import json, sys
import numpy as np, keras, mtmm_keras, mtmm_keras.encoders
mtmm_keras.encoders.from_backbone, mtmm_keras.encoders.backbone.TokenIdsTo
before = "keras_hub" in sys.modules  # importing the encoders (from_backbone included) must not import keras_hub
model = keras.saving.load_model("fused.keras", safe_mode=True)
x = dict(np.load("x.npz"))
out = model.predict(x, verbose=0)
print(json.dumps({"hub_before_load": before, "c": out["c"].tolist(), "a": out["a"].tolist()}))
"""


def test_fused_model_with_a_bert_tower_fits_and_reloads_in_a_new_process(fused, tmp_path):
    model, x, history = fused
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    model.save(tmp_path / "fused.keras")
    np.savez(tmp_path / "x.npz", **x)
    result = _run_python(LOAD, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # neither `import mtmm_keras` nor the encoders module imported keras_hub, and loading needed no explicit
    # import: Keras imports a keras_hub class's module itself when the file names one
    assert out["hub_before_load"] is False
    expected = model.predict(x, verbose=0)
    for key in ("c", "a"):
        np.testing.assert_allclose(np.array(out[key]), expected[key], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
def test_fused_model_with_a_bert_tower_exports_every_format_without_flex(fused, tmp_path):
    from mtmm_keras.export import tflite_writer

    model, x, _ = fused
    flavours = ("float32", "float16", "dynamic", "int8")
    report = mk.export.export_model(model, str(tmp_path / "fused"), quantize=flavours, representative_data=x, verbose=False)
    assert report.passed, report.table()
    kinds = [(a.format, a.quantization) for a in report.artifacts]
    assert kinds == [("saved_model", "float32")] + [("tflite", q) for q in flavours] + [("onnx", "float32")]
    for artifact in report.artifacts:
        if artifact.format == "tflite":
            assert tflite_writer.flex_ops(open(artifact.path, "rb").read()) == []
        if artifact.quantization == "float32":
            assert all(check.max_abs_error <= 1e-4 for check in artifact.checks), artifact.checks
