"""Numpy-only audio helpers for av_digits: resampling, silence trimming, noise mixing, log-mel spectrograms."""

from __future__ import annotations

import numpy as np

from mtmm_keras import _mel

SAMPLE_RATE, FRAME_LENGTH, HOP = _mel.SAMPLE_RATE, _mel.FRAME_LENGTH, _mel.HOP
FRAMES = 32
BINS = _mel.NUM_MEL_BINS
WINDOW = FRAME_LENGTH + HOP * (FRAMES - 1)  # 11,052 samples, about 1.0 s of audio per example
MEL_RANGE_HZ = (_mel.FMIN, _mel.FMAX)


def _lowpass_taps(num_taps: int = 63, cutoff: float = 0.45) -> np.ndarray:
    """A Hamming-windowed sinc low-pass; `cutoff` is a fraction of the input Nyquist (0.5: the Nyquist after /2)."""
    n = np.arange(num_taps) - (num_taps - 1) / 2
    taps = np.sinc(cutoff * n) * np.hamming(num_taps)
    return taps / taps.sum()


_TAPS = _lowpass_taps()


def decimate2(x: np.ndarray) -> np.ndarray:
    """Halve the sample rate: low-pass below the new Nyquist, then keep every other sample."""
    return np.convolve(x, _TAPS, mode="same")[::2]


def trim_silence(x: np.ndarray, frame: int = 110, threshold: float = 0.02) -> np.ndarray:
    """Cut leading/trailing frames whose RMS is below `threshold` × the loudest frame's RMS."""
    usable = len(x) // frame * frame
    if usable == 0:
        return x
    rms = np.sqrt(np.mean(x[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1))
    active = np.flatnonzero(rms > threshold * rms.max()) if rms.max() > 0 else np.arange(len(rms))
    return x[active[0] * frame:(active[-1] + 1) * frame]


def rms(x: np.ndarray) -> float:
    """Root mean square (0 for empty input)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def place(x: np.ndarray, length: int, offset: int) -> np.ndarray:
    """`x` written into zeros of `length` starting at `offset` (may be negative or run past the end)."""
    out = np.zeros(length, np.float64)
    lo, hi = max(offset, 0), min(offset + len(x), length)
    if hi > lo:
        out[lo:hi] = x[lo - offset:hi - offset]
    return out


def mel_filterbank(num_bins: int = BINS, n_fft: int = FRAME_LENGTH, sample_rate: int = SAMPLE_RATE,
                   fmin: float = MEL_RANGE_HZ[0], fmax: float = MEL_RANGE_HZ[1]) -> np.ndarray:
    """The dataset's mel filters (see mtmm_keras._mel)."""
    return _mel.mel_filterbank(num_bins, n_fft, sample_rate, fmin, fmax)


_MEL = mel_filterbank()
_HANN = np.hanning(FRAME_LENGTH)


def log_mel_spectrogram(x: np.ndarray) -> np.ndarray:
    """[FRAMES, BINS] float32 log-mel power of a WINDOW-sample signal, standardised per example.

    Per-example standardisation (zero mean, unit variance over the whole patch) removes loudness.
    """
    if len(x) != WINDOW:
        raise ValueError(f"expected {WINDOW} samples, got {len(x)}")
    idx = np.arange(FRAMES)[:, None] * HOP + np.arange(FRAME_LENGTH)[None, :]
    power = np.abs(np.fft.rfft(x[idx] * _HANN, axis=1)) ** 2
    logmel = np.log(power @ _MEL + 1e-10)
    logmel = (logmel - logmel.mean()) / (logmel.std() + 1e-6)
    return logmel.astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: float) -> np.ndarray:
    """speech + noise, with noise scaled so that speech_power / noise power = 10^(snr_db / 10)."""
    noise_power = np.mean(np.square(noise))
    scale = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0))) if noise_power > 0 else 0.0
    return speech + scale * noise
