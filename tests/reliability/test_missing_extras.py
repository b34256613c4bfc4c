"""A missing optional dependency names the pip extra that brings it, before any work is done."""

import importlib.util
import os

import pytest

import mtmm_keras as mk


@pytest.fixture
def without(monkeypatch):
    real = importlib.util.find_spec

    def hide(*modules):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))

    return hide


def test_dataset_without_the_data_extra(without):
    without("tensorflow_datasets")
    with pytest.raises(ImportError, match="the 'penguins' dataset needs tensorflow_datasets.*pip install \"mtmm-keras\\[data\\]\""):
        mk.data.load_numpy("penguins", split="test")


def test_zoo_train_without_the_plot_extra_fails_before_training(without, tmp_path, monkeypatch):
    from mtmm_keras.zoo import evaluation

    monkeypatch.setattr(evaluation, "split_arrays", lambda *a, **k: pytest.fail("data loaded before the check"))
    without("matplotlib")
    with pytest.raises(ImportError, match="training curves needs matplotlib.*pip install \"mtmm-keras\\[plot\\]\""):
        mk.zoo.train("penguins_hard", epochs=1, out_dir=str(tmp_path / "e"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("module", ["onnx", "tf2onnx", "onnxruntime"])
def test_onnx_export_without_the_export_extra(without, tmp_path, module):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on the TensorFlow backend")
    without(module)
    model = mk.builders.hard_sharing((3,), [mk.Task("a", 1)], trunk_units=(2,))
    with pytest.raises(ImportError, match=f"needs {module}, which is not installed: pip install \"mtmm-keras\\[export\\]\""):
        mk.export.export_model(model, str(tmp_path / "out"), formats=("onnx",), verbose=False)
    assert os.listdir(tmp_path) == []


def test_tflite_export_without_the_litert_runtime(without, tmp_path):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on the TensorFlow backend")
    without("ai_edge_litert")
    model = mk.builders.hard_sharing((3,), [mk.Task("a", 1)], trunk_units=(2,))
    with pytest.raises(ImportError, match="needs ai_edge_litert"):
        mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), verbose=False)
    report = mk.export.export_model(model, str(tmp_path / "unverified"), formats=("tflite",), verify=False, verbose=False)
    assert not report.verified  # without the runtime an unchecked export is still possible, and says so


def test_onnx_export_falls_back_when_the_keras_tf2onnx_patch_is_missing(tmp_path, monkeypatch):
    import builtins

    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on the TensorFlow backend")
    real_import = builtins.__import__

    def no_patch(name, *args, **kwargs):
        if name == "keras.src.export.tf2onnx_lib":
            raise ImportError("simulated: Keras moved tf2onnx_lib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_patch)
    model = mk.builders.hard_sharing((3,), [mk.Task("a", 1)], trunk_units=(2,))
    with pytest.warns(RuntimeWarning, match="without its numpy-2 patch"):
        report = mk.export.export_model(model, str(tmp_path / "out"), formats=("onnx",), verbose=False)
    assert report.passed  # verified against Keras all the same
