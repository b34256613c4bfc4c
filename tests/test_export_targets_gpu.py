"""Issue 19: `android-gpu` exports run on LiteRT's real GPU accelerator (CompiledModel, HardwareAccelerator.GPU, no
CPU fallback). Without a GPU it runs on Mesa's lavapipe software Vulkan driver (scripts/install_system_deps.sh
unpacks it into .cache/vulkan/): this proves op coverage and numerics, never speed. Kept tiny: CI runs it on 2 cores."""

import json

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.export import gpu_delegate

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend"),
    pytest.mark.skipif(gpu_delegate.vulkan_icd() is None,
                       reason="no Vulkan driver for LiteRT's GPU accelerator: run scripts/install_system_deps.sh"),
]


def _mlp():
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(x, {"y": keras.layers.Dense(3, name="y")(h)}, name="mlp")


def test_android_gpu_runs_fully_on_the_gpu_accelerator_and_matches_the_cpu(tmp_path):
    model = _mlp()
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    report = mk.export.export_model(model, tmp_path / "out", target="android-gpu", representative_data=x, verbose=False)
    assert report.passed, report.table()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(a["format"], a["quantization"]) for a in manifest["artifacts"]] == [("tflite", "float32"), ("tflite", "float16")]
    for artifact in manifest["artifacts"]:
        gpu = artifact["deployment"]["gpu_delegate"]
        assert gpu["ran"] and gpu["fully_accelerated"] and gpu["unsupported"] == [], gpu
        assert gpu["max_abs_diff"]["fp32"] <= 1e-4 and gpu["max_abs_diff"]["default"] < 5e-2, gpu
        assert all(i["shape"][0] == 1 for i in artifact["inputs"])  # static batch 1 (the delegate needs static shapes)
    assert "GPU accelerator (" in report.table() and "fully accelerated" in report.table()


def test_a_graph_that_falls_off_the_gpu_fails_the_target_naming_the_op(tmp_path):
    x = keras.Input((8,), name="x")
    # a shrink-axis slice (t[:, 1]) becomes STRIDED_SLICE with shrink_axis_mask, which the GPU accelerator refuses
    column = keras.layers.Lambda(lambda t: t * keras.ops.expand_dims(t[:, 1], -1), output_shape=(8,))(x)
    model = keras.Model(x, {"y": keras.layers.Dense(2, name="y")(column)}, name="shrink")
    with pytest.raises(mk.export.ExportVerificationError,
                       match=r"falls off LiteRT's GPU accelerator: STRIDED_SLICE: .*shrink_axis_mask"):
        mk.export.export_model(model, tmp_path / "out", target="android-gpu", quantize=["float32"], verbose=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("modality_mask", [True, False])
def test_fusion_mask_logic_runs_fully_on_the_gpu_accelerator(tmp_path, modality_mask):
    """The masks of the fusion layers use no select with branches of different shapes and no shrink-axis slice
    (SELECT_V2 and STRIDED_SLICE fell off the GPU before), so a gated fusion with a modality mask runs entirely there;
    so does the unmasked two-modality gate (one sigmoid: LOGISTIC)."""
    seq_in = keras.Input((4, 3), name="seq")
    seq = keras.Model(seq_in, keras.layers.Dense(6, activation="tanh")(seq_in), name="seq_encoder")
    model = mk.builders.gated_fusion({"tab": mk.encoders.tabular(6, (8,)), "seq": seq},
                                     [mk.Task("c", 3, loss="sparse_categorical_crossentropy")], fusion_dim=8,
                                     modality_mask=modality_mask, name="gated_gpu")
    report = mk.export.export_model(model, tmp_path / "out", target="android-gpu", quantize=["float32"], verbose=False)
    assert report.passed, report.table()
    gpu = report.artifacts[0].deployment["gpu_delegate"]
    assert gpu["fully_accelerated"] and gpu["max_abs_diff"]["fp32"] <= 1e-4, gpu


def test_text_embedding_lookups_use_1d_indices_and_run_fully_on_the_gpu_accelerator(tmp_path):
    """An Embedding over [batch, seq] token ids is a GATHER with 2-D indices, which the GPU accelerator refuses; a
    static-batch export flattens the ids (same weights, identical outputs), and the float16 file keeps the lookup
    table float32 (a float16 table behind DEQUANTIZE is refused too)."""
    from mtmm_keras.export import _model_io

    text = mk.encoders.text(40, 6, embedding_dim=8, hidden_dim=8, kind="conv", input_name="tokens")
    model = keras.Model(text.inputs, {"y": keras.layers.Dense(2, name="y")(text.output)}, name="tiny_text")
    tokens = np.random.default_rng(0).integers(0, 40, size=(64, 6)).astype("int32")
    clone = _model_io.export_clone(model, flat_embeddings=True)
    assert any(isinstance(layer, _model_io.FlatIndexEmbedding) for layer in _model_io._all_layers(clone))
    np.testing.assert_array_equal(clone.predict(tokens, verbose=0)["y"], model.predict(tokens, verbose=0)["y"])
    assert _model_io.export_clone(model) is model  # a dynamic batch keeps the model's own graph

    report = mk.export.export_model(model, tmp_path / "out", target="android-gpu", representative_data=tokens,
                                    verbose=False)
    assert report.passed, report.table()
    for artifact in report.artifacts:
        gpu = artifact.deployment["gpu_delegate"]
        assert gpu["fully_accelerated"] and gpu["unsupported"] == [], (artifact.quantization, gpu)
        assert gpu["max_abs_diff"]["fp32"] <= 1e-4, gpu
