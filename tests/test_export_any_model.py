"""The exporter takes any Keras model (issue 18) and its small defects (issue 19): Sequential models with or
without an Input, functional models with several named inputs and outputs, subclassed models, mixed precision,
string inputs refused up front, `mtmm export --import`, CLI errors that name flags, zoo fusion entries, and
random verification inputs drawn in the range each input expects."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.export import _model_io

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
ALL_FLAVOURS = ("float32", "float16", "dynamic", "int8")
EVERY_ARTIFACT = [("saved_model", "float32")] + [("tflite", q) for q in ALL_FLAVOURS] + [("onnx", "float32")]
DEFAULT_ARTIFACTS = [("saved_model", "float32"), ("tflite", "float32"), ("onnx", "float32")]


def _kinds(report):
    return [(a.format, a.quantization) for a in report.artifacts]


def _manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def _cli_here(capsys, *argv):
    """`mtmm` in this process (fast): (exit code, stdout, stderr)."""
    from mtmm_keras.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _run_cli(*args, pythonpath=(), cwd=None):
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "mtmm_keras.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture
def dtype_policy():
    """Set the global dtype policy for one test; the previous one is restored whatever happens."""
    previous = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(previous)


def _sequential():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])


# --- Sequential models -------------------------------------------------------------------------------------
def test_sequential_with_an_input_exports_and_verifies_every_format_and_flavour(tmp_path):
    model = _sequential()
    report = mk.export.export_model(model, tmp_path / "default", verbose=False)
    assert report.passed and _kinds(report) == DEFAULT_ARTIFACTS
    data = np.random.default_rng(0).normal(size=(100, 4)).astype("float32")
    report = mk.export.export_model(model, tmp_path / "all", quantize=ALL_FLAVOURS, representative_data=data, verbose=False)
    assert report.passed and _kinds(report) == EVERY_ARTIFACT
    for artifact in _manifest(tmp_path / "all")["artifacts"]:
        assert artifact["status"] == "verified"
        assert artifact["inputs"] == [{"name": "input", "shape": [None, 4], "dtype": "float32"}]
        assert [o["name"] for o in artifact["outputs"]] == [model.layers[-1].name]


@pytest.mark.slow
def test_cli_exports_a_saved_sequential_model_in_every_format_and_flavour(tmp_path, capsys):
    _sequential().save(tmp_path / "m.keras")
    np.savez(tmp_path / "calib.npz", input=np.random.default_rng(0).normal(size=(100, 4)).astype("float32"))
    code, out, err = _cli_here(capsys, "export", tmp_path / "m.keras", "--out", tmp_path / "default")
    assert code == 0, err[-2000:]
    assert [(a["format"], a["quantization"]) for a in _manifest(tmp_path / "default")["artifacts"]] == DEFAULT_ARTIFACTS
    code, out, err = _cli_here(capsys, "export", tmp_path / "m.keras", "--out", tmp_path / "all", "--quantize",
                               ",".join(ALL_FLAVOURS), "--calibration-data", tmp_path / "calib.npz")
    assert code == 0, err[-2000:]
    assert "all artifacts verified ✓" in out
    manifest = _manifest(tmp_path / "all")
    assert [(a["format"], a["quantization"]) for a in manifest["artifacts"]] == EVERY_ARTIFACT
    assert all(a["status"] == "verified" for a in manifest["artifacts"]) and manifest["passed"] is True


@pytest.mark.parametrize("how", ["build", "call", "fit"])
def test_sequential_without_an_input_exports_once_built(tmp_path, how):
    model = keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2, name="head")])
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    if how == "build":
        model.build((None, 4))
    elif how == "call":
        model(x[:2])  # a batch of 2: the artifacts still take any batch
    else:
        model.compile("sgd", "mse")
        model.fit(x, np.zeros((8, 2)), epochs=1, verbose=0)
    report = mk.export.export_model(model, tmp_path / "out", verbose=False)
    assert report.passed and _kinds(report) == DEFAULT_ARTIFACTS
    assert all(a.inputs == [{"name": "input", "shape": [None, 4], "dtype": "float32"}] for a in report.artifacts)
    assert all([o["name"] for o in a.outputs] == ["head"] for a in report.artifacts)


def test_unbuilt_sequential_is_refused_with_what_to_do_and_nothing_written(tmp_path):
    model = keras.Sequential([keras.layers.Dense(2)], name="seq")
    with pytest.raises(ValueError, match=r"Sequential model 'seq' has no input shape yet.*start it with an Input "
                                         r"\(keras\.Sequential\(\[keras\.Input\(shape=\(4,\)\).*model\.build\(\(None, 4\)\)"):
        mk.export.export_model(model, tmp_path / "out", verbose=False)
    assert os.listdir(tmp_path) == []


# --- functional models with several inputs and outputs ---------------------------------------------------------
def _two_inputs():
    return keras.Input((3,), name="a"), keras.Input((2,), name="b")


def test_functional_with_list_inputs_and_outputs_keeps_their_names(tmp_path):
    import tensorflow as tf

    a, b = _two_inputs()
    joined = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], [keras.layers.Dense(1, name="score")(joined), keras.layers.Dense(3, name="label")(joined)])
    report = mk.export.export_model(model, tmp_path / "out", verbose=False)
    assert report.passed and _kinds(report) == DEFAULT_ARTIFACTS
    assert [i["name"] for i in report.artifacts[0].inputs] == ["a", "b"]
    serving = tf.saved_model.load(str(tmp_path / "out" / "saved_model")).signatures["serving_default"]
    got = serving(a=tf.zeros((5, 3)), b=tf.zeros((5, 2)))
    assert {k: tuple(v.shape) for k, v in got.items()} == {"score": (5, 1), "label": (5, 3)}


def test_functional_with_dict_inputs_and_outputs_keeps_their_names(tmp_path):
    a, b = _two_inputs()
    joined = keras.layers.Concatenate()([a, b])
    model = keras.Model({"a": a, "b": b}, {"score": keras.layers.Dense(1)(joined), "label": keras.layers.Dense(3)(joined)})
    report = mk.export.export_model(model, tmp_path / "out", formats=("saved_model", "onnx"), verbose=False)
    assert report.passed
    assert all(sorted(o["name"] for o in art.outputs) == ["label", "score"] for art in report.artifacts)


def _dict_model():
    a, b = _two_inputs()
    return keras.Model({"a": a, "b": b}, keras.layers.Dense(2, name="y")(keras.layers.Concatenate()([a, b])))


def test_without_keras_private_inputs_struct_the_public_path_or_the_fallback_is_used(tmp_path, monkeypatch):
    model = _dict_model()

    def gone(self):
        raise AttributeError("not in this Keras")

    # 1. the public `model.input` is missing: Keras's private record of the input structure is used
    monkeypatch.setattr(type(model), "input", property(gone))
    assert isinstance(_model_io._input_structure(model), dict)
    assert mk.export.export_model(model, tmp_path / "private", formats=("saved_model", "onnx"), verbose=False).passed
    # 2. a Keras where the private attribute is also gone (renamed): the structure is rebuilt from `model.inputs`
    monkeypatch.setattr(_model_io, "_KERAS_INPUTS_STRUCT", "_renamed_in_another_keras")
    struct = _model_io._input_structure(model)
    assert isinstance(struct, dict) and {k: t.name for k, t in struct.items()} == {"a": "a", "b": "b"}
    report = mk.export.export_model(model, tmp_path / "fallback", formats=("saved_model", "onnx"), verbose=False)
    assert report.passed and [i["name"] for i in report.artifacts[0].inputs] == ["a", "b"]


def test_unnamed_functional_input_gets_a_stable_name(tmp_path):
    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(1, name="y")(x))
    report = mk.export.export_model(model, tmp_path / "out", formats=("onnx",), verbose=False)
    assert report.passed and report.artifacts[0].inputs[0]["name"] == "input"


# --- subclassed models -----------------------------------------------------------------------------------------
class SubclassedNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(4, activation="relu")
        self.out = keras.layers.Dense(2)

    def call(self, inputs):
        return {"y": self.out(self.hidden(keras.ops.concatenate([inputs["a"], inputs["b"]], axis=-1)))}


def test_subclassed_model_called_once_exports_with_its_input_names(tmp_path):
    model = SubclassedNet()
    model({"a": np.zeros((2, 3), "float32"), "b": np.zeros((2, 2), "float32")})
    report = mk.export.export_model(model, tmp_path / "out", verbose=False)
    assert report.passed and _kinds(report) == DEFAULT_ARTIFACTS
    assert report.artifacts[0].inputs == [{"name": "a", "shape": [None, 3], "dtype": "float32"},
                                          {"name": "b", "shape": [None, 2], "dtype": "float32"}]
    assert [o["name"] for o in report.artifacts[0].outputs] == ["y"]


def test_subclassed_model_never_called_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match=r"Model 'sub' \(SubclassedNet, a subclassed keras\.Model\) has no known input "
                                         r"signature: call it once on a batch.*or build it \(model\.build\(input_shape\)\)"):
        mk.export.export_model(SubclassedNet(name="sub"), tmp_path / "out", verbose=False)
    assert os.listdir(tmp_path) == []


# --- mixed precision -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_model_exports_float32_artifacts_checked_against_a_float32_copy(tmp_path, dtype_policy, policy):
    dtype_policy(policy)
    x = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(x, {"logits": keras.layers.Dense(3)(hidden), "score": keras.layers.Dense(1)(hidden)})
    sequential = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    dtype_policy("float32")
    assert model.outputs[0].dtype == policy.replace("mixed_", "")  # float16 / bfloat16 internals and outputs
    report = mk.export.export_model(model, tmp_path / "f", quantize=("float32", "float16"), verbose=False)
    assert report.passed, report.table()
    assert _kinds(report) == DEFAULT_ARTIFACTS[:2] + [("tflite", "float16"), ("onnx", "float32")]
    manifest = _manifest(tmp_path / "f")
    assert manifest["source_precision"]["dtype_policies"] == [policy]
    assert manifest["source_precision"]["artifacts"] == "float32"
    assert manifest["source_precision"]["verified_against"] == "a float32 copy of the model with the same weights"
    assert 0 < manifest["source_precision"]["max_abs_difference_float32_copy_vs_source"] < 0.1
    for artifact in manifest["artifacts"]:
        if artifact["quantization"] == "float32":
            assert all(check["max_abs_error"] <= 1e-5 for check in artifact["checks"])
    assert "source computes in " + policy in report.table()
    assert model.layers[1].dtype_policy.name == policy  # the user's model is untouched
    assert mk.export.export_model(sequential, tmp_path / "s", formats=("tflite", "onnx"), verbose=False).passed


def test_cli_exports_a_saved_mixed_precision_model(tmp_path, dtype_policy, capsys):
    dtype_policy("mixed_float16")
    x = keras.Input((8,), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="y")(keras.layers.Dense(16, activation="relu")(x)))
    dtype_policy("float32")
    model.save(tmp_path / "m.keras")
    code, out, err = _cli_here(capsys, "export", tmp_path / "m.keras", "--out", tmp_path / "out")
    assert code == 0, err[-2000:]
    assert "not LiteRT built-ins" not in out + err and "all artifacts verified ✓" in out
    assert _manifest(tmp_path / "out")["source_precision"]["dtype_policies"] == ["mixed_float16"]


# --- string and ragged inputs ----------------------------------------------------------------------------------
def test_string_input_is_refused_naming_the_input_and_each_format_before_anything_is_written(tmp_path):
    text = keras.Input(shape=(), dtype="string", name="text")
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorize.adapt(["a b c", "b c d"])
    model = keras.Model(text, keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Embedding(20, 2)(vectorize(text)))))
    with pytest.raises(ValueError, match=r"The model's input 'text' is a string tensor; export takes dense numeric "
                                         r"inputs only\. saved_model: .*; tflite: .*; onnx: .*Remedy: keep the text "
                                         r"preprocessing .* outside the artifact"):
        mk.export.export_model(model, tmp_path / "out", verbose=False)
    assert os.listdir(tmp_path) == []


# --- CLI: errors name flags; --import ------------------------------------------------------------------------------
def test_cli_errors_name_flags_not_python_arguments(tmp_path, capsys):
    _sequential().save(tmp_path / "m.keras")
    code, _, err = _cli_here(capsys, "export", tmp_path / "m.keras", "--out", tmp_path / "out", "--format", "tflite",
                             "--quantize", "int8")
    assert code == 2 and "needs `--calibration-data` (an .npz with one array per model input)" in err
    assert "representative_data" not in err
    np.savez(tmp_path / "calib.npz", input=np.zeros((100, 5), "float32"))
    code, _, err = _cli_here(capsys, "export", tmp_path / "m.keras", "--out", tmp_path / "out", "--calibration-data",
                             tmp_path / "calib.npz")
    assert code == 2 and "`--calibration-data` array 'input' has rows of shape [5]" in err
    code, _, err = _cli_here(capsys, "export", tmp_path / "m.keras", "--out", tmp_path / "out", "--batch-size", "0")
    assert code == 2 and "`--batch-size` must be a positive integer" in err
    assert sorted(os.listdir(tmp_path)) == ["calib.npz", "m.keras"]


def test_with_flags_maps_every_argument_in_one_place():
    from mtmm_keras.export.cli_export import ARGUMENT_FLAGS, with_flags

    assert with_flags("`validation_data[0]['x']` is empty") == "`--validation-data` array 'x' is empty"
    assert with_flags("Pass allow_flex=True (--allow-flex) only if") == "Pass --allow-flex only if"
    assert with_flags("pass overwrite=True (CLI: --force) to replace") == "pass --force to replace"
    for argument, flag in ARGUMENT_FLAGS.items():
        assert with_flags(f"`{argument}` must be") == f"`{flag}` must be"


CUSTOM_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="my_custom_layers")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''


@pytest.mark.slow
def test_cli_import_loads_a_model_with_the_users_custom_layer(tmp_path, monkeypatch):
    modules = tmp_path / "mods"
    modules.mkdir()
    (modules / "my_custom_layers.py").write_text(CUSTOM_MODULE)
    spec = importlib.util.spec_from_file_location("my_custom_layers", modules / "my_custom_layers.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "my_custom_layers", module)
    spec.loader.exec_module(module)
    x = keras.Input((4,), name="x")
    keras.Model(x, keras.layers.Dense(2, name="y")(module.Scale()(x))).save(tmp_path / "custom.keras")

    missing = _run_cli("export", tmp_path / "custom.keras", "--out", tmp_path / "a", "--format", "onnx", pythonpath=[modules])
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "uses the custom class 'Scale' (registered as 'my_custom_layers>Scale', defined in module 'my_custom_layers')" in missing.stderr
    assert "pass --import my_custom_layers" in missing.stderr
    wrong = _run_cli("export", tmp_path / "custom.keras", "--out", tmp_path / "a", "--import", "no_such_module_here")
    assert wrong.returncode == 2 and "--import 'no_such_module_here': no module of that name" in wrong.stderr
    done = _run_cli("export", tmp_path / "custom.keras", "--out", tmp_path / "a", "--format", "onnx", "--import",
                    "my_custom_layers", pythonpath=[modules])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "all artifacts verified ✓" in done.stdout
    assert sorted(os.listdir(tmp_path)) == ["a", "custom.keras", "mods"]


# --- zoo entries with a modality mask; random inputs in range -------------------------------------------------------
# The CLI export of the two entries with a modality mask (the KeyError defect): every zoo entry is exported
# through the CLI in tests/test_export_targets_cli_zoo.py.


@pytest.mark.slow
def test_av_digits_fusion_exports_and_verifies_without_data(tmp_path):
    report = mk.export.export_model(mk.zoo.load("av_digits_fusion"), tmp_path / "out", verbose=False)
    assert report.passed, report.table()
    assert report.random_inputs["audio"].startswith("waveforms in [-1, 1]")
    assert report.random_inputs["image"].startswith("integers in [0, 255]")
    assert report.random_inputs["modality_mask"].startswith("presence patterns")
    assert _manifest(tmp_path / "out")["random_inputs"] == report.random_inputs


def test_sample_inputs_follow_the_layer_that_reads_each_input():
    from mtmm_keras.encoders.audio import LogMelSpectrogram

    pixels = keras.Input((4, 4, 1), name="pixels")
    centred = keras.Input((3,), name="centred")
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    waveform = keras.Input((2048,), name="waveform")
    mask = keras.Input((2,), name=_model_io.MODALITY_MASK)
    norm = keras.layers.Normalization(mean=[10.0, 20.0, 30.0], variance=[1.0, 4.0, 9.0])
    image = keras.Sequential([keras.Input((4, 4, 1), name="pixels"), keras.layers.Rescaling(1 / 127.5, offset=-1.0),
                              keras.layers.Flatten()], name="image_encoder")
    parts = [image(pixels), norm(centred), keras.layers.Flatten()(keras.layers.Embedding(7, 2)(tokens)),
             LogMelSpectrogram(frame_length=256, hop=128, num_mel_bins=8)(waveform), mask]
    parts[3] = keras.layers.Flatten()(parts[3])
    model = keras.Model([pixels, centred, tokens, waveform, mask],
                        keras.layers.Dense(1)(keras.layers.Concatenate()(parts)))
    batch = _model_io.sample_inputs(model, 64)
    assert 0 <= batch["pixels"].min() and batch["pixels"].max() <= 255 and batch["pixels"].max() > 200
    np.testing.assert_allclose(batch["centred"].mean(axis=0), [10, 20, 30], atol=1.5)
    assert batch["tokens"].dtype == np.int32 and batch["tokens"].max() <= 6
    assert np.abs(batch["waveform"]).max() == pytest.approx(1.0) and batch["waveform"].std() > 0.05
    assert set(np.unique(batch[_model_io.MODALITY_MASK])) == {0.0, 1.0}
    ranges = _model_io.sample_ranges(model)
    assert ranges["pixels"].startswith("uniform in [0, 255]") and "Rescaling" in ranges["pixels"]
    assert ranges["centred"].startswith("normal with the mean and variance of")


def test_ragged_input_is_refused_naming_the_input_before_anything_is_written(tmp_path):
    tokens = keras.Input((None,), ragged=True, dtype="int32", name="tokens")
    model = keras.Model(tokens, keras.layers.Dense(1)(keras.layers.Embedding(5, 2)(tokens)))
    with pytest.raises(ValueError, match=r"The model's input 'tokens' is a ragged tensor \(dtype int32\); export takes "
                                         r"dense numeric inputs only\..*Remedy: pad the input to a dense tensor"):
        mk.export.export_model(model, tmp_path / "out", verbose=False)
    assert os.listdir(tmp_path) == []
