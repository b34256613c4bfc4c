"""Issue 19: deployment targets (mtmm_keras.export.targets). Each target writes the formats, shapes and precision
targets.py says and verifies them in its runtime; bad targets and conflicting options are refused by name."""

import json
import os

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.export import targets

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
TASKS = [mk.Task("c", 3, loss="sparse_categorical_crossentropy"), mk.Task("d", 2, loss="sparse_categorical_crossentropy")]


def _gated():
    seq_in = keras.Input((4, 3), name="seq")
    seq = keras.Model(seq_in, keras.layers.Dense(6, activation="tanh")(seq_in), name="seq_encoder")
    return mk.builders.gated_fusion({"tab": mk.encoders.tabular(6, (8,)), "seq": seq}, TASKS, fusion_dim=8,
                                    modality_mask=True, name="gated_target", learning_rate=0.01)


def _data(model, rows=200):
    from mtmm_keras.export import _model_io

    x = _model_io.sample_inputs(model, rows)
    x["modality_mask"] = _model_io.presence_patterns(rows, 2)
    return x


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("target", ["gpu-server", "android-npu", "ios", "openvino"])
def test_each_target_writes_and_verifies_what_targets_py_says(tmp_path, target):
    from test_export_fusion import _data as separable_rows

    model = _gated()
    x, y = separable_rows()
    if target == "android-npu":  # int8 is judged by agreement: confident (trained) outputs, not near-ties
        model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    out = tmp_path / target
    report = mk.export.export_model(model, out, target=target, representative_data=x, verbose=False)
    assert report.passed, report.table()
    manifest = _manifest(out)
    assert manifest["target"] == target
    kinds = [(a["format"], a["quantization"]) for a in manifest["artifacts"]]
    by_kind = dict(zip(kinds, manifest["artifacts"]))
    spec = targets.get(target)
    if target == "gpu-server":
        assert kinds == [("saved_model", "float32"), ("onnx", "float32"), ("onnx", "float16")]
        shapes = by_kind[("onnx", "float16")]["deployment"]["shapes"]
        assert shapes["seq"] == {"min": [1, 4, 3], "opt": [32, 4, 3], "max": [256, 4, 3]}
        import onnx

        weights = onnx.load(str(out / by_kind[("onnx", "float16")]["path"])).graph.initializer
        assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    elif target == "android-npu":
        assert kinds == [("tflite", "int8")]
        artifact = by_kind[("tflite", "int8")]
        params = artifact["deployment"]["io_quantization"]
        assert set(params["inputs"]) == {"tab", "seq", "modality_mask"} and set(params["outputs"]) == {"c", "d"}
        assert all(p["dtype"] in ("int8", "uint8") and p["scale"] > 0 for kind in params.values() for p in kind.values())
        assert {i["name"]: i["dtype"] for i in artifact["inputs"]}["tab"] == "int8"
        assert all(i["shape"][0] == 1 for i in artifact["inputs"])  # static batch 1
        from ai_edge_litert.interpreter import Interpreter

        details = Interpreter(model_path=str(out / artifact["path"])).get_signature_runner("serving_default")
        assert {d["dtype"] for d in details.get_input_details().values()} == {np.int8}
        assert {d["dtype"] for d in details.get_output_details().values()} == {np.int8}
    elif target == "ios":
        assert kinds == [("onnx", "float32"), ("ort", "float32")]
        assert sorted(os.listdir(out)) == ["gated_target.onnx", "gated_target.ort", "manifest.json"]
        verdicts = by_kind[("onnx", "float32")]["deployment"]["mobile_usability"]
        assert set(verdicts) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"}
        assert all(v["verdict"] in ("YES", "MAYBE", "NO") for v in verdicts.values())
        assert all(i["shape"][0] == 1 for i in by_kind[("onnx", "float32")]["inputs"])
        # the mask logic is rewritten into ops CoreML MLProgram takes (export/mobile_graph.py): the gated fusion
        # with a modality mask runs there whole; NNAPI and CoreML NeuralNetwork still lack the select (Where)
        rewrites = by_kind[("onnx", "float32")]["deployment"]["mobile_rewrites"]
        assert {"Not(Equal(x, 0)) -> Cast(x, bool)", "ReduceMin -> -ReduceMax(-x)"} <= set(rewrites), rewrites
        assert verdicts["CoreML MLProgram"] == {"verdict": "YES", "nodes_supported": verdicts["CoreML MLProgram"][
            "nodes_supported"], "unsupported_ops": []}, verdicts
        assert "Where" in verdicts["NNAPI"]["unsupported_ops"]
        assert by_kind[("ort", "float32")]["deployment"]["mobile_usability"] == verdicts
    else:
        assert kinds == [("openvino", "float32")]
        assert sorted(os.listdir(out / "openvino")) == ["model.bin", "model.xml"]
        assert by_kind[("openvino", "float32")]["deployment"]["inference_precision"] == "f32"
    assert spec.formats is not None


def test_server_stays_the_default(tmp_path):
    model = _gated()
    mk.export.export_model(model, tmp_path / "a", formats=("onnx",), verbose=False)
    assert _manifest(tmp_path / "a")["target"] == "server"
    assert targets.resolve("server", None, None, None) == (("saved_model", "tflite", "onnx"), ("float32",), None)


def test_android_npu_refuses_a_model_whose_front_end_stays_float(tmp_path):
    from mtmm_keras.encoders.audio import LogMelSpectrogram

    wave = keras.Input((800,), name="audio")
    features = keras.layers.GlobalAveragePooling1D()(LogMelSpectrogram(frame_length=128, hop=64,
                                                                                   num_mel_bins=8)(wave))
    model = keras.Model(wave, keras.layers.Dense(2, name="y")(features), name="audio_model")
    x = np.random.default_rng(0).uniform(-1, 1, (100, 800)).astype("float32")
    with pytest.raises(ValueError, match=r"`target` 'android-npu' needs every op in int8 .*LogMelSpectrogram"):
        mk.export.export_model(model, tmp_path / "npu", target="android-npu", representative_data=x, verbose=False)
    assert not (tmp_path / "npu").exists()


def test_target_errors_name_the_argument_and_the_valid_targets(tmp_path):
    with pytest.raises(ValueError, match=r"`target` must be one of 'server', 'gpu-server', 'android-gpu', "
                                         r"'android-npu', 'ios', 'openvino'; got 'tpu'"):
        mk.export.export_model(_gated(), tmp_path / "x", target="tpu")
    with pytest.raises(ValueError, match=r"`formats` \['saved_model'\] cannot be combined with `target` 'ios'"):
        mk.export.export_model(_gated(), tmp_path / "x", target="ios", formats=["saved_model"])
    with pytest.raises(ValueError, match=r"`quantize` \['dynamic'\] cannot be combined with `target` 'android-gpu'"):
        mk.export.export_model(_gated(), tmp_path / "x", target="android-gpu", quantize=["dynamic"])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flavours", [["int8"], ["float16", "int8"], ["dynamic"]])
def test_android_gpu_refuses_int8_with_the_reason_before_writing(tmp_path, flavours):
    """android-gpu writes float32 / float16 only: int8 (and dynamic-range) files are refused, saying why (the GPU
    accelerator computes in float; int8 files crashed it) and what to use instead, before anything is written."""
    model = _gated()
    with pytest.raises(ValueError) as caught:
        mk.export.export_model(model, tmp_path / "x", target="android-gpu", quantize=flavours,
                               representative_data=_data(model), verbose=False)
    message = str(caught.value)
    refused = [f for f in flavours if f != "float16"]
    assert f"`quantize` {refused} cannot be combined with `target` 'android-gpu'" in message
    assert "['float32', 'float16']" in message and "computes in float16/float32" in message
    assert "'android-npu'" in message and "'float16'" in message
    assert not (tmp_path / "x").exists()
    assert targets.get("android-gpu").allowed_quantize == ("float32", "float16")
    assert set(targets.get("android-gpu").refused_quantize) == {"int8", "dynamic"}


def test_cli_android_gpu_int8_exits_2_with_the_reason(tmp_path, capsys):
    from mtmm_keras.cli import main

    code = main(["export", "zoo:penguins_hard", "--out", str(tmp_path / "o"), "--target", "android-gpu",
                 "--quantize", "int8"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "`--quantize` ['int8'] cannot be combined with `--target` 'android-gpu'" in err
    assert "computes in float16/float32" in err and "'android-npu'" in err
    assert not (tmp_path / "o").exists()


def test_cli_target_flag_errors_name_the_flag(tmp_path, capsys):
    from mtmm_keras.cli import main

    code = main(["export", "zoo:penguins_hard", "--out", str(tmp_path / "o"), "--target", "tpu"])
    err = capsys.readouterr().err
    assert code == 2 and "`--target` must be one of 'server', 'gpu-server', 'android-gpu'" in err
    code = main(["export", "zoo:penguins_hard", "--out", str(tmp_path / "o"), "--target", "ios", "--format", "tflite"])
    err = capsys.readouterr().err
    assert code == 2 and "`--format` ['tflite'] cannot be combined with `--target` 'ios'" in err


def test_mobile_usability_log_is_parsed_per_execution_provider():
    log = """INFO:  Checking NNAPI
INFO:  1 partitions with a total of 12/12 nodes can be handled by the NNAPI EP.
INFO:  Model should perform well with NNAPI as is: YES
INFO:  Checking CoreML NeuralNetwork
INFO:  2 partitions with a total of 9/12 nodes can be handled by the CoreML NeuralNetwork EP.
INFO:  	Unsupported ops: ai.onnx:Log,ai.onnx:Min
INFO:  Model should perform well with CoreML NeuralNetwork as is: NO
INFO:  Checking if model will perform better if the dynamic shapes are fixed...
INFO:  	Unsupported ops: ai.onnx:Gather
INFO:  Checking CoreML MLProgram
INFO:  1 partitions with a total of 12/12 nodes can be handled by the CoreML MLProgram EP.
INFO:  Model should perform well with CoreML MLProgram as is: YES
"""
    assert targets.parse_mobile_usability(log) == {
        "NNAPI": {"verdict": "YES", "nodes_supported": "12/12", "unsupported_ops": []},
        "CoreML NeuralNetwork": {"verdict": "NO", "nodes_supported": "9/12", "unsupported_ops": ["Log", "Min"]},
        "CoreML MLProgram": {"verdict": "YES", "nodes_supported": "12/12", "unsupported_ops": []},
    }


def test_int8_io_quantization_round_trips_through_the_recorded_params():
    params = {"x": {"dtype": "int8", "scale": 0.5, "zero_point": -3}}
    q = targets.quantize_inputs({"x": np.array([[0.0, 1.0, 100.0]], "float32")}, params)["x"]
    assert q.dtype == np.int8 and q.tolist() == [[-3, -1, 127]]
    assert targets.dequantize_outputs({"x": q}, params)["x"].tolist() == [[0.0, 1.0, 65.0]]
