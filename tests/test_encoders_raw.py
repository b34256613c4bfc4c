"""Raw-signal front ends inside the model: `mk.encoders.audio(input="waveform", ...)` takes the float32
waveform and `mk.encoders.image(..., input_dtype="uint8")` takes camera pixels, so exported TFLite and ONNX
artifacts are fed exactly that and match Keras. Also why the log-mel front end is ours and not
`keras.layers.MelSpectrogram`: Keras's layer does not convert to ONNX."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.encoders.audio import LogMelSpectrogram

RATE, SAMPLES = 8000, 2000
FRONTEND = dict(frame_length=256, hop=128, num_mel_bins=16)
export_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")


def _waveforms(n, seed=0):
    """Tones in noise at loudnesses spanning 300x: a microphone's raw float32 signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES) / RATE
    tone = np.sin(2 * np.pi * rng.uniform(100, 3500, size=(n, 1)) * t)
    return (rng.uniform(0.01, 3.0, size=(n, 1)) * (tone + 0.3 * rng.normal(size=(n, SAMPLES)))).astype("float32")


def test_waveform_keyword_form_equals_the_input_shape_form():
    keyword = mk.encoders.audio(input="waveform", sampling_rate=RATE, num_samples=SAMPLES, filters=(4,), output_dim=3,
                                frontend=FRONTEND)
    assert [(t.name, tuple(t.shape), str(t.dtype)) for t in keyword.inputs] == [("audio", (None, SAMPLES), "float32")]
    front = keyword.get_layer("frontend")
    assert isinstance(front, LogMelSpectrogram)
    assert (front.sample_rate, front.fmax) == (RATE, RATE / 2)  # filterbank built for the rate, up to Nyquist
    legacy = mk.encoders.audio((SAMPLES,), filters=(4,), output_dim=3,
                               frontend=dict(FRONTEND, sample_rate=RATE, fmax=RATE / 2))
    legacy.set_weights(keyword.get_weights())
    waves = _waveforms(4)
    np.testing.assert_allclose(keyword.predict(waves, verbose=0), legacy.predict(waves, verbose=0), rtol=1e-6, atol=1e-6)
    spectrogram = mk.encoders.audio((15, 16), input="spectrogram", filters=(4,), output_dim=3)
    assert tuple(spectrogram.inputs[0].shape) == (None, 15, 16) and spectrogram.get_layer("conv1") is not None


def test_waveform_keyword_argument_errors():
    with pytest.raises(ValueError, match="input"):
        mk.encoders.audio(input="mp3", sampling_rate=RATE, num_samples=SAMPLES)
    with pytest.raises(ValueError, match="num_samples"):
        mk.encoders.audio(input="waveform", sampling_rate=RATE)
    with pytest.raises(ValueError, match="sampling_rate"):
        mk.encoders.audio(input="waveform", num_samples=SAMPLES)
    with pytest.raises(ValueError, match="frame_length"):
        mk.encoders.audio(input="waveform", sampling_rate=RATE, num_samples=100)
    with pytest.raises(ValueError, match="contradicts"):
        mk.encoders.audio(input="waveform", sampling_rate=RATE, num_samples=SAMPLES, frontend={"sample_rate": 16000})
    with pytest.raises(ValueError, match="sampling_rate"):
        mk.encoders.audio((20, 8), sampling_rate=RATE)
    with pytest.raises(ValueError, match="input_shape"):
        mk.encoders.audio((SAMPLES,), input="spectrogram")
    with pytest.raises(ValueError, match="input_shape"):
        mk.encoders.audio()


@export_only
def test_exported_artifacts_take_the_raw_waveform_and_uint8_pixels(tmp_path):
    from mtmm_keras.export import runtimes, tflite_writer

    keras.utils.set_random_seed(0)
    encoders = {
        "audio": mk.encoders.audio(input="waveform", sampling_rate=RATE, num_samples=SAMPLES, filters=(4,),
                                   output_dim=4, frontend=FRONTEND),
        "image": mk.encoders.image((8, 8, 1), filters=(4,), output_dim=4, input_dtype="uint8", rescale=1 / 255),
    }
    model = mk.builders.attention_fusion(encoders, [mk.Task("c", 3, loss="sparse_categorical_crossentropy")], fusion_dim=4)
    rng = np.random.default_rng(1)
    raw = {"audio": _waveforms(16, seed=1), "image": rng.integers(0, 256, size=(16, 8, 8, 1)).astype("uint8")}
    report = mk.export.export_model(model, str(tmp_path / "raw"), formats=("saved_model", "tflite", "onnx"),
                                    representative_data=raw, verbose=False)
    assert report.passed, report.table()
    expected = keras.ops.convert_to_numpy(model(raw, training=False)["c"])
    for artifact in report.artifacts:
        assert {i["name"]: i["dtype"] for i in artifact.inputs} == {"audio": "float32", "image": "uint8"}, artifact.format
        if artifact.format == "tflite":
            assert tflite_writer.flex_ops(open(artifact.path, "rb").read()) == []
            got = runtimes.tflite_runner(artifact.path)(raw)
        elif artifact.format == "onnx":
            got = runtimes.onnx_runner(artifact.path, {o.get("onnx_name", o["name"]): o["name"] for o in artifact.outputs})(raw)
        else:
            continue
        np.testing.assert_allclose(got["c"], expected, atol=1e-4, err_msg=artifact.format)


@export_only
def test_keras_mel_spectrogram_does_not_convert_to_onnx(tmp_path):
    """Why the audio encoder's front end is `LogMelSpectrogram`: tf2onnx 1.17's RFFT handler accepts only a
    ComplexAbs consumer, and Keras's stft reads the Real and Imag parts. If this starts passing, Keras's layer
    may become an option (its dynamic-range and int8 TFLite files must then pass verification too)."""
    signal = keras.Input((SAMPLES,), name="audio")
    mel = keras.layers.MelSpectrogram(fft_length=256, sequence_stride=128, num_mel_bins=16, sampling_rate=RATE)(signal)
    model = keras.Model(signal, keras.layers.Dense(2, name="c")(keras.layers.GlobalAveragePooling1D()(mel)))
    with pytest.raises(Exception, match="RFFT"):
        mk.export.export_model(model, str(tmp_path / "mel"), formats=("onnx",), representative_data=_waveforms(8),
                               verbose=False)


def test_log_mel_power_stays_inside_float16_range_and_the_output_is_unchanged():
    """Issue 19: LiteRT's GPU accelerator computes in float16 by default; the unscaled power spectrum of a loud
    frame (|X|² ≈ 1e5 for av_digits' waveforms, which reach ±14) overflowed 65504. The layer scales its DFT by a
    power of two and subtracts log(scale²) after the log: the float32 output is the unscaled one up to rounding."""
    layer = LogMelSpectrogram(sample_rate=11025, frame_length=512, hop=340, num_mel_bins=32, fmin=80.0, fmax=5000.0,
                              standardize=False)
    t = np.arange(11052) / 11025
    wave = np.stack([14.0 * np.sin(2 * np.pi * 431.0 * t), 1e-3 * np.sin(2 * np.pi * 200.0 * t)]).astype("float32")
    frames = keras.ops.expand_dims(keras.ops.convert_to_tensor(wave), -1)
    spectrum = keras.ops.convert_to_numpy(keras.ops.conv(frames, layer._dft, strides=layer.hop, padding="valid"))
    power = spectrum.astype("float64") ** 2
    assert layer._scale == 1 / 16 and float(np.max(power)) < 65504 and float(np.max(power @ layer._mel)) < 65504
    assert float(np.max(power)) / layer._scale ** 2 > 65504  # unscaled, float16 would overflow to inf
    unscaled = keras.ops.conv(frames, layer._dft / layer._scale, strides=layer.hop, padding="valid")
    reference = np.log(keras.ops.convert_to_numpy(keras.ops.matmul(keras.ops.square(unscaled), layer._mel)) + 1e-10)
    got = keras.ops.convert_to_numpy(layer(wave))
    assert float(np.max(np.abs(reference))) > 10  # a loud row (log power ≈ 12) and a quiet one
    np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-5)
