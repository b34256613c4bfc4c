"""Export: every builder kind to every format and TFLite flavour, verified; failures leave nothing behind."""

import hashlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import mtmm_keras as mk

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
ALL_FLAVOURS = ("float32", "float16", "dynamic", "int8")


def _hard_sharing():
    x, y = mk.data.reference_multitask(256)
    model = mk.builders.hard_sharing((100,), [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)])
    model.fit(x, y, epochs=2, verbose=0)
    return model, {"features": x}


def _views():
    return mk.data.paired_modalities(256, num_classes=4)


def _load_manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.slow
def test_hard_sharing_exports_every_format_and_flavour(tmp_path):
    model, calib = _hard_sharing()
    out = tmp_path / "hard"
    report = mk.export.export_model(model, str(out), quantize=ALL_FLAVOURS, representative_data=calib, verbose=False)
    assert report.passed
    manifest = _load_manifest(out)
    kinds = [(a["format"], a["quantization"]) for a in manifest["artifacts"]]
    assert kinds == [("saved_model", "float32")] + [("tflite", q) for q in ALL_FLAVOURS] + [("onnx", "float32")]
    sizes = {}
    for artifact in manifest["artifacts"]:
        assert artifact["passed"] and artifact["verified"]
        assert [o["name"] for o in artifact["outputs"]] == ["a", "b", "c"]
        assert artifact["inputs"] == [{"name": "features", "shape": [None, 100], "dtype": "float32"}]
        assert artifact["latency_ms_batch1"] > 0
        assert not os.path.isabs(artifact["path"])  # relative: the manifest stays true when the folder moves
        if artifact["format"] != "saved_model":
            assert os.path.getsize(out / artifact["path"]) == artifact["size_bytes"]
            assert _sha256(out / artifact["path"]) == artifact["sha256"]
        for check in artifact["checks"]:
            assert check["shape"] == check["expected_shape"]
            if artifact["quantization"] == "float32":
                assert check["max_abs_error"] <= 1e-5  # this small MLP meets the plain absolute bound
            else:
                assert check["metric"] == "rel.err" and check["artifact_value"] <= 0.1
        sizes[(artifact["format"], artifact["quantization"])] = artifact["size_bytes"]
    assert sizes[("tflite", "int8")] < 0.4 * sizes[("tflite", "float32")]
    assert os.listdir(tmp_path) == ["hard"]  # staging cleaned up
    assert manifest["holdout"].startswith("representative_data rows") and "never used for calibration" in manifest["holdout"]


@pytest.mark.slow
def test_saved_model_and_onnx_are_servable_with_named_io(tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    v = _views()
    x = {"image": v["image"], "tabular": v["tabular"]}
    model = mk.builders.attention_fusion(
        {"image": mk.encoders.image((8, 8, 1), filters=(8,), output_dim=8), "tabular": mk.encoders.tabular(16, (8,))},
        [mk.Task("label", 4, loss="sparse_categorical_crossentropy"), mk.Task("score", 1)],
        fusion_dim=8,
    )
    with_alpha = mk.builders.with_attention_output(model)
    mk.export.export_model(with_alpha, str(tmp_path / "fusion"), formats=("saved_model", "onnx"), verbose=False)
    serving = tf.saved_model.load(str(tmp_path / "fusion" / "saved_model")).signatures["serving_default"]
    got = serving(image=tf.constant(x["image"][:5]), tabular=tf.constant(x["tabular"][:5]))
    assert set(got) == {"label", "score", "attention"}
    np.testing.assert_allclose(got["attention"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    session = ort.InferenceSession(str(tmp_path / "fusion" / f"{with_alpha.name}.onnx"))
    assert {i.name: i.shape for i in session.get_inputs()} == {"image": ["batch", 8, 8, 1], "tabular": ["batch", 16]}
    assert {o.name: o.shape[0] for o in session.get_outputs()} == {"label": "batch", "score": "batch", "attention": "batch"}
    onnx_out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {k: a[:7] for k, a in x.items()})))
    keras_out = with_alpha.predict({k: a[:7] for k, a in x.items()}, verbose=0)
    for name in keras_out:
        np.testing.assert_allclose(onnx_out[name], keras_out[name], atol=1e-5)


@pytest.mark.slow
def test_soft_sharing_and_fusion_quantized_flavours(tmp_path):
    v = _views()
    x = {"image": v["image"], "tabular": v["tabular"]}
    y = {"label": v["label"]}
    fusion = mk.builders.attention_fusion(
        {"image": mk.encoders.image((8, 8, 1), filters=(8, 16), output_dim=16), "tabular": mk.encoders.tabular(16)},
        [mk.Task("label", 4, loss="sparse_categorical_crossentropy")],
        fusion_dim=16,
    )
    fusion.fit(x, y, epochs=5, verbose=0)
    calibration = {k: a[:128] for k, a in x.items()}  # judged on rows calibration never saw
    held_out = ({k: a[128:] for k, a in x.items()}, {k: a[128:] for k, a in y.items()})
    report = mk.export.export_model(fusion, str(tmp_path / "f"), formats=("tflite",), quantize=ALL_FLAVOURS,
                                    representative_data=calibration, validation_data=held_out, verbose=False)
    for artifact in report.artifacts:
        (check,) = artifact.checks
        if artifact.quantization != "float32":
            assert check.metric == "accuracy" and check.keras_value - check.artifact_value <= 0.01
    xs, ys = mk.data.reference_multitask(256)
    soft = mk.builders.soft_sharing((100,), [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)], tower_units=(16,))
    soft.fit(xs, ys, epochs=2, verbose=0)
    assert mk.export.export_model(soft, str(tmp_path / "s"), quantize=ALL_FLAVOURS, representative_data={"features": xs}, verbose=False).passed


@pytest.mark.slow
def test_joint_embedding_with_lstm_exports_without_flex_and_per_tower(tmp_path):
    v = _views()
    x = {"text": v["tokens"], "image": v["image"]}
    model = mk.builders.joint_embedding(
        {"text": mk.encoders.text(64, 12, embedding_dim=8, hidden_dim=8, unroll=False), "image": mk.encoders.image((8, 8, 1), filters=(8,), output_dim=8)},
        embedding_dim=8,
    )  # a plain (not unrolled) LSTM: the exporter unrolls it so no Flex op is needed
    model.fit(x, v["label"], epochs=2, verbose=0)
    report = mk.export.export_model(model, str(tmp_path / "joint"), quantize=ALL_FLAVOURS, representative_data=x, verbose=False)
    assert report.passed
    from mtmm_keras.export import tflite_writer

    for artifact in report.artifacts:
        if artifact.format == "tflite":
            assert tflite_writer.flex_ops(open(artifact.path, "rb").read()) == []
    towers = mk.export.export_towers(model, str(tmp_path / "towers"), formats=("tflite", "onnx"), verbose=False)
    assert set(towers) == {"text", "image"} and all(r.passed for r in towers.values())
    from ai_edge_litert.interpreter import Interpreter

    text_tflite = os.path.join(tmp_path, "towers", "text", "text_tower.float32.tflite")
    runner = Interpreter(model_path=text_tflite).get_signature_runner("serving_default")
    (phone,) = runner(text=v["tokens"][:3]).values()  # one output: the text embedding
    np.testing.assert_allclose(phone, mk.builders.tower(model, "text").predict(v["tokens"][:3], verbose=0), atol=1e-5)


def _flex_model():
    @keras.saving.register_keras_serializable(package="mtmm_tests")
    class Sinh(keras.layers.Layer):
        def call(self, x):
            return keras.ops.sinh(x)

    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, {"y": keras.layers.Dense(2, name="y")(Sinh()(inputs))})


def test_flex_ops_are_refused_with_names_and_remedy_and_nothing_written(tmp_path):
    out = tmp_path / "flex"
    with pytest.raises(mk.export.FlexOpsError, match="not LiteRT built-ins: Sinh.*Remedies"):
        mk.export.export_model(_flex_model(), str(out), formats=("tflite",), verbose=False)
    assert os.listdir(tmp_path) == []


def test_verification_catches_a_mismatching_artifact_and_keeps_earlier_export(tmp_path, monkeypatch):
    model, _ = _hard_sharing()
    out = tmp_path / "model"
    mk.export.export_model(model, str(out), formats=("onnx",), verbose=False)  # an earlier export
    earlier = sorted(os.listdir(out))
    earlier_manifest = (out / "manifest.json").read_text()
    from mtmm_keras.export import onnx_writer

    real_write = onnx_writer.write_onnx

    def write_wrong_weights(graph_model, path, inputs, opset=17):
        broken = keras.models.clone_model(graph_model)  # same graph, fresh (different) weights
        real_write(broken, path, inputs, opset)

    monkeypatch.setattr(onnx_writer, "write_onnx", write_wrong_weights)
    with pytest.raises(mk.export.ExportVerificationError) as caught:
        mk.export.export_model(model, str(out), formats=("saved_model", "onnx"), verbose=False, overwrite=True)
    report = caught.value.report
    onnx_artifact = next(a for a in report.artifacts if a.format == "onnx")
    assert not onnx_artifact.passed and any("values not close" in c.reason for c in onnx_artifact.checks)
    assert next(a for a in report.artifacts if a.format == "saved_model").passed
    assert "✗ onnx/float32" in report.table()
    assert sorted(os.listdir(tmp_path)) == ["model"] and sorted(os.listdir(out)) == earlier
    assert (out / "manifest.json").read_text() == earlier_manifest


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    model, _ = _hard_sharing()
    from mtmm_keras.export import tflite_writer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tflite_writer, "convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mk.export.export_model(model, str(tmp_path / "out"), verbose=False)
    assert os.listdir(tmp_path) == []


def test_successful_export_replaces_an_earlier_export_only_with_overwrite(tmp_path):
    model, _ = _hard_sharing()
    out = tmp_path / "out"
    mk.export.export_model(model, str(out), formats=("saved_model",), verbose=False)
    with pytest.raises(ValueError, match="already holds an earlier export; pass overwrite=True"):
        mk.export.export_model(model, str(out), formats=("onnx",), verbose=False)
    assert "saved_model" in os.listdir(out)
    mk.export.export_model(model, str(out), formats=("onnx",), verbose=False, overwrite=True)
    assert sorted(os.listdir(out)) == ["hard_sharing.onnx", "manifest.json"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_export_argument_errors(tmp_path):
    model, calib = _hard_sharing()
    with pytest.raises(ValueError, match="`formats` must be one of"):
        mk.export.export_model(model, str(tmp_path / "a"), formats=("tflite", "coreml"))
    with pytest.raises(ValueError, match="`quantize` must be one of"):
        mk.export.export_model(model, str(tmp_path / "a"), quantize=("int4",))
    with pytest.raises(ValueError, match="int8.*representative_data"):
        mk.export.export_model(model, str(tmp_path / "a"), quantize=("int8",))
    with pytest.raises(ValueError, match="keyed by the model's inputs \\['features'\\]"):
        mk.export.export_model(model, str(tmp_path / "a"), representative_data={"x": calib["features"]})
    with pytest.raises(ValueError, match="batch_size"):
        mk.export.export_model(model, str(tmp_path / "a"), batch_size=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_fixed_batch_export(tmp_path):
    model, calib = _hard_sharing()
    report = mk.export.export_model(model, str(tmp_path / "b4"), formats=("tflite", "onnx"), batch_size=4, representative_data=calib, verbose=False)
    assert report.passed
    assert all(a.inputs[0]["shape"] == [4, 100] for a in report.artifacts)


@pytest.mark.slow
def test_cli_export_writes_manifest_and_fails_cleanly(tmp_path):
    model, calib = _hard_sharing()
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "calib.npz", **calib)
    cmd = [sys.executable, "-m", "mtmm_keras.cli", "export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"),
           "--format", "tflite,onnx", "--quantize", "float32,int8", "--calibration-data", str(tmp_path / "calib.npz")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all artifacts verified ✓" in result.stdout and "✓ tflite/int8" in result.stdout
    assert len(_load_manifest(tmp_path / "out")["artifacts"]) == 3
    bad = subprocess.run([sys.executable, "-m", "mtmm_keras.cli", "export", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    bad = subprocess.run([sys.executable, "-m", "mtmm_keras.cli", "export", str(tmp_path / "corrupt.keras"), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "corrupt.keras" in bad.stderr and "is not a .keras archive" in bad.stderr and "Traceback" not in bad.stderr


def test_export_clone_unrolls_recurrent_layers_and_disables_cudnn():
    from mtmm_keras.export import _model_io

    model = mk.builders.joint_embedding({"text": mk.encoders.text(20, 6, hidden_dim=4, unroll=False), "tab": mk.encoders.tabular(3)}, embedding_dim=4)
    clone = _model_io.export_clone(model)
    lstm = next(layer for layer in _model_io._all_layers(clone) if isinstance(layer, keras.layers.LSTM))
    assert lstm.unroll is True and lstm.use_cudnn is False
    original = next(layer for layer in _model_io._all_layers(model) if isinstance(layer, keras.layers.LSTM))
    assert original.unroll is False  # the user's model is untouched
    batch = _model_io.sample_inputs(model, 5)
    want, got = model.predict(batch, verbose=0), clone.predict(batch, verbose=0)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    plain = mk.builders.hard_sharing((4,), [mk.Task("a", 1)])
    assert _model_io.export_clone(plain) is plain
