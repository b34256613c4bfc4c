"""Zoo models and their exports take the raw input a device has: uint8 pixels, the float32 waveform
(tabular entries take the datasets' standardised features: raw ones break full-integer int8 export). Loading an entry leaves the caller's random seeds alone; retraining stays
deterministic."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.data import _audio
from mtmm_keras.encoders.audio import LogMelSpectrogram
from mtmm_keras.zoo import evaluation, recipes, registry


def run_python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)

ENTRIES = registry.list()
HEAVY_DATA = ("multi_fashion", "av_digits")  # minutes to prepare on a fresh machine
TFLITE_ATOL = 1e-4


def _entry_params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if registry.recipe(n)["data"] in HEAVY_DATA else n for n in names]


def _waveforms(n, seed=0):
    """Noisy tones at several loudnesses, WINDOW samples each (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(_audio.WINDOW) / _audio.SAMPLE_RATE
    tone = np.sin(2 * np.pi * rng.uniform(100, 3000, size=(n, 1)) * t)
    return (rng.uniform(0.01, 3.0, size=(n, 1)) * (tone + rng.normal(size=(n, _audio.WINDOW)))).astype(np.float32)


def _raw_batch(model, n=16, seed=0):
    """Raw inputs for every input of `model`: uint8 pixels, waveforms, float features, or the 0/1 presence mask."""
    from mtmm_keras.export import _model_io

    rng = np.random.default_rng(seed)
    batch = {}
    for tensor in model.inputs:
        name, shape = tensor.name.split(":")[0], tuple(tensor.shape[1:])
        if name == _model_io.MODALITY_MASK:
            batch[name] = _model_io.presence_patterns(n, shape[-1])
        elif str(tensor.dtype) == "uint8":
            batch[name] = rng.integers(0, 256, size=(n, *shape)).astype(np.uint8)
        elif shape == (_audio.WINDOW,):
            batch[name] = _waveforms(n, seed)
        else:
            batch[name] = rng.normal(size=(n, *shape)).astype(np.float32)
    return batch


def _raw_kind(recipe, modality):
    spec = recipe["encoders"][modality]
    return {"image": "uint8", "audio": "waveform", "text": "int32"}.get(spec["kind"], "float32")


# ---- encoders -------------------------------------------------------------------------------------

def test_image_encoder_takes_uint8_pixels_and_matches_float_input():
    raw = mk.encoders.image((8, 8, 1), filters=(4,), output_dim=5, input_dtype="uint8", rescale=1 / 255)
    scaled = mk.encoders.image((8, 8, 1), filters=(4,), output_dim=5)
    scaled.set_weights(raw.get_weights())
    assert str(raw.inputs[0].dtype) == "uint8"
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 1)).astype(np.uint8)
    np.testing.assert_allclose(raw.predict(pixels, verbose=0), scaled.predict(pixels / np.float32(255), verbose=0),
                               rtol=1e-6, atol=1e-6)
    plain = mk.encoders.image((8, 8), filters=(4,), input_dtype="uint8")  # no rescale: cast only
    assert plain.predict(pixels[..., 0], verbose=0).shape == (6, 64)
    with pytest.raises(ValueError, match="input_dtype"):
        mk.encoders.image((8, 8), input_dtype="float64x")


def test_log_mel_front_end_is_the_datasets_numpy_front_end():
    waves = _waveforms(6)
    expected = np.stack([_audio.log_mel_spectrogram(w.astype(np.float64)) for w in waves])
    got = keras.ops.convert_to_numpy(LogMelSpectrogram()(waves))
    assert got.shape == (6, _audio.FRAMES, _audio.BINS)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # per-example standardisation: the features do not depend on loudness
    np.testing.assert_allclose(keras.ops.convert_to_numpy(LogMelSpectrogram()(waves * 10.0)), got, atol=1e-4)


def test_audio_encoder_takes_the_waveform():
    encoder = mk.encoders.audio((_audio.WINDOW,), filters=(4,), output_dim=3, frontend={"num_mel_bins": 16})
    assert tuple(encoder.inputs[0].shape) == (None, _audio.WINDOW)
    assert tuple(encoder.get_layer("frontend").output.shape) == (None, _audio.FRAMES, 16)
    assert encoder.predict(_waveforms(2), verbose=0).shape == (2, 3)
    with pytest.raises(ValueError, match="frontend"):
        mk.encoders.audio((32, 32), frontend={})
    with pytest.raises(ValueError, match="frame_length"):
        mk.encoders.audio((100,))


def test_raw_input_model_saves_and_reloads_in_a_new_process(tmp_path):
    recipe = registry.recipe("av_digits_fusion")
    model = recipes.build(recipe)
    batch = _raw_batch(model, 4)
    expected = model.predict(batch, verbose=0)["digit"]
    model.save(tmp_path / "raw.keras")
    np.savez(tmp_path / "batch.npz", **batch)
    code = f"""
import json, numpy as np, keras
import mtmm_keras, mtmm_keras.encoders  # the encoders module registers LogMelSpectrogram
model = keras.saving.load_model({str(tmp_path / 'raw.keras')!r}, safe_mode=True)
batch = dict(np.load({str(tmp_path / 'batch.npz')!r}))
print(json.dumps({{"dtypes": {{t.name.split(":")[0]: str(t.dtype) for t in model.inputs}},
                   "digit": model.predict(batch, verbose=0)["digit"].tolist()}}))
"""
    result = run_python(code, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["dtypes"] == {"image": "uint8", "audio": "float32", "modality_mask": "float32"}
    np.testing.assert_allclose(np.array(out["digit"]), expected, rtol=1e-5, atol=1e-5)


# ---- zoo entries ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_model_declares_raw_inputs(name):
    recipe = registry.recipe(name)
    model = recipes.build(recipe, compile=False)
    inputs = {t.name.split(":")[0]: t for t in model.inputs}
    for modality in recipe["encoders"]:
        kind = _raw_kind(recipe, modality)
        if kind == "uint8":
            assert str(inputs[modality].dtype) == "uint8", modality
        elif kind == "waveform":
            assert tuple(inputs[modality].shape[1:]) == (_audio.WINDOW,), modality
        elif kind == "int32":  # text: the dataset's token ids
            assert str(inputs[modality].dtype) == "int32", modality
        else:  # tabular: the features as the dataset stores them (standardised with train statistics), float32
            assert str(inputs[modality].dtype) == "float32", modality


@pytest.mark.parametrize("name", _entry_params(ENTRIES))
def test_entry_is_measured_on_raw_test_inputs(name):
    """The arrays `mtmm zoo evaluate` feeds the entry are the raw ones (uint8 pixels, waveforms); that the
    card is reproduced on exactly these arrays is tests/test_zoo_export.py::test_evaluate_reproduces_the_card;
    that the entry's model takes these dtypes is test_every_entry_model_declares_raw_inputs above."""
    recipe = registry.recipe(name)
    x, _ = evaluation.split_arrays(recipe, "test")
    assert sorted(x) == sorted(recipe["encoders"])
    for modality, values in x.items():
        kind = _raw_kind(recipe, modality)
        if kind == "uint8":
            assert values.dtype == np.uint8 and values.max() > 200, modality
        elif kind == "waveform":
            assert values.dtype == np.float32 and values.shape[1:] == (_audio.WINDOW,), modality
        elif kind == "int32":
            assert values.dtype.kind == "i", modality
        else:
            assert values.dtype == np.float32, modality


# ---- export ---------------------------------------------------------------------------------------

def _export_and_compare(model, inputs, out_dir):
    from mtmm_keras.export import runtimes, tflite_writer

    report = mk.export.export_model(model, str(out_dir), formats=("tflite", "onnx"), quantize=("float32",),
                                    representative_data=inputs, verbose=False)
    assert report.passed, report.table()
    reference = {k: keras.ops.convert_to_numpy(v) for k, v in model(inputs, training=False).items()}
    deltas = {}
    for artifact in report.artifacts:
        assert [i["dtype"] for i in artifact.inputs] == [str(inputs[i["name"]].dtype) for i in artifact.inputs]
        if artifact.format == "tflite":
            flatbuffer = open(artifact.path, "rb").read()
            assert tflite_writer.flex_ops(flatbuffer) == []
            assert not [op for op in tflite_writer.op_names(flatbuffer) if "FFT" in op or op == "CUSTOM"]
            got = runtimes.tflite_runner(artifact.path)(inputs)
        else:
            got = runtimes.onnx_runner(artifact.path, {o.get("onnx_name", o["name"]): o["name"] for o in artifact.outputs})(inputs)
        for key, value in reference.items():
            delta = float(np.abs(got[key] - value).max())
            deltas[(artifact.format, key)] = delta
            assert delta <= TFLITE_ATOL * max(1.0, float(np.abs(value).max())), (artifact.format, key, delta)
    return deltas


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
@pytest.mark.parametrize("name", ["av_digits_fusion", "multi_fashion_hard"])
def test_fresh_entry_exports_take_raw_inputs(name, tmp_path):
    """TFLite float32 and ONNX artifacts of the entry's architecture take uint8 pixels / the waveform."""
    model = recipes.build(registry.recipe(name))
    _export_and_compare(model, _raw_batch(model, 8), tmp_path / name)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
@pytest.mark.slow
@pytest.mark.parametrize("name", ["av_digits_fusion", "multi_fashion_hard"])
def test_pretrained_entry_exports_match_keras_on_raw_test_inputs(name, tmp_path):
    recipe = registry.recipe(name)
    x, _ = evaluation.split_arrays(recipe, "test", limit=64)
    model = mk.zoo.load(name)
    inputs = {m: x[m] for m in recipe["encoders"]}
    from mtmm_keras.export import _model_io

    if _model_io.MODALITY_MASK in [t.name.split(":")[0] for t in model.inputs]:  # a device also says what is present
        inputs[_model_io.MODALITY_MASK] = _model_io.presence_patterns(len(next(iter(inputs.values()))), len(inputs))
    deltas = _export_and_compare(model, inputs, tmp_path / name)
    print(name, deltas)


# ---- seeds ----------------------------------------------------------------------------------------

def _global_rng_state():
    from keras.src.random import seed_generator

    generator = keras.ops.convert_to_numpy(seed_generator.global_seed_generator().state.value).tolist()
    return random.getstate(), np.random.get_state()[1].tolist(), generator


@pytest.mark.parametrize("pretrained", [False, True])
def test_zoo_load_leaves_the_callers_random_state_alone(pretrained):
    random.seed(123)
    np.random.seed(123)
    keras.utils.set_random_seed(123)
    keras.random.uniform((2,))  # the caller has drawn from Keras's global SeedGenerator
    before = _global_rng_state()
    mk.zoo.load("penguins_hard", pretrained=pretrained)
    after = _global_rng_state()
    assert after[1:] == before[1:]  # NumPy's global RNG and Keras's global SeedGenerator untouched
    if not pretrained:  # built from the recipe: Python's RNG untouched too
        assert after[0] == before[0]
    else:  # a preset is deserialized, and Keras draws default seeds from `random` then: never a reset to the recipe seed
        random.seed(registry.recipe("penguins_hard")["fit"]["seed"])
        reset = random.getstate()
        random.setstate(after[0])
        assert after[0] != reset
    expected = (np.random.random(), keras.ops.convert_to_numpy(keras.random.uniform((2,))))
    np.random.seed(123)
    keras.utils.set_random_seed(123)
    keras.random.uniform((2,))
    assert np.random.random() == expected[0]  # the caller's sequences continue as if nothing had happened
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.random.uniform((2,))), expected[1])


def test_fresh_weights_and_retraining_stay_deterministic():
    recipe = registry.recipe("penguins_hard")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 7)).astype(np.float32)
    y = {"species": rng.integers(0, 3, 64), "sex": rng.integers(0, 2, 64), "body_mass": rng.normal(4, 1, 64).astype(np.float32)}
    weights = []
    for caller_seed in (1, 2):  # whatever the caller's seeds are
        keras.utils.set_random_seed(caller_seed)
        model = recipes.build(recipe)
        initial = model.get_weights()
        before = _global_rng_state()
        with recipes.seeded(recipes.seed_of(recipe)):  # as `mtmm zoo train` fits
            model.fit(x, y, epochs=2, batch_size=16, shuffle=True, validation_split=0.1, verbose=0)
        assert _global_rng_state() == before  # the seeded fit did not touch the caller's random state either
        weights.append((initial, model.get_weights()))
    for a, b in zip(*(w[0] for w in weights)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(*(w[1] for w in weights)):
        np.testing.assert_array_equal(a, b)


def test_seeded_falls_back_when_keras_seed_internals_are_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_keras_internals(name, *args, **kwargs):
        if name.startswith("keras.src.backend.common") or name.startswith("keras.src.random"):
            raise ImportError(f"simulated: no {name}")
        return real_import(name, *args, **kwargs)

    random.seed(7)
    np.random.seed(7)
    before = (random.getstate(), np.random.get_state()[1].tolist())
    monkeypatch.setattr(builtins, "__import__", no_keras_internals)
    with pytest.warns(RuntimeWarning, match="Keras internals for its global seed are missing"):
        model = recipes.build(registry.recipe("penguins_hard"))
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert (random.getstate(), np.random.get_state()[1].tolist()) == before  # public RNGs still restored
    again = recipes.build(registry.recipe("penguins_hard"))
    for a, b in zip(model.get_weights(), again.get_weights()):  # still the recipe's deterministic weights
        np.testing.assert_array_equal(a, b)
