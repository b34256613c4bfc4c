"""Issue 19, defect: a NaN / ±inf / 1e30 in a MASKED modality (its `modality_mask` column 0) changes no output, in
Keras and in every exported artifact. tf2onnx used to lower each select (`ops.where`) to Cast·x + Cast(Not)·y, so
NaN·0 = NaN turned the masked rows of the ONNX outputs into NaN; the ONNX writer now keeps every select a `Where`."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
BAD_VALUES = (np.nan, np.inf, -np.inf, 1e30)
TASKS = [mk.Task("c", 3, loss="sparse_categorical_crossentropy"), mk.Task("d", 2, loss="sparse_categorical_crossentropy")]


def _small_fusion(kind):
    tab = mk.encoders.tabular(6, (8,))
    seq_in = keras.Input((4, 3), name="seq")
    seq = keras.Model(seq_in, keras.layers.Dense(6, activation="tanh")(seq_in), name="seq_encoder")
    build = {"attention": mk.builders.attention_fusion, "gated": mk.builders.gated_fusion,
             "transformer": mk.builders.transformer_fusion}[kind]
    return build({"tab": tab, "seq": seq}, TASKS, fusion_dim=8, modality_mask=True, name=f"{kind}_nan")


def _probe(model, rows=6, seed=0):
    """Rows in range with each modality present, then each one missing in turn."""
    from mtmm_keras.export import _model_io

    x = _model_io.sample_inputs(model, rows, seed=seed)
    modalities = x["modality_mask"].shape[-1]
    x["modality_mask"] = _model_io.presence_patterns(rows, modalities)
    return x


def _poisoned(x, value, modalities):
    """`x` with every element of each masked modality replaced by `value`; `modalities`: the input of each mask
    column (the builders' `encoders` order)."""
    poisoned = dict(x)
    for m, name in enumerate(modalities):
        if x[name].dtype.kind != "f":
            continue  # integer inputs (token ids) cannot hold NaN
        missing = (x["modality_mask"][:, m] == 0).reshape((-1,) + (1,) * (x[name].ndim - 1))
        poisoned[name] = np.where(missing, np.asarray(value, x[name].dtype), x[name]).astype(x[name].dtype)
    return poisoned


def _check_inert(run, x, modalities, label):
    want = run(x)
    for value in BAD_VALUES:
        got = run(_poisoned(x, value, modalities))
        for name in want:
            assert np.all(np.isfinite(got[name])), f"{label}: {value} in a masked modality gives NaN/inf in {name!r}"
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=f"{label} {value} {name}")


def _runners(model, out):
    """(label, run) for Keras and each artifact of the export in `out`."""
    from mtmm_keras.export import _model_io, onnx_writer, runtimes

    manifest = __import__("json").loads((out / "manifest.json").read_text())
    names = _model_io.output_names(model)
    yield "keras", lambda x: {k: keras.ops.convert_to_numpy(v) for k, v in _model_io.call_with_named_inputs(model, x).items()}
    for artifact in manifest["artifacts"]:
        path, label = str(out / artifact["path"]), f"{artifact['format']}/{artifact['quantization']}"
        if artifact["format"] == "tflite":
            yield label, runtimes.in_batches(runtimes.tflite_runner(path), artifact["inputs"][0]["shape"][0])
        elif artifact["format"] in ("onnx", "ort"):  # ios: the rewritten ONNX and its ORT-format twin
            inputs = [i["name"] for i in artifact["inputs"]]
            yield label, runtimes.in_batches(runtimes.onnx_runner(path, {onnx_writer.onnx_output_name(n, inputs): n
                                                                         for n in names}), artifact["inputs"][0]["shape"][0])
        elif artifact["format"] == "openvino":
            from mtmm_keras.export import targets

            yield label, targets.openvino_runner(path)


@pytest.mark.parametrize("kind", ["attention", "gated", "transformer"])
def test_masked_modality_with_nan_inf_or_huge_values_changes_no_output_in_any_artifact(tmp_path, kind):
    model = _small_fusion(kind)
    out = tmp_path / "out"
    mk.export.export_model(model, out, formats=("tflite", "onnx"), verbose=False)
    x = _probe(model)
    for label, run in _runners(model, out):
        _check_inert(run, x, ["tab", "seq"], f"{kind} {label}")


def test_onnx_keeps_the_mask_select_as_where_not_multiply_add(tmp_path):
    import onnx

    model = _small_fusion("attention")
    mk.export.export_model(model, tmp_path / "out", formats=("onnx",), verbose=False)
    graph = onnx.load(str(tmp_path / "out" / "attention_nan.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert "Where" in ops
    # tf2onnx's multiply/add lowering names its nodes after the TF select: none may be left
    assert not [n.name for n in graph.node if n.op_type in ("Mul", "Add") and "SelectV2" in n.name]


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["av_digits_fusion", "mfeat_gated_fusion"])
def test_zoo_fusion_entries_keep_masked_modalities_inert_in_every_artifact(tmp_path, entry):
    from mtmm_keras.zoo import registry

    model = mk.zoo.load(entry)
    modalities = list(registry.recipe(entry)["encoders"])
    out = tmp_path / "out"
    mk.export.export_model(model, out, formats=("tflite", "onnx"), verbose=False)
    x = _probe(model, rows=len(model.inputs) * 2)
    for label, run in _runners(model, out):
        _check_inert(run, x, modalities, f"{entry} {label}")



@pytest.mark.parametrize("target", ["openvino", "android-gpu", "ios"])
def test_masked_modality_stays_inert_in_openvino_and_static_gpu_artifacts(tmp_path, target):
    model = _small_fusion("gated")
    out = tmp_path / target
    mk.export.export_model(model, out, target=target, quantize=["float32"] if target == "android-gpu" else None,
                           verbose=False)
    x = _probe(model)
    labels = []
    for label, run in _runners(model, out):
        labels.append(label)
        _check_inert(run, x, ["tab", "seq"], f"{target} {label}")
    if target == "ios":  # both files ran, and the mask logic was rewritten for CoreML (export/mobile_graph.py)
        assert labels == ["keras", "onnx/float32", "ort/float32"], labels
        manifest = __import__("json").loads((out / "manifest.json").read_text())
        assert manifest["artifacts"][0]["deployment"]["mobile_rewrites"]


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["av_digits_fusion", "mfeat_gated_fusion"])
def test_zoo_fusion_entries_stay_inert_after_the_ios_rewrite(tmp_path, entry):
    """The `ios` target rewrites the mask comparisons and reductions for CoreML (export/mobile_graph.py); a NaN, inf
    or 1e30 in a masked modality still changes no output of the rewritten ONNX or its ORT-format twin."""
    from mtmm_keras.zoo import registry

    model = mk.zoo.load(entry)
    modalities = list(registry.recipe(entry)["encoders"])
    out = tmp_path / "out"
    mk.export.export_model(model, out, target="ios", verbose=False)
    x = _probe(model, rows=len(model.inputs) * 2)
    for label, run in _runners(model, out):
        _check_inert(run, x, modalities, f"{entry} ios {label}")
