"""`LogMelSpectrogram`: the in-model audio front end (waveform → standardised log-mel power), built from a
constant-kernel Conv1D and a matmul so it runs on every backend and exports to TFLite built-ins and ONNX."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from mtmm_keras import _checks, _int8, _mel
from mtmm_keras._mel import mel_filterbank


@keras.saving.register_keras_serializable(package="mtmm")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform `[batch, samples]` → log-mel power `[batch, frames, num_mel_bins]`, standardised per example.

    frames = 1 + (samples − frame_length) // hop (no padding). Each frame is Hann-windowed
    (symmetric, numpy's `hanning`), its power spectrum taken by a fixed real DFT and pooled by
    triangular HTK-mel filters; then log(power + 1e-10) and, with `standardize=True`, zero mean and
    unit variance over the whole patch of each example ((x − mean) / (std + 1e-6)), which makes the
    features independent of the input's loudness. This is exactly `mtmm_keras.data._audio`'s numpy
    front end, in float32.

    The DFT is scaled by a power of two (1/16 for 512-sample frames) and log(scale²) subtracted after the log, so
    the power spectrum of a loud waveform stays inside float16's range (LiteRT's GPU accelerator computes in
    float16 by default); in float32 the result is the unscaled one up to the log's rounding.

    The framing + windowing + DFT is one strided Conv1D with a constant kernel (cos and sin rows),
    and the mel pooling one matmul, so the layer runs on every backend and exports to TFLite
    built-in ops (CONV_2D, MUL, FULLY_CONNECTED/BATCH_MATMUL, LOG, MEAN) and to ONNX without FFT
    ops. The constants are built from the config, not stored as weights.

    Full-integer int8 TFLite keeps this layer in float32 (the rest of the model is int8): its ops run
    under the name scope `INT8_FLOAT_SCOPE`, which `mtmm_keras.export.tflite_writer.convert` leaves out
    of int8 quantization. The power spectrum spans far more than one per-tensor int8 scale resolves, so
    its quiet bins round to zero and log(1e-10) takes over (av_digits_retrieval's audio tower: mean
    cosine to the float embeddings 0.93); an int8 waveform and DFT would also tie the result to the
    calibration's loudness, which the standardisation otherwise removes. The scope only names the ops:
    the computation and the outputs are unchanged.
    """

    INT8_FLOAT_SCOPE = _int8.FLOAT_SCOPE  # ops under this name scope stay float32 in int8 TFLite

    def __init__(self, sample_rate: int = _mel.SAMPLE_RATE, frame_length: int = _mel.FRAME_LENGTH, hop: int = _mel.HOP,
                 num_mel_bins: int = _mel.NUM_MEL_BINS, fmin: float = _mel.FMIN, fmax: float = _mel.FMAX,
                 standardize: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = _checks.positive_int(sample_rate, "sample_rate")
        self.frame_length = _checks.positive_int(frame_length, "frame_length")
        self.hop = _checks.positive_int(hop, "hop")
        self.num_mel_bins = _checks.positive_int(num_mel_bins, "num_mel_bins")
        self.fmin, self.fmax = float(fmin), float(fmax)
        if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"Need 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, fmax={fmax}, sample_rate={sample_rate}.")
        self.standardize = bool(standardize)
        n = np.arange(self.frame_length)
        k = np.arange(self.frame_length // 2 + 1)
        angle = 2.0 * np.pi * np.outer(n, k) / self.frame_length
        window = np.hanning(self.frame_length)[:, None]
        # the DFT is scaled by a power of two near 1/sqrt(window energy) (1/16 for 512 samples) so the power
        # spectrum stays inside float16's range on a GPU at reduced precision (unscaled, a loud frame's power
        # passes 65504 and turns to inf); `call` subtracts log(scale²) after the log. In float32 the scaling
        # is exact (a power of two), so the output is the unscaled computation's up to the rounding of the log.
        self._scale = float(2.0 ** -np.round(np.log2(np.sqrt(np.sum(np.hanning(self.frame_length) ** 2)))))
        # kernel [frame_length, 1, 2 * freqs]: windowed cos and sin rows of the real DFT, times the scale
        self._dft = (self._scale * np.concatenate([window * np.cos(angle), -window * np.sin(angle)], axis=1)
                     )[:, None, :].astype("float32")
        mel = mel_filterbank(self.num_mel_bins, self.frame_length, self.sample_rate, self.fmin, self.fmax)
        self._mel = np.concatenate([mel, mel], axis=0).astype("float32")  # re² and im² pooled by the same filters

    def frames(self, samples: int) -> int:
        """The number of frames for a waveform of `samples` samples: 1 + (samples − frame_length) // hop."""
        return 1 + (samples - self.frame_length) // self.hop

    def call(self, inputs: Any) -> Any:
        """Run `LogMelSpectrogram` on its inputs (the computation is described in the class docstring)."""
        with keras.name_scope(self.INT8_FLOAT_SCOPE):
            x = ops.expand_dims(ops.cast(inputs, "float32"), -1)
            spectrum = ops.conv(x, ops.convert_to_tensor(self._dft), strides=self.hop, padding="valid")
            # scale² · mel power; log(scale² · (power + 1e-10)) − log(scale²) = log(power + 1e-10)
            mel_power = ops.matmul(ops.square(spectrum), ops.convert_to_tensor(self._mel))
            scale2 = self._scale ** 2
            logmel = ops.log(mel_power + np.float32(1e-10 * scale2)) - np.float32(np.log(scale2))
            if not self.standardize:
                return logmel
            mean = ops.mean(logmel, axis=(1, 2), keepdims=True)
            std = ops.sqrt(ops.mean(ops.square(logmel - mean), axis=(1, 2), keepdims=True))
            return (logmel - mean) / (std + 1e-6)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        samples = input_shape[-1]
        return (input_shape[0], None if samples is None else self.frames(samples), self.num_mel_bins)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(sample_rate=self.sample_rate, frame_length=self.frame_length, hop=self.hop,
                      num_mel_bins=self.num_mel_bins, fmin=self.fmin, fmax=self.fmax, standardize=self.standardize)
        return config
