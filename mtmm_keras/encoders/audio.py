"""Audio encoder: Conv1D over time on a `[batch, frames, bins]` spectrogram, or on the raw waveform
`[batch, samples]` through an in-model log-mel front end (`LogMelSpectrogram`)."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.layers.log_mel import LogMelSpectrogram  # noqa: F401  (also importable from here, as in 0.1)

INPUTS = ("waveform", "spectrogram")


def audio(
    input_shape: Sequence[int] | None = None,
    filters: Sequence[int] = (32, 64),
    output_dim: int | None = 64,
    input_name: str = "audio",
    name: str = "audio_encoder",
    frontend: dict[str, Any] | None = None,
    *,
    input: str | None = None,
    sampling_rate: int | None = None,
    num_samples: int | None = None,
) -> keras.Model:
    """Conv1D(5, ReLU) blocks over frames (2× max-pool between) → global mean pool → optional Dense.

    Two ways to say what goes in:

    * `input="waveform", sampling_rate=..., num_samples=...`: the raw signal `[batch, num_samples]`
      (float32, as a microphone gives it). The model starts with a `LogMelSpectrogram` layer (named
      "frontend"; its filterbank is built for `sampling_rate`), so the model and every artifact exported
      from it take the waveform. `input="spectrogram"` with `input_shape=(frames, frequency_bins)`
      takes precomputed features.
    * `input_shape` alone: `(frames, frequency_bins)` for a spectrogram, `(samples,)` for a waveform.

    `frontend` configures the log-mel front end (keyword arguments of `LogMelSpectrogram`:
    sample_rate, frame_length, hop, num_mel_bins, fmin, fmax, standardize). It is ours, not
    `keras.layers.MelSpectrogram`, because it exports everywhere: Keras's layer (an RFFT) converts to
    TFLite float32/float16 only, tf2onnx 1.17 cannot convert its RFFT (it reads Real/Imag parts) and its
    dynamic-range and int8 TFLite files fail verification; ours is a constant-kernel Conv1D + matmul
    that also runs in ONNX and stays float32 inside int8 files.
    """
    if input is not None:
        _checks.one_of(input, "input", INPUTS)
    if input == "waveform":
        if num_samples is None or sampling_rate is None:
            raise ValueError("input='waveform' needs `num_samples` (samples per example) and `sampling_rate` (Hz); "
                             f"got num_samples={num_samples!r}, sampling_rate={sampling_rate!r}.")
        num_samples = _checks.positive_int(num_samples, "num_samples")
        sampling_rate = _checks.positive_int(sampling_rate, "sampling_rate")
        if input_shape is not None and tuple(input_shape) != (num_samples,):
            raise ValueError(f"input='waveform': `input_shape` must be omitted or ({num_samples},), got {input_shape!r}.")
        input_shape = (num_samples,)
        frontend = dict(frontend or {})
        if frontend.setdefault("sample_rate", sampling_rate) != sampling_rate:
            raise ValueError(f"`frontend` sample_rate={frontend['sample_rate']!r} contradicts sampling_rate={sampling_rate!r}.")
        frontend.setdefault("fmax", min(5_000.0, sampling_rate / 2))
    else:
        for arg, value in (("sampling_rate", sampling_rate), ("num_samples", num_samples)):
            if value is not None:
                raise ValueError(f"`{arg}` applies to input='waveform' only; got input={input!r}.")
        if input_shape is None:
            raise ValueError("`input_shape` is required: (frames, frequency_bins) for a spectrogram, or use "
                             "input='waveform' with sampling_rate and num_samples.")
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) not in (1, 2) or (input == "spectrogram" and len(shape) != 2):
        raise ValueError(f"`input_shape` must be (frames, frequency_bins) or (samples,) for a waveform, got {input_shape!r}.")
    shape = tuple(_checks.positive_int(d, f"input_shape[{i}]") for i, d in enumerate(shape))
    if frontend is not None and not isinstance(frontend, dict):
        raise TypeError(f"`frontend` must be a dict of LogMelSpectrogram arguments, got {type(frontend).__name__}.")
    if frontend is not None and len(shape) != 1:
        raise ValueError(f"`frontend` needs a waveform input, input_shape=(samples,); got input_shape={input_shape!r}.")
    filters = _checks.units_tuple(filters, "filters", allow_empty=False)
    signal = keras.Input(shape=shape, name=input_name)
    x = signal
    if len(shape) == 1:
        front = LogMelSpectrogram(**(frontend or {}), name="frontend")
        if front.frames(shape[0]) < 1:
            raise ValueError(f"input_shape={input_shape!r}: a waveform needs at least frame_length={front.frame_length} samples.")
        x = front(x)
    for i, width in enumerate(filters):
        if i > 0 and x.shape[1] >= 4:
            x = keras.layers.MaxPooling1D(2, name=f"pool{i}")(x)
        x = keras.layers.Conv1D(width, 5, padding="same", activation="relu", name=f"conv{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    if output_dim is not None:
        x = keras.layers.Dense(_checks.positive_int(output_dim, "output_dim"), activation="relu", name="features")(x)
    return keras.Model(signal, x, name=name)
