"""Export of fusion models built for missing modalities (issue 11): the `modality_mask` input is in the SavedModel
signature, the TFLite signature and the ONNX graph; every format and TFLite flavour is verified against Keras
with no Flex ops; and in each exported artifact, garbage in a masked modality gives the same outputs."""

import json

import keras
import numpy as np
import pytest

import mtmm_keras as mk

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend"),
    pytest.mark.slow,
]
ALL_FLAVOURS = ("float32", "float16", "dynamic", "int8")
TASKS = [mk.Task("c", 3, loss="sparse_categorical_crossentropy"), mk.Task("d", 2, loss="sparse_categorical_crossentropy")]


def _encoders():
    seq_in = keras.Input((4, 3), name="seq")
    return {"tab": mk.encoders.tabular(6, (8,)),
            # a sequence encoder: four tokens in transformer_fusion, flattened by the other builders
            "seq": keras.Model(seq_in, keras.layers.Dense(6, activation="tanh")(seq_in), name="seq_encoder")}


def _data(n=200, seed=0):
    """Each modality alone separates the classes well (so int8 is judged on signal even with one missing);
    a fifth of the rows miss one modality, none misses both."""
    rng = np.random.default_rng(seed)
    c, d = rng.integers(0, 3, size=n).astype("int32"), rng.integers(0, 2, size=n).astype("int32")
    tab = rng.normal(size=(n, 6)).astype("float32")
    tab[:, 0] = np.array([-2.0, 0.0, 2.0], "float32")[c] + 0.3 * tab[:, 0]
    tab[:, 1] = np.array([-2.0, 2.0], "float32")[d] + 0.3 * tab[:, 1]
    seq = rng.normal(size=(n, 4, 3)).astype("float32")
    seq[:, :, 0] = np.array([-2.0, 0.0, 2.0], "float32")[c][:, None] + 0.3 * seq[:, :, 0]
    seq[:, :, 1] = np.array([-2.0, 2.0], "float32")[d][:, None] + 0.3 * seq[:, :, 1]
    mask = np.ones((n, 2), "float32")
    rows = rng.random(n) < 0.2
    mask[rows, rng.integers(0, 2, size=int(rows.sum()))] = 0.0
    return {"tab": tab, "seq": seq, "modality_mask": mask}, {"c": c, "d": d}


def _export_and_check(model, tmp_path, flavours=ALL_FLAVOURS):
    from mtmm_keras.export import runtimes, tflite_writer

    x, y = _data()
    if flavours != ("float32",):  # quantized artifacts are judged by agreement: trained, confident outputs
        model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    out = tmp_path / model.name
    report = mk.export.export_model(model, str(out), quantize=flavours, representative_data=x, verbose=False)
    assert report.passed
    manifest = json.loads((out / "manifest.json").read_text())
    kinds = [(a["format"], a["quantization"]) for a in manifest["artifacts"]]
    assert kinds == [("saved_model", "float32")] + [("tflite", q) for q in flavours] + [("onnx", "float32")]
    # garbage in the masked modality of each row: the same outputs in every artifact
    probe = {k: v[:12].copy() for k, v in x.items()}
    probe["modality_mask"] = np.array([[1, 1], [0, 1], [1, 0]] * 4, "float32")
    garbage = dict(probe)
    garbage["tab"] = np.where(probe["modality_mask"][:, :1] > 0, probe["tab"], 37.0 * np.ones_like(probe["tab"]))
    garbage["seq"] = np.where(probe["modality_mask"][:, 1:, None] > 0, probe["seq"], -55.0)
    for artifact in manifest["artifacts"]:
        assert artifact["passed"] and artifact["verified"], artifact
        assert "modality_mask" in [i["name"] for i in artifact["inputs"]]
        path = str(out / artifact["path"])
        if artifact["format"] == "saved_model":
            import tensorflow as tf

            signature = tf.saved_model.load(path).signatures["serving_default"]
            assert signature.structured_input_signature[1]["modality_mask"].shape.as_list() == [None, 2]
            run = runtimes.saved_model_runner(path)
        elif artifact["format"] == "tflite":
            flatbuffer = (out / artifact["path"]).read_bytes()
            assert tflite_writer.flex_ops(flatbuffer) == []
            from ai_edge_litert.interpreter import Interpreter

            inputs = Interpreter(model_path=path).get_signature_list()["serving_default"]["inputs"]
            assert "modality_mask" in inputs
            run = runtimes.tflite_runner(path)
        else:
            import onnx

            assert "modality_mask" in [i.name for i in onnx.load(path).graph.input]
            from mtmm_keras.export import onnx_writer

            names = [i["name"] for i in artifact["inputs"]]
            run = runtimes.onnx_runner(path, {onnx_writer.onnx_output_name(n, names): n for n in ("c", "d")})
        want, got = run(probe), run(garbage)
        assert set(want) == {"c", "d"}
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=f"{kinds} {key}")
    return out


def test_attention_fusion_with_mask_exports_every_format_and_flavour(tmp_path):
    _export_and_check(mk.builders.attention_fusion(_encoders(), TASKS, fusion_dim=8, modality_dropout=0.2,
                                                   name="attention_mask_export", learning_rate=0.01), tmp_path)


def test_gated_fusion_with_mask_exports_every_format_and_flavour(tmp_path):
    _export_and_check(mk.builders.gated_fusion(_encoders(), TASKS, fusion_dim=8, modality_dropout=0.2,
                                               name="gated_mask_export", learning_rate=0.01), tmp_path)


def test_gated_fusion_without_a_mask_exports_every_format_and_flavour(tmp_path):
    """The unmasked two-modality gate is one sigmoid (not the masked path's softmax): proven in every runtime too."""
    model = mk.builders.gated_fusion(_encoders(), TASKS, fusion_dim=8, name="gated_export", learning_rate=0.01)
    x, y = _data()
    x = {k: v for k, v in x.items() if k != "modality_mask"}
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    report = mk.export.export_model(model, str(tmp_path / "out"), quantize=ALL_FLAVOURS, representative_data=x,
                                    verbose=False)
    assert report.passed, report.table()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    kinds = [(a["format"], a["quantization"]) for a in manifest["artifacts"]]
    assert kinds == [("saved_model", "float32")] + [("tflite", q) for q in ALL_FLAVOURS] + [("onnx", "float32")]
    assert all(a["passed"] and a["verified"] for a in manifest["artifacts"])


def test_transformer_fusion_with_mask_exports_every_format_and_flavour(tmp_path):
    _export_and_check(mk.builders.transformer_fusion(_encoders(), TASKS, fusion_dim=8, modality_dropout=0.2,
                                                     name="transformer_mask_export", learning_rate=0.01), tmp_path)


def test_concat_and_bottleneck_fusion_with_mask_export_float32(tmp_path):
    _export_and_check(mk.builders.concat_fusion(_encoders(), TASKS, fusion_dim=8, hidden_units=(8,), modality_mask=True,
                                                name="concat_mask_export", learning_rate=0.01), tmp_path, ("float32",))
    _export_and_check(mk.builders.transformer_fusion(_encoders(), TASKS, fusion_dim=8, bottleneck_tokens=2,
                                                     modality_mask=True, name="bottleneck_mask_export",
                                                     learning_rate=0.01), tmp_path, ("float32",))
